//! Who waits for which keys: the apply loop wakes a blocked client (`BLPOP` and friends) when a
//! command it applies writes one of the client's keys, on whichever node the client waits.
//!
//! A wake-up is a hint, never a reply: the woken client runs its pop through the log like any
//! write and blocks again if another client got there first. So a spurious wake-up costs one
//! check, and the only thing that must not happen is a missed one: each waiter has its own
//! [`Notify`], whose stored permit covers a write applied between the waiter's check and its wait.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The registry: keys to the waiters blocked on them.
#[derive(Debug, Default)]
pub struct KeyWaiters {
    /// How many registrations exist: the apply loop looks at nothing else while it is zero.
    count: AtomicUsize,
    by_key: Mutex<HashMap<Bytes, Vec<Arc<Notify>>>>,
}

impl KeyWaiters {
    /// Whether anyone waits: the apply loop skips decoding keys when no one does.
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Blocks the caller on `keys` until the returned registration is dropped.
    pub fn register(self: &Arc<Self>, keys: &[Bytes]) -> Registration {
        let notify = Arc::new(Notify::new());
        {
            let mut by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
            for key in keys {
                by_key.entry(key.clone()).or_default().push(notify.clone());
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        Registration { waiters: self.clone(), keys: keys.to_vec(), notify }
    }

    /// A command applied here wrote `key`: wakes everyone blocked on it.
    pub fn written(&self, key: &[u8]) {
        let by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        for notify in by_key.get(key).into_iter().flatten() {
            notify.notify_one();
        }
    }

    /// The state changed in ways no key list describes (a transaction, a snapshot installed, a
    /// module switch): wakes every waiter to look again.
    pub fn everything_changed(&self) {
        if !self.any() {
            return;
        }
        let by_key = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        for notify in by_key.values().flatten() {
            notify.notify_one();
        }
    }
}

/// One blocked client's place in the registry; dropping it leaves.
#[derive(Debug)]
pub struct Registration {
    waiters: Arc<KeyWaiters>,
    keys: Vec<Bytes>,
    notify: Arc<Notify>,
}

impl Registration {
    /// Resolves once one of the keys was written since the last call (or since registering).
    pub async fn written(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut by_key = self.waiters.by_key.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            if let Some(list) = by_key.get_mut(key) {
                list.retain(|n| !Arc::ptr_eq(n, &self.notify));
                if list.is_empty() {
                    by_key.remove(key);
                }
            }
        }
        self.waiters.count.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_before_the_wait_is_not_missed_and_others_keys_do_not_wake() {
        let waiters = Arc::new(KeyWaiters::default());
        let registration = waiters.register(&[Bytes::from_static(b"q1"), Bytes::from_static(b"q2")]);
        assert!(waiters.any());
        waiters.written(b"other");
        let woke = tokio::time::timeout(std::time::Duration::from_millis(20), registration.written()).await;
        assert!(woke.is_err(), "a write to another key wakes no one");
        // Written before anyone awaits: the permit is kept.
        waiters.written(b"q2");
        tokio::time::timeout(std::time::Duration::from_secs(5), registration.written()).await.expect("woken");
        drop(registration);
        assert!(!waiters.any());
        assert!(waiters.by_key.lock().expect("lock").is_empty(), "nothing left behind");
    }
}
