//! The native reference the wasm runtime is measured against: fsm-kv's `SET` written directly in
//! Rust against the same store, doing the same work (decode the arguments, look the key up,
//! write it and the key count when new, commit with the last-applied mark).
//! Shared by `benches/apply.rs` and `examples/apply_loop.rs`.

use fsm_sdk::codec;
use redraft::storage::{SharedStore, WriteBatch, meta};

/// The native reference: fsm-kv's `SET` written directly against the store.
pub struct Native {
    store: SharedStore,
    batch: WriteBatch,
}

impl Native {
    /// A reference over `store`.
    pub fn new(store: SharedStore) -> Self {
        Native { store, batch: WriteBatch::default() }
    }

    /// Applies encoded `SET`s as fsm-kv would, with `last_applied` in the same commit.
    pub fn apply_batch(&mut self, commands: &[Vec<u8>], last_applied: &[u8]) -> Vec<fsm_sdk::Reply> {
        let view = self.store.read().expect("view");
        let mut replies = Vec::with_capacity(commands.len());
        let mut args = Vec::new();
        let mut added = 0i64;
        for command in commands {
            codec::decode_args_into(command, &mut args).expect("decode");
            assert!(args[0].eq_ignore_ascii_case(b"set") && args.len() == 3);
            let mut key = Vec::with_capacity(args[1].len() + 1);
            key.push(b'k');
            key.extend_from_slice(args[1]);
            let existed = match self.batch.data.get(&key) {
                Some(v) => v.is_some(),
                None => view.get(&key, &mut |_| {}).expect("get"),
            };
            self.batch.put(&key, args[2]);
            if !existed {
                added += 1;
            }
            replies.push(fsm_sdk::Reply::ok());
        }
        if added != 0 {
            let mut count = [0u8; 8];
            view.get(b"m:dbsize", &mut |v| count.copy_from_slice(&v[..8])).expect("get");
            let n = i64::from_le_bytes(count) + added;
            self.batch.put(b"m:dbsize", &n.to_le_bytes());
        }
        self.batch.set_meta(meta::LAST_APPLIED, last_applied);
        drop(view);
        self.store.commit(&self.batch).expect("commit");
        self.batch.clear();
        replies
    }
}
