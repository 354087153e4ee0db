//! Records the target triple, so the wasm engine can compile for exactly this target with only
//! its baseline CPU features (see `runtime::module::FsmEngine::new`).

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    println!("cargo:rustc-env=REDRAFT_TARGET_TRIPLE={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
