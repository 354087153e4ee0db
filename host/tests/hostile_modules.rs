//! Modules that misbehave, written as small WAT fixtures: each must be stopped with a clear
//! error, leave the store unchanged, and leave the runtime working for the next call.

use fsm_sdk::{Reply, codec};
use redraft::runtime::{ApplyError, FsmEngine, FsmModule, LoadError, Runtime, RuntimeLimits};
use redraft::storage::snapshot::SnapshotInfo;
use redraft::storage::{MemoryStore, ReadView, SharedStore, StorageError, Store, WriteBatch, get_owned, state_digest};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const LIMITS: RuntimeLimits =
    RuntimeLimits { fuel_per_apply: 1_000_000, memory_bytes_max: 4 * 1024 * 1024, stack_bytes_max: 512 * 1024 };

/// A module that follows the ABI, with two commands: `cmd` (write, any arity) and `rd` (read).
/// `apply` and `query` are the bodies of the two entry points; they may use `$put_a` / `$put_b`
/// (write key "a" / "b") and must leave an i64 (a packed reply pointer) on the stack.
fn abi_module(apply: &str, query: &str, extra: &str) -> String {
    format!(
        r#"(module
  (import "redraft" "put" (func $put (param i32 i32 i32 i32) (result i32)))
  (import "redraft" "get" (func $get (param i32 i32 i32 i32) (result i64)))
  (import "redraft" "delete" (func $delete (param i32 i32) (result i32)))
  (import "redraft" "scan" (func $scan (param i32 i32 i32 i32 i32 i32 i32) (result i64)))
  {extra}
  (memory (export "memory") 1)
  ;; Command table at 0: count 2; "cmd" arity -1 write; "rd" arity -1 read; no keys.
  (data (i32.const 0) "\02\00\00\00"
    "\03\00\00\00cmd" "\ff\ff\ff\ff" "\01\00\00\00" "\00\00\00\00\00\00\00\00\00\00\00\00"
    "\02\00\00\00rd"  "\ff\ff\ff\ff" "\00\00\00\00" "\00\00\00\00\00\00\00\00\00\00\00\00")
  ;; Replies: +OK at 200 (7 bytes), -ERR nope at 300 (13 bytes). Keys and value at 400.
  (data (i32.const 200) "\01\02\00\00\00OK")
  (data (i32.const 300) "\02\08\00\00\00ERR nope")
  (data (i32.const 400) "abv")
  (func $put_a (drop (call $put (i32.const 400) (i32.const 1) (i32.const 402) (i32.const 1))))
  (func $put_b (drop (call $put (i32.const 401) (i32.const 1) (i32.const 402) (i32.const 1))))
  (func (export "redraft_abi_version") (result i32) (i32.const 2))
  (func (export "redraft_commands") (result i64) (i64.const 57))
  (global (export "__heap_base") i32 (i32.const 1024))
  (func (export "redraft_apply") (param i32 i32) (result i64) {apply})
  (func (export "redraft_query") (param i32 i32) (result i64) {query})
)"#
    )
}

const OK: &str = "(i64.const 0x000000c800000007)";
const ERR: &str = "(i64.const 0x0000012c0000000d)";

fn engine() -> Arc<FsmEngine> {
    FsmEngine::new(LIMITS).expect("engine")
}

fn load(wat: &str) -> Result<FsmModule, LoadError> {
    let bytes = wat::parse_str(wat).expect("fixture is valid WAT");
    FsmModule::load(&engine(), &bytes)
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_args(args, &mut out);
    out
}

struct Fixture {
    runtime: Runtime,
    store: SharedStore,
}

impl Fixture {
    fn new(apply: &str, query: &str) -> Self {
        let module = Arc::new(load(&abi_module(apply, query, "")).expect("fixture loads"));
        let store: SharedStore = Arc::new(MemoryStore::new());
        // Pre-existing state that no aborted command may touch.
        let mut batch = WriteBatch::default();
        batch.put(b"a", b"original");
        store.commit(&batch).expect("seed");
        let runtime = Runtime::open(module, store.clone()).expect("open");
        Fixture { runtime, store }
    }

    fn digest(&self) -> [u8; 32] {
        state_digest(&*self.store.read().expect("view")).expect("digest")
    }

    fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        get_owned(&*self.store.read().expect("view"), key).expect("get")
    }

    /// Applies a command that must abort; checks the error and that nothing changed.
    fn expect_abort(&mut self, expected_error: &str) {
        let before = self.digest();
        let reply = self.runtime.apply(&encode(&["cmd"])).expect("deterministic failure, not fatal");
        match &reply {
            Reply::Error(text) => assert!(text.contains(expected_error), "{text:?} should mention {expected_error:?}"),
            other => panic!("expected an error reply, got {other:?}"),
        }
        assert_eq!(self.digest(), before, "an aborted command changed the store");
        assert_eq!(self.value(b"a").as_deref(), Some(&b"original"[..]));
        assert_eq!(self.value(b"b"), None);
        // The runtime keeps serving.
        assert_eq!(self.runtime.query(&encode(&["rd"])).expect("query"), Reply::ok());
    }
}

#[test]
fn t10_a_well_behaved_fixture_writes() {
    let mut f = Fixture::new(&format!("(call $put_a) (call $put_b) {OK}"), OK);
    assert_eq!(f.runtime.apply(&encode(&["cmd"])).expect("apply"), Reply::ok());
    assert_eq!(f.value(b"a").as_deref(), Some(&b"v"[..]));
    assert_eq!(f.value(b"b").as_deref(), Some(&b"v"[..]));
}

#[test]
fn t11_an_infinite_loop_stops_on_fuel_after_partial_writes() {
    let mut f = Fixture::new("(call $put_a) (call $put_b) (loop $l (br $l)) unreachable", OK);
    f.expect_abort("fuel budget of 1000000 exhausted");
    // The runtime keeps working, and so does the next (identical) call.
    f.expect_abort("fuel budget");
    assert_eq!(f.runtime.aborted_commands(), 2);
}

#[test]
fn t12_a_memory_bomb_stops_at_the_cap() {
    let bomb = "(call $put_a) (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable";
    let mut f = Fixture::new(bomb, OK);
    f.expect_abort("memory limit of 4194304 bytes reached");
}

#[test]
fn t13_an_error_reply_discards_the_commands_writes() {
    let mut f = Fixture::new(&format!("(call $put_a) (call $put_b) {ERR}"), OK);
    let before = f.digest();
    assert_eq!(f.runtime.apply(&encode(&["cmd"])).expect("apply"), Reply::error("ERR nope"));
    assert_eq!(f.digest(), before);
}

#[test]
fn t14_a_trap_discards_writes_and_the_instance_is_renewed() {
    // The module traps after writing whenever its global is still 0, and sets it on the way. Had
    // the runtime reused the trapped instance, the global would be 1 and the second call would
    // succeed; a fresh instance traps every time, as a freshly restarted replica would.
    let apply = format!(
        "(call $put_a) (call $put_b)
         (if (i32.eqz (global.get $calls)) (then (global.set $calls (i32.const 1)) unreachable))
         {OK}"
    );
    let wat = abi_module(&apply, OK, "(global $calls (mut i32) (i32.const 0))");
    let module = Arc::new(load(&wat).expect("loads"));
    let store: SharedStore = Arc::new(MemoryStore::new());
    let mut runtime = Runtime::open(module, store.clone()).expect("open");
    for _ in 0..3 {
        let reply = runtime.apply(&encode(&["cmd"])).expect("apply");
        assert!(matches!(&reply, Reply::Error(t) if t.contains("unreachable")), "{reply:?}");
        assert_eq!(get_owned(&*store.read().expect("view"), b"a").expect("get"), None);
    }
}

#[test]
fn t15_a_trap_in_a_batch_aborts_only_that_command() {
    // Every command writes "a"; the trapping one writes "b" first.
    let apply =
        format!("(if (i32.eq (local.get 1) (i32.const 19)) (then (call $put_b) unreachable)) (call $put_a) {OK}");
    let wat = abi_module(&apply, OK, "");
    let module = Arc::new(load(&wat).expect("loads"));
    let store: SharedStore = Arc::new(MemoryStore::new());
    let mut runtime = Runtime::open(module, store.clone()).expect("open");
    // ["cmd"] encodes to 11 bytes, ["cmd", "x"] to 16, ["cmd", "xxxx"] to 19 (the trapping one).
    let batch = [encode(&["cmd"]), encode(&["cmd", "xxxx"]), encode(&["cmd", "x"])];
    let replies = runtime.apply_batch(&batch, &[("last_applied", b"3")]).expect("batch");
    assert_eq!(replies[0], Reply::ok());
    assert!(replies[1].is_error(), "{:?}", replies[1]);
    assert_eq!(replies[2], Reply::ok());
    let view = store.read().expect("view");
    assert_eq!(get_owned(&*view, b"a").expect("get").as_deref(), Some(&b"v"[..]));
    assert_eq!(get_owned(&*view, b"b").expect("get"), None, "the trapped command's write was undone");
    assert_eq!(view.meta().expect("meta").get("last_applied").map(Vec::as_slice), Some(&b"3"[..]));
}

#[test]
fn t16_a_query_cannot_write() {
    let mut f = Fixture::new(OK, &format!("(call $put_b) {OK}"));
    let reply = f.runtime.query(&encode(&["rd"])).expect("query");
    assert_eq!(reply, Reply::error("ERR command aborted: a read-only command tried to write"));
    assert_eq!(f.value(b"b"), None);
}

#[test]
fn t17_pointers_outside_memory_and_bad_replies_are_caught() {
    let wild_put = "(drop (call $put (i32.const 0x7fffffff) (i32.const 16) (i32.const 0) (i32.const 1))) (i64.const 0)";
    Fixture::new(wild_put, OK).expect_abort("module passed a pointer outside its memory");
    let wild_reply = "(call $put_a) (i64.const 0x7fffffff00000010)";
    Fixture::new(wild_reply, OK).expect_abort("module returned a reply outside its memory");
    let garbage_reply = "(call $put_a) (i64.const 0x0000000000000004)"; // the table's bytes, tag 2 with a bad length
    Fixture::new(garbage_reply, OK).expect_abort("module returned a malformed reply");
}

#[test]
fn t18_deep_recursion_is_a_deterministic_stack_overflow() {
    let wat = abi_module("(call $put_a) (call $deep) unreachable", OK, "(func $deep (call $deep))");
    let module = Arc::new(load(&wat).expect("loads"));
    let store: SharedStore = Arc::new(MemoryStore::new());
    let mut runtime = Runtime::open(module.clone(), store.clone()).expect("open");
    // The 512 KiB stack runs out long before the 1M fuel does.
    let first = runtime.apply(&encode(&["cmd"])).expect("apply");
    assert_eq!(first, Reply::error("ERR command aborted: wasm stack overflow"));
    // Again on the renewed instance, and on another runtime: the same outcome, the same fuel.
    let fuel = runtime.fuel_consumed();
    assert_eq!(runtime.apply(&encode(&["cmd"])).expect("apply"), first);
    assert_eq!(runtime.fuel_consumed(), 2 * fuel, "the overflow comes at the same depth every time");
    let mut other = Runtime::open(module, store.clone()).expect("open");
    assert_eq!(other.apply(&encode(&["cmd"])).expect("apply"), first);
    assert_eq!(other.fuel_consumed(), fuel);
    assert_eq!(get_owned(&*store.read().expect("view"), b"a").expect("get"), None);
}

#[test]
fn t19_host_functions_check_every_pointer_and_range() {
    let wild = [
        ("(drop (call $get (i32.const 0x7fffffff) (i32.const 8) (i32.const 0) (i32.const 0)))", "pointer outside"),
        // A value that fits the capacity the module claims, at an address it does not have.
        ("(drop (call $get (i32.const 400) (i32.const 1) (i32.const 0xfffffff0) (i32.const 64)))", "pointer outside"),
        ("(drop (call $delete (i32.const 0xffffff00) (i32.const 0x1000)))", "pointer outside"),
        (
            "(drop (call $scan (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 10) (i32.const 0xfffffff0) (i32.const 64)))",
            "pointer outside",
        ),
    ];
    for (body, expected) in wild {
        // Each writes "b" first, so the abort must also undo that.
        Fixture::new(&format!("(call $put_b) {body} {OK}"), OK).expect_abort(expected);
    }
}

#[test]
fn t20_an_inverted_or_empty_scan_range_is_empty_not_a_crash() {
    // Writes "b" (so the batch overlay is not empty), then scans ["b", "a") and ["a", "a"):
    // both empty. The reply is +OK only if both scans returned 0 bytes.
    let body = format!(
        "(call $put_b)
         (if (i64.ne (call $scan (i32.const 401) (i32.const 1) (i32.const 400) (i32.const 1) (i32.const 10) (i32.const 2048) (i32.const 64)) (i64.const 0)) (then unreachable))
         (if (i64.ne (call $scan (i32.const 400) (i32.const 1) (i32.const 400) (i32.const 1) (i32.const 10) (i32.const 2048) (i32.const 64)) (i64.const 0)) (then unreachable))
         {OK}"
    );
    let mut f = Fixture::new(&body, OK);
    assert_eq!(f.runtime.apply(&encode(&["cmd"])).expect("apply"), Reply::ok());
    assert_eq!(f.value(b"b").as_deref(), Some(&b"v"[..]));
}

#[test]
fn t21_a_command_cannot_write_more_than_the_cap() {
    // Puts a 64 KiB value (the page starting at 0) under ever new keys until stopped.
    let body = "(local $i i32)
        (loop $l
          (i32.store (i32.const 2048) (local.get $i))
          (drop (call $put (i32.const 2048) (i32.const 4) (i32.const 0) (i32.const 65536)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l))
        unreachable";
    Fixture::new(body, OK).expect_abort("command wrote more than 4194304 bytes");
}

#[test]
fn t22_growing_past_the_modules_own_maximum_is_a_plain_minus_one() {
    // The module declares at most 2 pages; growing by 2 from 1 must return -1 (the spec), not
    // trap and not be treated as a host failure.
    let body =
        format!("(call $put_a) (if (i32.ne (memory.grow (i32.const 2)) (i32.const -1)) (then unreachable)) {OK}");
    let wat = abi_module(&body, OK, "").replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 1 2)");
    let module = Arc::new(load(&wat).expect("loads"));
    let store: SharedStore = Arc::new(MemoryStore::new());
    let mut runtime = Runtime::open(module, store.clone()).expect("open");
    assert_eq!(runtime.apply(&encode(&["cmd"])).expect("not fatal"), Reply::ok());
    assert_eq!(get_owned(&*store.read().expect("view"), b"a").expect("get").as_deref(), Some(&b"v"[..]));
}

#[test]
fn t24_a_module_too_small_for_the_guaranteed_arena_is_refused_at_load() {
    // A declared maximum of one page leaves no room for the 64 KiB the host guarantees after
    // __heap_base (1024 here).
    let wat = abi_module(OK, OK, "").replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 1 1)");
    let e = load(&wat).expect_err("refused").to_string();
    assert!(e.contains("cannot grow to the 65536 bytes past __heap_base"), "{e}");
}

#[test]
fn t25_an_input_past_the_modules_declared_maximum_is_a_clear_error_not_fatal() {
    // Two pages at most: enough for the arena, not for a 200 KB argument.
    let wat = abi_module(OK, OK, "").replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 1 2)");
    let module = Arc::new(load(&wat).expect("loads"));
    let mut runtime = Runtime::open(module, Arc::new(MemoryStore::new())).expect("open");
    let big = "x".repeat(200_000);
    let reply = runtime.apply(&encode(&["cmd", &big])).expect("not fatal");
    assert_eq!(
        reply,
        Reply::error(
            "ERR command aborted: the module's declared memory maximum cannot hold the input and the guaranteed arena"
        )
    );
    assert_eq!(runtime.apply(&encode(&["cmd"])).expect("apply"), Reply::ok(), "the next command runs");
}

#[test]
fn t23_deletes_count_against_the_write_cap() {
    // Stores a 64 KiB key, then deletes it over and over: each delete leaves a tombstone and an
    // undo entry behind, so each counts.
    let body = "(drop (call $put (i32.const 0) (i32.const 65536) (i32.const 0) (i32.const 0)))
        (loop $l
          (drop (call $delete (i32.const 0) (i32.const 65536)))
          (br $l))
        unreachable";
    // 64 KiB for the put, then 64 KiB per delete: past 4 MiB after about 63 deletes.
    Fixture::new(body, OK).expect_abort("command wrote more than 4194304 bytes");
}

// ----- modules refused at load --------------------------------------------------------------

fn load_error(wat: &str) -> String {
    load(wat).expect_err("must be refused").to_string()
}

#[test]
fn t40_an_unknown_import_is_refused_by_name() {
    let wasi = r#"(import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))"#;
    let e = load_error(&abi_module(OK, OK, wasi));
    assert!(e.contains("`wasi_snapshot_preview1::clock_time_get`"), "{e}");
    assert!(e.contains("redraft::{get, put, delete, scan, scan_rev, clear, time}"), "{e}");
    let e = load_error(&abi_module(OK, OK, r#"(import "redraft" "random" (func (result i64)))"#));
    assert!(e.contains("`redraft::random`"), "{e}");
}

#[test]
fn t41_an_allowed_import_with_the_wrong_type_is_refused() {
    let bad = abi_module(OK, OK, "").replace(
        r#"(import "redraft" "put" (func $put (param i32 i32 i32 i32) (result i32)))"#,
        r#"(import "redraft" "put" (func $put (param i32 i32 i32 i32) (result i32)))
           (import "redraft" "get" (func (param i32) (result i32)))"#,
    );
    let e = load_error(&bad);
    assert!(e.contains("redraft::get") && e.contains("expected"), "{e}");
}

#[test]
fn t42_a_missing_export_is_named() {
    for name in ["memory", "redraft_abi_version", "redraft_commands", "__heap_base", "redraft_apply", "redraft_query"] {
        let wat = abi_module(OK, OK, "").replace(&format!("(export \"{name}\")"), "");
        let e = load_error(&wat);
        assert!(e.contains(&format!("does not export `{name}`")), "{e}");
    }
}

#[test]
fn t43_a_wrong_abi_version_is_refused() {
    let wat = abi_module(OK, OK, "").replace(
        "(func (export \"redraft_abi_version\") (result i32) (i32.const 2))",
        "(func (export \"redraft_abi_version\") (result i32) (i32.const 99))",
    );
    let e = load_error(&wat);
    assert!(e.contains("ABI version 99") && e.contains("this host speaks 2"), "{e}");
}

#[test]
fn t44_bytes_that_are_not_wasm_are_refused() {
    let engine = engine();
    for (bytes, expected) in [
        (&b"hello, world"[..], "wasm magic number"),
        (&b""[..], "wasm magic number"),
        (&b"\0asm\x0d\x00\x01\x00"[..], "component"),
        (&b"\0asm\x01\x00\x00\x00\xff\xff"[..], "invalid WebAssembly module"),
    ] {
        let e = FsmModule::load(&engine, bytes).expect_err("refused").to_string();
        assert!(e.contains(expected), "{e:?} should mention {expected:?}");
    }
    let e = FsmModule::load_file(&engine, std::path::Path::new("/nonexistent/fsm.wasm")).expect_err("refused");
    assert!(e.to_string().contains("/nonexistent/fsm.wasm"), "{e}");
}

#[test]
fn t45_a_bad_command_table_is_refused() {
    let wat = abi_module(OK, OK, "").replace("\\03\\00\\00\\00cmd", "\\03\\00\\00\\00CMD");
    let e = load_error(&wat);
    assert!(e.contains("command table is invalid"), "{e}");
    let wat = abi_module(OK, OK, "").replace("(i64.const 57)", "(i64.const 0x7fff000000000044)");
    let e = load_error(&wat);
    assert!(e.contains("outside the module's memory"), "{e}");
}

#[test]
fn t47_simd_is_refused_at_load() {
    let wat = abi_module(OK, OK, "(func $simd (drop (v128.const i32x4 1 2 3 4)))");
    let e = load_error(&wat);
    assert!(e.contains("invalid WebAssembly module") && e.to_lowercase().contains("simd"), "{e}");
}

#[test]
fn t48_the_engine_identity_is_the_same_for_every_engine_of_this_build() {
    let a = FsmEngine::new(LIMITS).expect("engine");
    let b = FsmEngine::new(RuntimeLimits { fuel_per_apply: 5, ..LIMITS }).expect("engine");
    assert_eq!(a.identity(), b.identity(), "limits are recorded apart from the engine");
    let prefix = format!("wasmtime {} ", redraft::runtime::WASMTIME_VERSION);
    assert!(a.identity().starts_with(&prefix) && a.identity().contains(" codegen "), "{}", a.identity());
}

#[test]
fn t49_a_memory_cap_too_large_for_snapshots_is_refused() {
    let limits = RuntimeLimits { memory_bytes_max: 1 << 30, ..LIMITS };
    let e = FsmEngine::new(limits).err().expect("refused").to_string();
    assert!(e.contains("memory_bytes_max 1073741824 exceeds"), "{e}");
}

#[test]
fn t46_a_module_whose_start_loops_is_refused() {
    let wat = abi_module(OK, OK, "(func $spin (loop $l (br $l))) (start $spin)");
    let e = load_error(&wat);
    assert!(e.contains("fuel") || e.contains("all fuel consumed"), "{e}");
}

#[test]
fn t50_a_store_from_another_contract_is_refused() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let one = Arc::new(load(&abi_module(OK, OK, "")).expect("loads"));
    let two = Arc::new(load(&abi_module(ERR, OK, "")).expect("loads"));
    drop(Runtime::open(one, store.clone()).expect("first module records its digest"));
    let e = Runtime::open(two.clone(), store).err().expect("refused").to_string();
    assert!(e.contains("another state-machine contract (module_digest: "), "{e}");
    // The same module under another fuel budget is another contract too.
    let store: SharedStore = Arc::new(MemoryStore::new());
    drop(Runtime::open(two, store.clone()).expect("records its contract"));
    let frugal = FsmEngine::new(RuntimeLimits { fuel_per_apply: 10, ..LIMITS }).expect("engine");
    let same_bytes =
        Arc::new(FsmModule::load(&frugal, &wat::parse_str(abi_module(ERR, OK, "")).expect("wat")).expect("loads"));
    let e = Runtime::open(same_bytes, store).err().expect("refused").to_string();
    assert!(e.contains("fuel_per_apply: 1000000 vs 10"), "{e}");
    assert!(!e.contains("module_digest"), "only the differing field is named: {e}");
}

/// A memory store whose reads fail on demand: the storage engine breaking mid-apply.
struct FailingStore {
    inner: MemoryStore,
    fail: std::sync::atomic::AtomicBool,
}

struct FailingView {
    inner: Box<dyn ReadView>,
    fail: bool,
}

fn io_error() -> StorageError {
    StorageError::Io(std::io::Error::other("disk on fire"))
}

impl ReadView for FailingView {
    fn get(&self, key: &[u8], found: &mut dyn FnMut(&[u8])) -> Result<bool, StorageError> {
        if self.fail { Err(io_error()) } else { self.inner.get(key, found) }
    }
    fn scan(
        &self,
        start: std::ops::Bound<&[u8]>,
        end: std::ops::Bound<&[u8]>,
        visit: redraft::storage::Visit<'_>,
    ) -> Result<(), StorageError> {
        self.inner.scan(start, end, visit)
    }
    fn scan_rev(
        &self,
        start: std::ops::Bound<&[u8]>,
        end: std::ops::Bound<&[u8]>,
        visit: redraft::storage::Visit<'_>,
    ) -> Result<(), StorageError> {
        self.inner.scan_rev(start, end, visit)
    }
    fn meta(&self) -> Result<std::collections::BTreeMap<String, Vec<u8>>, StorageError> {
        self.inner.meta()
    }
}

impl Store for FailingStore {
    fn read(&self) -> Result<Box<dyn ReadView>, StorageError> {
        Ok(Box::new(FailingView { inner: self.inner.read()?, fail: self.fail.load(Ordering::SeqCst) }))
    }
    fn commit(&self, batch: &WriteBatch) -> Result<(), StorageError> {
        self.inner.commit(batch)
    }
    fn restore(
        &self,
        source: &mut dyn std::io::Read,
        required: &[(&str, &[u8])],
    ) -> Result<SnapshotInfo, StorageError> {
        self.inner.restore(source, required)
    }
}

#[test]
fn t51_a_storage_failure_is_fatal_never_a_reply() {
    let store = Arc::new(FailingStore { inner: MemoryStore::new(), fail: false.into() });
    let module = Arc::new(load(&abi_module(&format!("(call $put_a) (call $put_b) {OK}"), OK, "")).expect("loads"));
    let mut runtime = Runtime::open(module, store.clone()).expect("open");
    store.fail.store(true, Ordering::SeqCst);
    let batch = [encode(&["cmd"]), encode(&["cmd"])];
    let e = runtime.apply_batch(&batch, &[("last_applied", b"9")]).expect_err("must not report applied");
    assert!(matches!(e, ApplyError::Storage(_)), "{e}");
    assert!(e.to_string().contains("disk on fire"), "{e}");
    // Nothing of the batch was committed, not even its last-applied mark.
    let view = store.inner.read().expect("view");
    assert_eq!(get_owned(&*view, b"a").expect("get"), None);
    assert_eq!(view.meta().expect("meta").get("last_applied"), None);
    // Once the storage recovers, the same batch applies.
    store.fail.store(false, Ordering::SeqCst);
    let replies = runtime.apply_batch(&batch, &[("last_applied", b"9")]).expect("applies");
    assert_eq!(replies, vec![Reply::ok(), Reply::ok()]);
}
