//! Builds the guest component (`hamr-guest` for `wasm32-wasip2`, profile `guest`) so that the
//! `hamr` binary embeds it and needs no flag to find it.
//!
//! The nested cargo uses its own target directory (`target/component`), so it never waits on
//! the lock of the build that runs this script. Set `HAMR_COMPONENT=/path/to/guest.wasm` to
//! embed a prebuilt component instead.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("host/ lives in the workspace root")
        .to_path_buf();
    for path in ["guest/src", "guest/Cargo.toml", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=HAMR_COMPONENT");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("guest.wasm");
    if let Ok(prebuilt) = std::env::var("HAMR_COMPONENT") {
        std::fs::copy(&prebuilt, &out).unwrap_or_else(|e| panic!("HAMR_COMPONENT={prebuilt}: {e}"));
        return;
    }
    let target_dir = root.join("target").join("component");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "-p",
            "hamr-guest",
            "--lib",
            "--target",
            "wasm32-wasip2",
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
        .expect("cargo can be started to build the guest component");
    assert!(
        status.success(),
        "building the guest component failed; is the target installed? run: rustup target add wasm32-wasip2"
    );
    let built = target_dir
        .join("wasm32-wasip2")
        .join("guest")
        .join("hamr_guest.wasm");
    std::fs::copy(&built, &out).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
}
