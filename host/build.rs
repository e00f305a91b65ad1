//! Builds the two WebAssembly faces of the guest so that the `hamr` binary embeds them and
//! needs no flag to find them:
//!
//! - the component (`hamr-guest` for `wasm32-wasip2`, profile `guest`), into `target/component`;
//! - the kube-scheduler-wasm-extension core module (`hamr-wasm-extension` for `wasm32-wasip1`,
//!   profile `guest`), into `target/wasm-extension`.
//!
//! Each nested cargo uses its own target directory, so it never waits on the lock of the build
//! that runs this script. Set `HAMR_COMPONENT=/path/to/guest.wasm` or
//! `HAMR_WASM_EXTENSION=/path/to/hamr_wasm_extension.wasm` to embed a prebuilt file instead.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("host/ lives in the workspace root")
        .to_path_buf();
    for path in [
        "guest/src",
        "guest/Cargo.toml",
        "wit",
        "Cargo.lock",
        "wasm-extension/src",
        "wasm-extension/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    build(
        &root,
        &out_dir.join("guest.wasm"),
        Wasm {
            prebuilt_env: "HAMR_COMPONENT",
            package: "hamr-guest",
            target: "wasm32-wasip2",
            target_dir: "component",
            file: "hamr_guest.wasm",
        },
    );
    build(
        &root,
        &out_dir.join("wasm_extension.wasm"),
        Wasm {
            prebuilt_env: "HAMR_WASM_EXTENSION",
            package: "hamr-wasm-extension",
            target: "wasm32-wasip1",
            target_dir: "wasm-extension",
            file: "hamr_wasm_extension.wasm",
        },
    );
}

/// One WebAssembly build.
struct Wasm {
    /// Names a prebuilt file to embed instead.
    prebuilt_env: &'static str,
    package: &'static str,
    target: &'static str,
    /// Under `target/`.
    target_dir: &'static str,
    /// The artifact's file name.
    file: &'static str,
}

fn build(root: &Path, out: &Path, w: Wasm) {
    println!("cargo:rerun-if-env-changed={}", w.prebuilt_env);
    if let Ok(prebuilt) = std::env::var(w.prebuilt_env) {
        std::fs::copy(&prebuilt, out)
            .unwrap_or_else(|e| panic!("{}={prebuilt}: {e}", w.prebuilt_env));
        return;
    }
    let target_dir = root.join("target").join(w.target_dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "-p",
            w.package,
            "--lib",
            "--target",
            w.target,
            "--profile",
            "guest",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags are for the host target, not for wasm.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .unwrap_or_else(|e| panic!("cargo can be started to build {}: {e}", w.package));
    assert!(
        status.success(),
        "building {} for {} failed; is the target installed? run: rustup target add {}",
        w.package,
        w.target,
        w.target
    );
    let built = target_dir.join(w.target).join("guest").join(w.file);
    std::fs::copy(&built, out).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
}
