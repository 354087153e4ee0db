//! Applied state and the last-applied mark commit atomically, even when the process dies with
//! `kill -9` in the middle of applying.
//!
//! The test re-runs its own binary as the writer (`child_writer`, which does nothing unless
//! `REDRAFT_CRASH_STORE` is set). The writer applies batches of `INCR counter` with the batch
//! number as last-applied, durably, and reports each commit on stdout; the parent kills it after
//! a number of commits, reopens the store and checks that the counter is exactly
//! `last_applied × batch size` (no half batch, no batch without its mark) and that no reported
//! commit was lost.

mod support;

use redraft::runtime::Runtime;
use redraft::storage::{RedbStore, Store, meta};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STORE_ENV: &str = "REDRAFT_CRASH_STORE";
const BATCH: u64 = 50;

#[test]
fn child_writer() {
    let Some(path) = std::env::var_os(STORE_ENV) else {
        return; // Only does something when the parent test starts it.
    };
    let store = Arc::new(RedbStore::open(std::path::Path::new(&path), true).expect("open store"));
    let mut runtime = Runtime::open(support::module(), store.clone()).expect("open runtime");
    let last = store.read().expect("view").meta().expect("meta").remove(meta::LAST_APPLIED);
    let mut batch_no = last.map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let incr = support::encode(&[b"INCR", b"counter"]);
    let commands = vec![incr; BATCH as usize];
    loop {
        batch_no += 1;
        runtime.apply_batch(&commands, &[(meta::LAST_APPLIED, &batch_no.to_le_bytes())]).expect("apply");
        // Once the parent stops reading, writes fail: keep applying until killed, so the kill
        // lands mid-batch rather than after a clean exit.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "committed {batch_no}").and_then(|()| out.flush());
    }
}

/// Kills and reaps the writer however the test ends, so no writer outlives it.
struct Writer(std::process::Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The counter and last-applied batch number in the store at `path`.
fn read_back(path: &std::path::Path) -> (i64, u64) {
    let store = Arc::new(RedbStore::open(path, true).expect("reopen after the crash"));
    let last = store.read().expect("view").meta().expect("meta").remove(meta::LAST_APPLIED);
    let last = last.map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let mut runtime = Runtime::open(support::module(), store).expect("open runtime");
    let counter = match runtime.query(&support::encode(&[b"GET", b"counter"])).expect("query") {
        fsm_sdk::Reply::Bulk(v) => String::from_utf8(v).expect("utf8").parse().expect("integer"),
        fsm_sdk::Reply::Null => 0,
        other => panic!("unexpected {other:?}"),
    };
    (counter, last)
}

#[test]
fn kill_9_while_applying_loses_nothing_acknowledged_and_splits_no_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.redb");
    let mut acknowledged_total = 0;
    // Crash points: after how many reported commits, then how far into the next batch (a delay
    // that moves the kill across the apply and the commit; not synchronisation).
    let rounds = (0..12u64).map(|r| (1 + r * 7 % 23, Duration::from_micros(r * 997 % 9_000)));
    for (round, (kill_after, delay)) in rounds.enumerate() {
        let mut child = Writer(
            Command::new(std::env::current_exe().expect("test binary"))
                .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
                .env(STORE_ENV, &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the writer"),
        );
        let stdout = child.0.stdout.take().expect("stdout");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut acknowledged = None;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read the writer's output");
            if let Some(n) = line.strip_prefix("committed ") {
                acknowledged = Some(n.parse::<u64>().expect("batch number"));
                seen += 1;
                if seen == kill_after {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "round {round}: the writer made no progress in 60 s");
        }
        // kill -9, by pid, somewhere in the next batch.
        std::thread::sleep(delay);
        child.0.kill().expect("SIGKILL the writer");
        let status = child.0.wait().expect("reap the writer");
        assert_eq!(status.signal(), Some(9), "round {round}: the writer must die by SIGKILL, not exit ({status})");
        let acknowledged = acknowledged.expect("the writer committed something");
        let (counter, last) = read_back(&path);
        assert!(last >= acknowledged, "round {round}: batch {acknowledged} was acknowledged, store has {last}");
        assert_eq!(counter, last as i64 * BATCH as i64, "round {round}: counter and last-applied disagree");
        assert!(last >= acknowledged_total, "round {round}: went backwards");
        acknowledged_total = last;
    }
}
