//! The storage conformance suite: every test runs against both backends, which must behave
//! identically (redb only adds durability), and against redb behind the write-back layer the node
//! uses (flushed after every other commit, and never flushed), which must too.

use redraft::storage::snapshot::{SnapshotChunks, SnapshotInfo};
use redraft::storage::{
    FlushPolicy, RedbStore, SharedStore, StorageError, WriteBackStore, WriteBatch, get_owned, meta, state_digest,
};
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

struct Backend {
    name: &'static str,
    store: SharedStore,
    _dir: Option<tempfile::TempDir>,
}

/// Both backends, opened the way a node's config selects them, and redb behind the write-back
/// layer with a flush after every other commit (so reads meet the layers, a flush in progress
/// and redb together) and with none.
fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.redb");
    let open = |name: &str| redraft::storage::open(name.parse().expect("backend name"), &path, true).expect("open");
    let write_back = |file: &str, commits: usize| -> SharedStore {
        let redb = RedbStore::open(&dir.path().join(file), false).expect("open");
        Arc::new(WriteBackStore::new(redb, FlushPolicy { bytes: usize::MAX, commits }).expect("write-back"))
    };
    vec![
        Backend { name: "memory", store: open("memory"), _dir: None },
        Backend { name: "redb", store: open("redb"), _dir: None },
        Backend { name: "redb write-back, flushed often", store: write_back("often.redb", 2), _dir: None },
        Backend {
            name: "redb write-back, never flushed",
            store: write_back("never.redb", usize::MAX),
            _dir: Some(dir),
        },
    ]
}

#[test]
fn t01_backends_are_selected_by_name() {
    for name in ["redb", "memory_durable", "memory"] {
        let backend: redraft::storage::Backend = name.parse().expect("known backend");
        assert_eq!(backend.to_string(), name);
    }
    let e = "rocksdb".parse::<redraft::storage::Backend>().expect_err("unknown");
    assert_eq!(e, "unknown store backend \"rocksdb\": expected `redb`, `memory_durable` or `memory`");
}

fn batch(puts: &[(&str, &str)], deletes: &[&str]) -> WriteBatch {
    let mut b = WriteBatch::default();
    for (k, v) in puts {
        b.put(k.as_bytes(), v.as_bytes());
    }
    for k in deletes {
        b.delete(k.as_bytes());
    }
    b
}

fn get(store: &SharedStore, key: &str) -> Option<String> {
    let view = store.read().expect("view");
    get_owned(&*view, key.as_bytes()).expect("get").map(|v| String::from_utf8(v).expect("utf8"))
}

fn scan(store: &SharedStore, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> Vec<String> {
    scan_dir(store, start, end, limit, false)
}

/// Up to `limit` keys of the range, in ascending order (descending when `reverse`).
fn scan_dir(store: &SharedStore, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize, reverse: bool) -> Vec<String> {
    let view = store.read().expect("view");
    let mut out = Vec::new();
    let mut visit = |k: &[u8], _: &[u8]| {
        out.push(String::from_utf8_lossy(k).into_owned());
        if out.len() == limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    };
    if reverse { view.scan_rev(start, end, &mut visit) } else { view.scan(start, end, &mut visit) }.expect("scan");
    out
}

fn snapshot_bytes(store: &SharedStore, chunk_bytes: usize) -> (Vec<u8>, usize) {
    let chunks: Vec<Vec<u8>> =
        SnapshotChunks::new(store.read().expect("view"), chunk_bytes).collect::<Result<_, _>>().expect("snapshot");
    (chunks.concat(), chunks.len())
}

fn restore(store: &SharedStore, bytes: &[u8]) -> Result<SnapshotInfo, StorageError> {
    store.restore(&mut &bytes[..], &[])
}

fn digest(store: &SharedStore) -> [u8; 32] {
    state_digest(&*store.read().expect("view")).expect("digest")
}

#[test]
fn t10_put_get_delete() {
    for b in backends() {
        let s = &b.store;
        assert_eq!(get(s, "a"), None, "{}", b.name);
        s.commit(&batch(&[("a", "1"), ("b", "2")], &[])).expect("commit");
        assert_eq!(get(s, "a").as_deref(), Some("1"), "{}", b.name);
        s.commit(&batch(&[("a", "3")], &["b", "never-there"])).expect("commit");
        assert_eq!(get(s, "a").as_deref(), Some("3"), "{}", b.name);
        assert_eq!(get(s, "b"), None, "{}", b.name);
        // Empty values are values, not absence.
        s.commit(&batch(&[("empty", "")], &[])).expect("commit");
        assert_eq!(get(s, "empty").as_deref(), Some(""), "{}", b.name);
    }
}

#[test]
fn t11_scan_is_ordered_and_bounded() {
    for b in backends() {
        let s = &b.store;
        s.commit(&batch(&[("b", ""), ("a", ""), ("c", ""), ("ab", ""), ("d", "")], &[])).expect("commit");
        let all = scan(s, Bound::Unbounded, Bound::Unbounded, usize::MAX);
        assert_eq!(all, ["a", "ab", "b", "c", "d"], "{}", b.name);
        let mid = scan(s, Bound::Included(b"ab"), Bound::Excluded(b"d"), usize::MAX);
        assert_eq!(mid, ["ab", "b", "c"], "{}", b.name);
        let after = scan(s, Bound::Excluded(b"b"), Bound::Unbounded, usize::MAX);
        assert_eq!(after, ["c", "d"], "{}", b.name);
        assert_eq!(scan(s, Bound::Unbounded, Bound::Unbounded, 2), ["a", "ab"], "{}: visitor stops", b.name);
    }
}

#[test]
fn t14_a_descending_scan_is_the_ascending_one_reversed() {
    for b in backends() {
        let s = &b.store;
        // Three commits, so the write-back layers, a flush and redb each hold some of it.
        s.commit(&batch(&[("b", ""), ("a", ""), ("c", "")], &[])).expect("commit");
        s.commit(&batch(&[("ab", ""), ("d", "")], &["c"])).expect("commit");
        s.commit(&batch(&[("c", "again"), ("e", "")], &["a"])).expect("commit");
        let all = scan_dir(s, Bound::Unbounded, Bound::Unbounded, usize::MAX, true);
        assert_eq!(all, ["e", "d", "c", "b", "ab"], "{}", b.name);
        let mid = scan_dir(s, Bound::Included(b"ab"), Bound::Excluded(b"d"), usize::MAX, true);
        assert_eq!(mid, ["c", "b", "ab"], "{}", b.name);
        let top = scan_dir(s, Bound::Unbounded, Bound::Excluded(b"e"), 2, true);
        assert_eq!(top, ["d", "c"], "{}: visitor stops", b.name);
    }
}

/// The in-memory maps hold keys of up to 30 bytes inline and longer ones apart: both kinds
/// must sort, scan, overwrite and delete by their bytes alone, in every layer.
#[test]
fn t16_short_and_long_keys_sort_together() {
    let key = |c: char, n: usize| c.to_string().repeat(n);
    let (a30, a31, b29, b35) = (key('a', 30), key('a', 31), key('b', 29), key('b', 35));
    for b in backends() {
        let s = &b.store;
        s.commit(&batch(&[(&b35, "1"), (&a30, "2")], &[])).expect("commit");
        s.commit(&batch(&[(&a31, "3"), (&b29, "4")], &[])).expect("commit");
        s.commit(&batch(&[(&b35, "5")], &[&a30])).expect("commit");
        let all = scan(s, Bound::Unbounded, Bound::Unbounded, usize::MAX);
        assert_eq!(all, [a31.clone(), b29.clone(), b35.clone()], "{}", b.name);
        let rev = scan_dir(s, Bound::Unbounded, Bound::Excluded(b35.as_bytes()), usize::MAX, true);
        assert_eq!(rev, [b29.clone(), a31.clone()], "{}", b.name);
        assert_eq!(get(s, &b35).as_deref(), Some("5"), "{}", b.name);
        assert_eq!(get(s, &a30), None, "{}", b.name);
        assert_eq!(get(s, &key('a', 29)), None, "{}: a prefix is another key", b.name);
    }
}

#[test]
fn t15_a_clearing_batch_removes_every_key_keeps_meta_and_its_own_writes() {
    for b in backends() {
        let s = &b.store;
        fill(s, 500);
        s.commit(&batch(&[("late", "x")], &[])).expect("commit");
        let before = s.read().expect("view");
        let mut wb = batch(&[("after", "1")], &["key-000001"]);
        wb.clear_data = true;
        wb.set_meta(meta::LAST_APPLIED, b"term 3 index 1001");
        assert!(!wb.is_empty());
        s.commit(&wb).expect("commit");
        assert_eq!(scan(s, Bound::Unbounded, Bound::Unbounded, usize::MAX), ["after"], "{}", b.name);
        let view = s.read().expect("view");
        let meta = view.meta().expect("meta");
        assert_eq!(meta.get(meta::LAST_APPLIED).map(Vec::as_slice), Some(&b"term 3 index 1001"[..]), "{}", b.name);
        assert_eq!(meta.get(meta::CONTRACT).map(Vec::as_slice), Some(&[0xab; 32][..]), "{}: meta stays", b.name);
        assert_eq!(
            get_owned(&*before, b"late").expect("get"),
            Some(b"x".to_vec()),
            "{}: old views keep theirs",
            b.name
        );
        s.commit(&batch(&[("next", "2")], &[])).expect("commit");
        assert_eq!(scan(s, Bound::Unbounded, Bound::Unbounded, usize::MAX), ["after", "next"], "{}", b.name);
        s.sync().expect("sync");
        assert_eq!(get(s, "key-000002"), None, "{}", b.name);
    }
}

#[test]
fn t12_a_batch_commits_data_and_meta_together() {
    for b in backends() {
        let s = &b.store;
        let mut wb = batch(&[("k", "v")], &[]);
        wb.set_meta(meta::LAST_APPLIED, b"7");
        s.commit(&wb).expect("commit");
        let view = s.read().expect("view");
        assert_eq!(view.meta().expect("meta").get(meta::LAST_APPLIED).map(Vec::as_slice), Some(&b"7"[..]));
        assert_eq!(get_owned(&*view, b"k").expect("get"), Some(b"v".to_vec()), "{}", b.name);
    }
}

#[test]
fn t13_a_read_view_does_not_see_later_commits() {
    for b in backends() {
        let s = &b.store;
        s.commit(&batch(&[("k", "old")], &[])).expect("commit");
        let view = s.read().expect("view");
        s.commit(&batch(&[("k", "new"), ("other", "x")], &[])).expect("commit");
        assert_eq!(get_owned(&*view, b"k").expect("get"), Some(b"old".to_vec()), "{}", b.name);
        assert_eq!(get_owned(&*view, b"other").expect("get"), None, "{}", b.name);
        assert_eq!(get(s, "k").as_deref(), Some("new"), "{}", b.name);
    }
}

/// Fills a store with `n` entries of varied sizes, plus meta.
fn fill(store: &SharedStore, n: usize) {
    let mut wb = WriteBatch::default();
    for i in 0..n {
        let value = vec![(i % 251) as u8; i % 300];
        wb.put(format!("key-{i:06}").as_bytes(), &value);
    }
    wb.set_meta(meta::LAST_APPLIED, b"term 3 index 1000");
    wb.set_meta(meta::CONTRACT, &[0xab; 32]);
    store.commit(&wb).expect("commit");
}

#[test]
fn t20_snapshot_round_trips_in_many_chunks_across_backends() {
    let sources = backends();
    for src in &sources {
        fill(&src.store, 5_000);
        let (bytes, chunks) = snapshot_bytes(&src.store, 16 * 1024);
        assert!(chunks > 20, "{}: {chunks} chunks; the state must not travel in one buffer", src.name);
        for dst in backends() {
            dst.store.commit(&batch(&[("stale", "gone after restore")], &[])).expect("commit");
            let info = restore(&dst.store, &bytes).expect("restore");
            assert_eq!(info.entries, 5_000);
            assert_eq!(info.meta.get(meta::CONTRACT).map(Vec::as_slice), Some(&[0xab; 32][..]));
            assert_eq!(digest(&dst.store), digest(&src.store), "{} -> {}", src.name, dst.name);
            assert_eq!(get(&dst.store, "stale"), None, "{} -> {}: restore replaces", src.name, dst.name);
            let view = dst.store.read().expect("view");
            assert_eq!(
                view.meta().expect("meta").get(meta::LAST_APPLIED).map(Vec::as_slice),
                Some(&b"term 3 index 1000"[..])
            );
        }
    }
}

#[test]
fn t21_a_snapshot_is_consistent_while_writes_go_on() {
    for b in backends() {
        fill(&b.store, 2_000);
        let before = digest(&b.store);
        let mut chunks = SnapshotChunks::new(b.store.read().expect("view"), 4 * 1024);
        let mut bytes = chunks.next().expect("first chunk").expect("ok");
        // Writes land between chunks: they must not show up in the snapshot.
        for i in 0..100 {
            b.store
                .commit(&batch(&[(&format!("key-{i:06}"), "changed")], &[&format!("key-{:06}", 1999 - i)]))
                .expect("commit");
            if let Some(chunk) = chunks.next() {
                bytes.extend(chunk.expect("chunk"));
            }
        }
        for chunk in chunks {
            bytes.extend(chunk.expect("chunk"));
        }
        let fresh = backends().remove(0);
        restore(&fresh.store, &bytes).expect("restore");
        assert_eq!(digest(&fresh.store), before, "{}: snapshot shows the state as of its view", b.name);
        assert_ne!(digest(&b.store), before, "{}: the live store did change", b.name);
    }
}

#[test]
fn t22_a_damaged_snapshot_changes_nothing() {
    let src = backends().remove(0);
    fill(&src.store, 500);
    let (bytes, _) = snapshot_bytes(&src.store, 4096);
    for b in backends() {
        b.store.commit(&batch(&[("mine", "keep me")], &[])).expect("commit");
        let before = digest(&b.store);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", bytes[..bytes.len() / 2].to_vec()),
            ("missing end", bytes[..bytes.len() - 41].to_vec()),
            ("flipped byte", {
                let mut v = bytes.clone();
                let i = v.len() / 2;
                v[i] ^= 0x55;
                v
            }),
            ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            ("empty", Vec::new()),
            ("trailing bytes", [bytes.clone(), vec![0]].concat()),
        ];
        for (what, damaged) in cases {
            let e = restore(&b.store, &damaged).expect_err(what);
            assert!(matches!(e, StorageError::InvalidSnapshot(_)), "{}: {what}: {e}", b.name);
            assert_eq!(digest(&b.store), before, "{}: {what} must leave the state as it was", b.name);
            assert_eq!(get(&b.store, "mine").as_deref(), Some("keep me"));
        }
    }
}

#[test]
fn t23_a_huge_declared_length_is_refused_not_allocated() {
    let src = backends().remove(0);
    let (bytes, _) = snapshot_bytes(&src.store, 4096);
    // Header (16 + 4), then a data record claiming a 4 GiB key.
    let mut evil = bytes[..20].to_vec();
    evil.push(b'D');
    evil.extend_from_slice(&u32::MAX.to_le_bytes());
    let e = restore(&src.store, &evil).expect_err("refused");
    assert!(e.to_string().contains("exceeds"), "{e}");
}

/// The write-back layer writes whole commits, in order: whenever redb is read after the layer
/// is gone (a crash loses it), its data is exactly what its last-applied id says, and a sync
/// leaves nothing behind.
#[test]
fn t32_write_back_leaves_redb_at_a_whole_commit_and_sync_writes_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.redb");
    {
        let redb = RedbStore::open(&path, false).expect("open");
        let store: SharedStore =
            Arc::new(WriteBackStore::new(redb, FlushPolicy { bytes: usize::MAX, commits: 3 }).expect("open"));
        for i in 1..=10u32 {
            let mut wb = batch(&[(&format!("k{i:02}"), &i.to_string())], &[]);
            wb.set_meta(meta::LAST_APPLIED, i.to_string().as_bytes());
            store.commit(&wb).expect("commit");
            if i == 5 {
                store.sync().expect("sync");
            }
        }
        // Dropped without a sync, as in a crash: commits 6 to 10 may be lost, never split.
    }
    let store: SharedStore = Arc::new(RedbStore::open(&path, false).expect("reopen"));
    let meta = store.read().expect("view").meta().expect("meta");
    let last: u32 =
        String::from_utf8_lossy(meta.get(meta::LAST_APPLIED).expect("last applied")).parse().expect("number");
    assert!((5..=10).contains(&last), "synced through 5, got {last}");
    let keys = scan(&store, Bound::Unbounded, Bound::Unbounded, usize::MAX);
    let expected: Vec<String> = (1..=last).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, expected, "the data matches last-applied {last}");
    drop(store);

    let redb = RedbStore::open(&path, false).expect("reopen");
    let store: SharedStore =
        Arc::new(WriteBackStore::new(redb, FlushPolicy { bytes: usize::MAX, commits: usize::MAX }).expect("open"));
    store.commit(&batch(&[("late", "x")], &["k01"])).expect("commit");
    store.sync().expect("sync");
    drop(store);
    let store: SharedStore = Arc::new(RedbStore::open(&path, false).expect("reopen"));
    assert_eq!(get(&store, "late").as_deref(), Some("x"));
    assert_eq!(get(&store, "k01"), None);
}

#[test]
fn t30_redb_state_survives_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.redb");
    let expected = {
        let store: SharedStore = Arc::new(RedbStore::open(&path, true).expect("open"));
        fill(&store, 1_000);
        digest(&store)
    };
    let store: SharedStore = Arc::new(RedbStore::open(&path, true).expect("reopen"));
    assert_eq!(digest(&store), expected);
    let meta = store.read().expect("view").meta().expect("meta");
    assert_eq!(meta.get(meta::LAST_APPLIED).map(Vec::as_slice), Some(&b"term 3 index 1000"[..]));
}

#[test]
fn t31_digest_ignores_meta_and_backend() {
    let backends = backends();
    let a = &backends[0];
    a.store.commit(&batch(&[("x", "1")], &[])).expect("commit");
    for b in &backends[1..] {
        let mut wb = batch(&[("x", "1")], &[]);
        wb.set_meta(meta::LAST_APPLIED, b"anything");
        b.store.commit(&wb).expect("commit");
        assert_eq!(digest(&a.store), digest(&b.store), "{}", b.name);
        b.store.commit(&batch(&[("x", "2")], &[])).expect("commit");
        assert_ne!(digest(&a.store), digest(&b.store), "{}", b.name);
    }
}

/// A reader that fails the test if anything past its first `limit` bytes is read.
struct Fence<'a> {
    bytes: &'a [u8],
    limit: usize,
    read: usize,
}

impl std::io::Read for Fence<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.bytes.len() - self.read);
        assert!(self.read + n <= self.limit, "read past the meta section: the check came too late");
        buf[..n].copy_from_slice(&self.bytes[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

#[test]
fn t24_a_snapshot_without_a_required_meta_value_is_refused_before_its_data() {
    let src = backends().remove(0);
    fill(&src.store, 100);
    let (bytes, _) = snapshot_bytes(&src.store, 4096);
    // Header and meta records, then one more byte: the tag that ends the meta section.
    let meta = src.store.read().expect("view").meta().expect("meta");
    let meta_bytes: usize = meta.iter().map(|(k, v)| 9 + k.len() + v.len()).sum();
    let limit = 20 + meta_bytes + 1;
    for b in backends() {
        b.store.commit(&batch(&[("mine", "keep me")], &[])).expect("commit");
        let mut fence = Fence { bytes: &bytes, limit, read: 0 };
        let e = b.store.restore(&mut fence, &[(meta::CONTRACT, &[0xcd; 32])]).expect_err("refused");
        assert!(matches!(e, StorageError::SnapshotRefused(_)), "{}: {e}", b.name);
        assert!(e.to_string().contains("`fsm_contract` is abab"), "{e}");
        assert_eq!(get(&b.store, "mine").as_deref(), Some("keep me"), "{}", b.name);
        b.store.restore(&mut &bytes[..], &[(meta::CONTRACT, &[0xab; 32])]).expect("matching value restores");
        assert_eq!(get(&b.store, "mine"), None, "{}", b.name);
    }
}

#[test]
fn t25_random_damage_to_a_snapshot_is_an_error_never_a_panic_or_a_change() {
    let src = backends().remove(0);
    fill(&src.store, 50);
    let (bytes, _) = snapshot_bytes(&src.store, 1024);
    let mut seed = 0x5eedu64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for b in backends() {
        b.store.commit(&batch(&[("mine", "keep me")], &[])).expect("commit");
        let before = digest(&b.store);
        for _ in 0..300 {
            let mut damaged = bytes.clone();
            for _ in 0..1 + next() % 3 {
                let i = next() % damaged.len();
                damaged[i] ^= 1 + (next() % 255) as u8;
            }
            if damaged == bytes {
                continue;
            }
            assert!(restore(&b.store, &damaged).is_err(), "{}: damaged snapshot accepted", b.name);
            assert_eq!(digest(&b.store), before, "{}", b.name);
        }
    }
}
