//! Every command starts from the state of a fresh instance, whatever ran before in the same one:
//! the same replies and the same fuel, even for modules that (knowingly or through Rust's std)
//! keep global state. This is what lets a replica whose instance is old and one whose instance is
//! new (restarted, or renewed after a trap) agree on every command.

use fsm_sdk::{Reply, codec};
use redraft::runtime::{FsmEngine, FsmModule, LoadError, Runtime, RuntimeLimits};
use redraft::storage::MemoryStore;
use std::sync::Arc;

fn probe() -> Arc<FsmModule> {
    let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
    Arc::new(FsmModule::load(&engine, &redraft_tests::fsm_probe_wasm()).expect("probe loads"))
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_args(args, &mut out);
    out
}

/// Runs `command` on `runtime`; returns the reply and the fuel it burnt.
fn run(runtime: &mut Runtime, command: &[&str]) -> (Reply, u64) {
    let before = runtime.fuel_consumed();
    let reply = runtime.query(&encode(command)).expect("query");
    (reply, runtime.fuel_consumed() - before)
}

fn fresh(module: &Arc<FsmModule>) -> Runtime {
    Runtime::open(module.clone(), Arc::new(MemoryStore::new())).expect("open")
}

#[test]
fn t10_a_warm_instance_answers_exactly_as_a_fresh_one() {
    let module = probe();
    let script: Vec<Vec<&str>> = vec![
        vec!["HASHORDER"],
        vec!["PRINT", "no newline yet"],
        vec!["COUNT"],
        vec!["HASHORDER"],
        vec!["PRINT", "and more\n"],
        vec!["COUNT"],
        vec!["HASHORDER"],
    ];
    // The reference: each command on its own fresh instance.
    let expected: Vec<(Reply, u64)> = script.iter().map(|c| run(&mut fresh(&module), c)).collect();
    assert_eq!(expected[2].0, Reply::Integer(1));
    // One instance running the whole script, three times over.
    let mut warm = fresh(&module);
    for round in 0..3 {
        for (command, expected) in script.iter().zip(&expected) {
            assert_eq!(&run(&mut warm, command), expected, "round {round}: {command:?}");
        }
    }
}

fn load_wat(wat: &str) -> Result<FsmModule, LoadError> {
    let engine = FsmEngine::new(RuntimeLimits::default()).expect("engine");
    FsmModule::load(&engine, &wat::parse_str(wat).expect("valid WAT"))
}

/// The smallest module that passes every load check but the one under test.
fn minimal(extra: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 40)
  (data (i32.const 0) "\00\00\00\00")
  {extra}
  (func (export "redraft_abi_version") (result i32) (i32.const 2))
  (func (export "redraft_commands") (result i64) (i64.const 4))
  (global (export "__heap_base") i32 (i32.const 1024))
  (func (export "redraft_apply") (param i32 i32) (result i64) (i64.const 0))
  (func (export "redraft_query") (param i32 i32) (result i64) (i64.const 0)))"#
    )
}

#[test]
fn t20_state_in_wasm_globals_is_refused() {
    load_wat(&minimal("(global $sp (mut i32) (i32.const 0))")).expect("one mutable global (the stack pointer) is fine");
    let e = load_wat(&minimal("(global (mut i32) (i32.const 0)) (global (mut i64) (i64.const 0))"))
        .expect_err("two mutable globals");
    assert!(e.to_string().contains("module has 2 mutable globals"), "{e}");
}

#[test]
fn t21_static_data_too_large_to_reset_is_refused() {
    let e = load_wat(&minimal(r#"(data (i32.const 2000000) "x")"#)).expect_err("2 MB of statics");
    assert!(e.to_string().contains("static data is 2000001 bytes"), "{e}");
}
