#!/usr/bin/env bash
# Every test of the project, as CI runs it: formatting, lints (native and wasm), unit and
# integration tests, and the conformance scenarios through every engine.
# Installs what it needs (the wasm targets, rustfmt, clippy); safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain: wasm targets, rustfmt, clippy"
rustup target add wasm32-wasip2 wasm32-wasip1 >/dev/null
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "clippy (native, all targets)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "clippy (guest, wasm32-wasip2)"
cargo clippy -p hamr-guest --target wasm32-wasip2 --locked -- -D warnings

step "clippy (kube-scheduler-wasm-extension module, wasm32-wasip1)"
cargo clippy -p hamr-wasm-extension --target wasm32-wasip1 --locked -- -D warnings

# Tests run in release: wasmtime in a debug build is 10-30x slower, and the binary that
# the conformance step runs is the same release build.
step "unit, integration and contract tests (release)"
cargo test --workspace --release --locked

# The steps below use the workspace's feature set, as the test step did, so nothing is
# compiled twice (`-p hamr` alone would unify features differently and rebuild wasmtime).

# Each benchmark once, without timing (so they never rot; figures live in BENCHMARKS.md).
step "benchmarks, quick mode"
cargo bench --workspace --locked --bench decide -- --test
cargo bench --workspace --locked --bench wasm_extension -- --test
cargo bench --workspace --locked --bench extender -- --test
cargo bench --workspace --locked --bench memory -- --test

# Last, so that the run ends with its `N passed, M failed` line. The test step built the
# binaries already (cargo builds a package's binaries for its integration tests), with the
# test step's features; a separate `cargo build --bins` would unify features differently and
# compile two dozen crates again.
step "conformance: every scenario through every engine"
"${CARGO_TARGET_DIR:-target}/release/hamr" conformance conformance/scenarios --engine all
