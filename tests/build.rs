//! Builds the guest state machines from source for `wasm32-unknown-unknown`, so that every test
//! runs the real module and none is ever committed as a binary.
//!
//! The nested cargo uses its own target directory: the outer build holds a lock on `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest crates to build: (package, env var the tests read the `.wasm` path from).
const GUESTS: &[(&str, &str)] =
    &[("fsm-kv", "FSM_KV_WASM"), ("fsm-kv-v2", "FSM_KV_V2_WASM"), ("fsm-probe", "FSM_PROBE_WASM")];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("tests/ sits in the workspace").to_path_buf();
    let target_dir = workspace.join("target").join("guest-build");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    for dir in [
        "fsm-sdk/src",
        "fsm-sdk/Cargo.toml",
        "fsm-kv/src",
        "fsm-kv/Cargo.toml",
        "fsm-kv/core/src",
        "fsm-kv/core/Cargo.toml",
        "fsm-kv/v2/src",
        "fsm-kv/v2/Cargo.toml",
        "tests/guests/probe/src",
        "tests/guests/probe/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--locked", "--target", "wasm32-unknown-unknown", "--profile", "guest", "--target-dir"])
        .arg(&target_dir);
    for (package, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // Settings meant for the outer (native) build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo for the guest build");
    if !status.success() {
        panic!(
            "building the wasm state machines failed (see above). If the target is missing, run \
             `rustup target add wasm32-unknown-unknown` (`make` does this for you)."
        );
    }
    for (package, var) in GUESTS {
        let file = format!("{}.wasm", package.replace('-', "_"));
        let path = target_dir.join("wasm32-unknown-unknown").join("guest").join(file);
        assert!(Path::new(&path).exists(), "guest build did not produce {}", path.display());
        println!("cargo:rustc-env={var}={}", path.display());
    }
}
