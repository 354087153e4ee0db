//! The guest/host ABI: every export and import name, the ABI version, the status codes, and all
//! of the SDK's `extern "C"` glue. This is the only module in the SDK (and so in any state machine
//! written with it) that contains `unsafe`.
//!
//! The contract, byte by byte, is in `docs/DESIGN.md` ("The ABI, byte by byte"). In short:
//!
//! * The host writes an encoded argument list ([`crate::codec::encode_args`]) at the module's
//!   [`export::HEAP_BASE`], where the guest's per-command allocator arena starts, then calls
//!   [`export::APPLY`] or [`export::QUERY`] with the command's index in the table and the input's
//!   length. The guest returns `(ptr << 32) | len` of an encoded reply that stays valid until the
//!   next call.
//! * State lives in the host. The guest reaches it through the functions in [`import`]; pointers
//!   are offsets into the guest's own linear memory.

/// Version of this contract. The host refuses a module that reports another number.
///
/// 2: the input is written at `__heap_base` (no `redraft_input` export) and every call is
/// guaranteed [`ARENA_BYTES_GUARANTEED`] bytes past it. 1 (never released) had `redraft_input`.
pub const ABI_VERSION: u32 = 2;

/// The wasm import module every host function lives in. It is the only import module the host
/// allows: no WASI, no clocks, no randomness.
pub const IMPORT_MODULE: &str = "redraft";

/// Names the guest exports.
pub mod export {
    /// The guest's linear memory (exported by every Rust cdylib).
    pub const MEMORY: &str = "memory";
    /// `() -> i32`: [`super::ABI_VERSION`].
    pub const ABI_VERSION: &str = "redraft_abi_version";
    /// `() -> i64`: packed pointer and length of the encoded command table.
    pub const COMMANDS: &str = "redraft_commands";
    /// An immutable `i32` global (exported by every Rust cdylib): the first address after the
    /// module's static data and stack. The host writes each command's input there, growing the
    /// memory first if it must; the guest's allocator arena starts there too.
    pub const HEAP_BASE: &str = "__heap_base";
    /// `(command_index: i32, input_len: i32) -> i64`: run a command that may write; its input is
    /// at [`HEAP_BASE`]. Returns the packed pointer and length of the encoded reply. The guest
    /// starts every call with a fresh allocator arena, its input as the first block.
    pub const APPLY: &str = "redraft_apply";
    /// `(command_index: i32, input_len: i32) -> i64`: as [`APPLY`], but the host refuses writes.
    pub const QUERY: &str = "redraft_query";
    /// `() -> i64`, optional: the module's migration hook. When the cluster switches to this
    /// module from another one, the host calls it once, inside the switch's log entry, as a write
    /// against the state the old module left: an error reply or a trap rejects the switch and
    /// leaves the old module active. Returns the packed pointer and length of the encoded reply.
    pub const MIGRATE: &str = "redraft_migrate";
    /// `(dry_run: i32) -> i64`, optional: the module's housekeeping (expiring keys, say). The
    /// leader calls it as a query with `dry_run = 1` now and then; a reply of `Integer(n)` with
    /// `n > 0` means work is due, and the leader proposes a tick entry, whose apply calls it with
    /// `dry_run = 0` as a write on every replica, at the entry's time. Returns the packed pointer
    /// and length of the encoded reply.
    pub const TICK: &str = "redraft_tick";
    /// `(input_len: i32) -> i64`, optional: a key's watch token, for `WATCH`. The input (at
    /// [`HEAP_BASE`]) is an encoded argument list holding the key; the reply is a bulk string that
    /// changes whenever the key does (value, type or expiry), or an error when the module does
    /// not support `WATCH`. Runs as a read.
    pub const WATCH: &str = "redraft_watch";
}

/// Names of the host functions the guest may import from [`IMPORT_MODULE`].
pub mod import {
    /// `(key_ptr, key_len, dst_ptr, dst_cap: i32) -> i64`: the value's length, or
    /// [`super::ABSENT`]. The value is copied to `dst` only when it fits in `dst_cap`.
    pub const GET: &str = "get";
    /// `(key_ptr, key_len, value_ptr, value_len: i32) -> i32`: 1 if the key existed before, else 0.
    pub const PUT: &str = "put";
    /// `(key_ptr, key_len: i32) -> i32`: 1 if the key existed, else 0.
    pub const DELETE: &str = "delete";
    /// `(start_ptr, start_len, end_ptr, end_len, limit, dst_ptr, dst_cap: i32) -> i64`: entries
    /// with `start <= key < end` (an empty `end` means no upper bound), at most `limit` of them,
    /// encoded as [`crate::codec::encode_entry`]. Returns the encoded length; copies only when it
    /// fits in `dst_cap`.
    pub const SCAN: &str = "scan";
    /// As [`SCAN`], with the entries in descending key order: the `limit` highest keys below
    /// `end` first.
    pub const SCAN_REV: &str = "scan_rev";
    /// `()`: removes every key of the state, in constant work whatever its size (only in a
    /// write). Like every write, it is undone if the command then fails.
    pub const CLEAR: &str = "clear";
    /// `() -> i64`: the command's time, in milliseconds since the Unix epoch. For a write it is
    /// the time the leader stamped on the log entry (never below an earlier entry's), the same on
    /// every replica; for a query it is the serving node's clock.
    pub const TIME: &str = "time";
    /// Every name above: the host's allow-list.
    pub const ALL: [&str; 7] = [GET, PUT, DELETE, SCAN, SCAN_REV, CLEAR, TIME];
}

/// Bytes of linear memory after `__heap_base` that the host guarantees exist at the start of
/// every call (it grows the memory first if they do not). The guest's arena takes them as already
/// claimed, so a call that stays within them runs no `memory.grow` at all, on any instance.
pub const ARENA_BYTES_GUARANTEED: usize = 64 * 1024;

/// Status returned by [`import::GET`] for a key that does not exist.
pub const ABSENT: i64 = -1;

/// Reply tags: the first byte of every encoded [`crate::Reply`].
pub mod tag {
    /// `+text`: a status reply such as `OK`.
    pub const SIMPLE: u8 = 1;
    /// `-CODE text`: an error reply.
    pub const ERROR: u8 = 2;
    /// `:n`: a signed 64-bit integer.
    pub const INTEGER: u8 = 3;
    /// `$len bytes`: a binary-safe string.
    pub const BULK: u8 = 4;
    /// `$-1` / `_`: no value.
    pub const NULL: u8 = 5;
    /// `*n items`: an array of replies.
    pub const ARRAY: u8 = 6;
    /// `%n pairs`: key-value pairs in order (RESP3 map; RESP2 flat array).
    pub const MAP: u8 = 7;
    /// `~n items`: an unordered collection without duplicates (RESP3 set; RESP2 array).
    pub const SET: u8 = 8;
    /// `,x`: a double (8 bytes, IEEE-754 little-endian).
    pub const DOUBLE: u8 = 9;
    /// `*n [a, b]`: pairs (RESP3 nested, RESP2 flat).
    pub const PAIRS: u8 = 10;
}

/// Flag bit of a command that changes state (goes through the Raft log).
pub const FLAG_WRITE: u32 = 1;

/// Packs a guest pointer and length into the `i64` an export returns.
pub const fn pack(ptr: u32, len: u32) -> u64 {
    ((ptr as u64) << 32) | len as u64
}

/// Splits a value made by [`pack`].
pub const fn unpack(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

#[cfg(target_arch = "wasm32")]
mod raw {
    #[link(wasm_import_module = "redraft")]
    unsafe extern "C" {
        pub fn get(key_ptr: *const u8, key_len: u32, dst_ptr: *mut u8, dst_cap: u32) -> i64;
        pub fn put(key_ptr: *const u8, key_len: u32, value_ptr: *const u8, value_len: u32) -> u32;
        pub fn delete(key_ptr: *const u8, key_len: u32) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn scan(
            start_ptr: *const u8,
            start_len: u32,
            end_ptr: *const u8,
            end_len: u32,
            limit: u32,
            dst_ptr: *mut u8,
            dst_cap: u32,
        ) -> i64;
        #[allow(clippy::too_many_arguments)]
        pub fn scan_rev(
            start_ptr: *const u8,
            start_len: u32,
            end_ptr: *const u8,
            end_len: u32,
            limit: u32,
            dst_ptr: *mut u8,
            dst_cap: u32,
        ) -> i64;
        pub fn clear();
        pub fn time() -> i64;
    }
}

/// Outside wasm there is no host: these stand-ins exist so that a state machine crate also
/// compiles natively (for its pure unit tests), and fail loudly if called.
#[cfg(not(target_arch = "wasm32"))]
mod raw {
    const NO_HOST: &str = "fsm-sdk host functions exist only inside the Redraft wasm runtime";
    pub unsafe fn get(_: *const u8, _: u32, _: *mut u8, _: u32) -> i64 {
        panic!("{NO_HOST}")
    }
    pub unsafe fn put(_: *const u8, _: u32, _: *const u8, _: u32) -> u32 {
        panic!("{NO_HOST}")
    }
    pub unsafe fn delete(_: *const u8, _: u32) -> u32 {
        panic!("{NO_HOST}")
    }
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn scan(_: *const u8, _: u32, _: *const u8, _: u32, _: u32, _: *mut u8, _: u32) -> i64 {
        panic!("{NO_HOST}")
    }
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn scan_rev(_: *const u8, _: u32, _: *const u8, _: u32, _: u32, _: *mut u8, _: u32) -> i64 {
        panic!("{NO_HOST}")
    }
    pub unsafe fn clear() {
        panic!("{NO_HOST}")
    }
    pub unsafe fn time() -> i64 {
        panic!("{NO_HOST}")
    }
}

/// Guest lengths are `u32` (wasm32 addresses); anything larger cannot exist in linear memory.
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Calls a host function that fills a caller-provided buffer and returns the size it needed,
/// growing `buf` and calling again when the first attempt did not fit.
fn fill_buffer(buf: &mut Vec<u8>, mut call: impl FnMut(*mut u8, u32) -> i64) -> Option<()> {
    loop {
        let needed = call(buf.as_mut_ptr(), len32(buf.capacity()));
        if needed < 0 {
            return None;
        }
        let needed = needed as usize;
        if needed <= buf.capacity() {
            // SAFETY: the host wrote exactly `needed` initialised bytes at the buffer's start,
            // and `needed` is within the capacity we passed.
            unsafe { buf.set_len(needed) };
            return Some(());
        }
        buf.reserve(needed);
    }
}

/// Bytes a value buffer starts with; most values fit, so a `get` is usually one host call.
const GET_BUFFER_BYTES_INITIAL: usize = 256;

pub(crate) fn host_get(key: &[u8]) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(GET_BUFFER_BYTES_INITIAL);
    // SAFETY: `key` and `dst` are valid for the lengths given; the host writes at most `cap`
    // bytes to `dst`.
    fill_buffer(&mut buf, |dst, cap| unsafe { raw::get(key.as_ptr(), len32(key.len()), dst, cap) })?;
    Some(buf)
}

pub(crate) fn host_value_len(key: &[u8]) -> Option<u32> {
    // SAFETY: with a zero capacity the host writes nothing.
    let len = unsafe { raw::get(key.as_ptr(), len32(key.len()), core::ptr::null_mut(), 0) };
    u32::try_from(len).ok()
}

pub(crate) fn host_put(key: &[u8], value: &[u8]) -> bool {
    // SAFETY: both slices are valid for the lengths given; the host only reads them.
    unsafe { raw::put(key.as_ptr(), len32(key.len()), value.as_ptr(), len32(value.len())) == 1 }
}

pub(crate) fn host_delete(key: &[u8]) -> bool {
    // SAFETY: `key` is valid for its length; the host only reads it.
    unsafe { raw::delete(key.as_ptr(), len32(key.len())) == 1 }
}

pub(crate) fn host_scan(start: &[u8], end: Option<&[u8]>, limit: u32, reverse: bool) -> Vec<u8> {
    let end = end.unwrap_or(&[]);
    let scan = if reverse { raw::scan_rev } else { raw::scan };
    let mut buf = Vec::with_capacity(GET_BUFFER_BYTES_INITIAL);
    // SAFETY: all slices are valid for the lengths given; the host writes at most `cap` bytes.
    let _ = fill_buffer(&mut buf, |dst, cap| unsafe {
        scan(start.as_ptr(), len32(start.len()), end.as_ptr(), len32(end.len()), limit, dst, cap)
    });
    buf
}

pub(crate) fn host_clear() {
    // SAFETY: no pointers.
    unsafe { raw::clear() }
}

pub(crate) fn host_time() -> i64 {
    // SAFETY: no pointers; the host returns a plain integer.
    unsafe { raw::time() }
}

/// The guest's memory allocator: a bump arena **reset at the start of every call**.
///
/// Why not the default allocator: its free lists carry over from one call to the next, so the
/// instructions (fuel) a command burns, and the memory it needs, would depend on which commands
/// ran before in the same instance. A replica that restarted (fresh instance) and one that did
/// not could then disagree on a command near its fuel budget or memory cap. With an arena reset
/// per call, every call starts from the same allocator state. The first
/// [`super::ARENA_BYTES_GUARANTEED`] bytes need no growth (the host guarantees them); past them,
/// growth runs the same instructions whether or not the instance already has the pages (it always
/// executes `memory.grow`, by zero pages when they are there). Freeing the newest block, and
/// growing or shrinking it, happen in place; other frees wait for the reset.
#[cfg(target_arch = "wasm32")]
mod arena {
    use core::alloc::{GlobalAlloc, Layout};
    use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    const PAGE_BYTES: usize = 65_536;

    unsafe extern "C" {
        /// The first address after the module's static data and stack (defined by `wasm-ld`).
        static __heap_base: u8;
    }

    /// Next free address.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    /// End of the memory this call has claimed so far: `base + ARENA_BYTES_GUARANTEED` after a
    /// reset, a page boundary after a growth. Reset with `NEXT`, so that growth happens at the
    /// same points in every instance, however old.
    static LIMIT: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn base() -> usize {
        core::ptr::addr_of!(__heap_base) as usize
    }

    /// Starts a new call: everything allocated before is forgotten. The host guarantees the
    /// first [`super::ARENA_BYTES_GUARANTEED`] bytes, so most calls never need to grow memory.
    pub fn reset() {
        NEXT.store(base(), Relaxed);
        LIMIT.store(base() + super::ARENA_BYTES_GUARANTEED, Relaxed);
    }

    /// Claims memory up to `end`. Runs the same instructions whatever the current memory size:
    /// `memory.grow` by however many pages are missing, possibly zero.
    fn claim(end: usize) -> bool {
        if end <= LIMIT.load(Relaxed) {
            return true;
        }
        let Some(limit) = end.checked_next_multiple_of(PAGE_BYTES) else { return false };
        let pages = limit / PAGE_BYTES;
        let current = core::arch::wasm32::memory_size(0);
        let missing = pages - pages.min(current);
        if core::arch::wasm32::memory_grow(0, missing) == usize::MAX {
            return false;
        }
        LIMIT.store(limit, Relaxed);
        true
    }

    pub(super) struct CallArena;

    // SAFETY: single-threaded (wasm32 without threads); every block handed out lies in claimed
    // memory between `base()` and `LIMIT`, blocks never overlap while live (the bump pointer only
    // moves back over the newest block, when it is freed or resized), and a reset happens only at
    // the start of a call, when no block from an earlier call is in use (see `guest`).
    unsafe impl GlobalAlloc for CallArena {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let next = NEXT.load(Relaxed).max(base());
            let Some(start) = next.checked_next_multiple_of(layout.align()) else { return core::ptr::null_mut() };
            let Some(end) = start.checked_add(layout.size()) else { return core::ptr::null_mut() };
            if !claim(end) {
                return core::ptr::null_mut();
            }
            NEXT.store(end, Relaxed);
            start as *mut u8
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if ptr as usize + layout.size() == NEXT.load(Relaxed) {
                NEXT.store(ptr as usize, Relaxed);
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if ptr as usize + layout.size() == NEXT.load(Relaxed) {
                // The newest block: resize in place.
                let Some(end) = (ptr as usize).checked_add(new_size) else { return core::ptr::null_mut() };
                if !claim(end) {
                    return core::ptr::null_mut();
                }
                NEXT.store(end, Relaxed);
                return ptr;
            }
            // SAFETY: `new_size` with the old alignment is a valid layout (the caller's contract).
            let new = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
            if !new.is_null() {
                // SAFETY: both blocks are live, distinct, and at least this long.
                unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            }
            new
        }
    }

    #[global_allocator]
    static ALLOCATOR: CallArena = CallArena;
}

/// Starts a call from a clean allocator (see [`arena`]); a no-op outside wasm.
fn begin_call() {
    #[cfg(target_arch = "wasm32")]
    arena::reset();
}

/// The `len` input bytes the host wrote at `__heap_base`, claimed as the arena's first block so
/// that nothing allocated later overwrites them.
///
/// # Safety
/// Call it right after [`begin_call`], once per call, and drop the slice before the call returns
/// (the next call's reset frees the block).
#[cfg(target_arch = "wasm32")]
unsafe fn claim_input<'a>(len: usize) -> &'a [u8] {
    let layout = core::alloc::Layout::from_size_align(len, 1).expect("input length fits a layout");
    // SAFETY: the arena was just reset, so its first block (alignment 1) starts exactly at
    // `__heap_base`, where the host wrote `len` bytes (growing the memory to hold them) before
    // this call; the block stays reserved until the next call resets the arena, and the slice
    // does not outlive the call (`guest::run` drops it before returning).
    unsafe {
        let ptr = <arena::CallArena as core::alloc::GlobalAlloc>::alloc(&arena::CallArena, layout);
        assert!(!ptr.is_null() && ptr as usize == arena::base(), "input block at __heap_base");
        core::slice::from_raw_parts(ptr, len)
    }
}

/// Outside wasm there is no host to write an input: the exports exist only so that a state
/// machine crate compiles natively.
#[cfg(not(target_arch = "wasm32"))]
unsafe fn claim_input<'a>(_len: usize) -> &'a [u8] {
    panic!("the guest entry points run only inside the Redraft wasm runtime")
}

/// The guest half of the exports. [`crate::export_state_machine!`] generates `#[no_mangle]`
/// wrappers that call these, so a state machine author writes no `unsafe` at all.
///
/// Every command is one call: the host writes the input at [`export::HEAP_BASE`], then calls
/// [`export::APPLY`] or [`export::QUERY`], which starts a fresh allocator arena whose first block
/// is that input. Nothing allocated in one command survives into the next.
#[doc(hidden)]
pub mod guest {
    use super::{begin_call, len32, pack};
    use crate::{StateMachine, codec};

    fn ptr32(ptr: *const u8) -> u32 {
        // On wasm32 a pointer is a 32-bit offset into linear memory.
        ptr as usize as u32
    }

    /// Hands `bytes` to the host: they stay valid until the next call begins.
    fn leak_to_host(bytes: Vec<u8>) -> u64 {
        let packed = pack(ptr32(bytes.as_ptr()), len32(bytes.len()));
        core::mem::forget(bytes);
        packed
    }

    /// Backs [`super::export::COMMANDS`].
    pub fn commands<M: StateMachine>() -> u64 {
        begin_call();
        let infos: Vec<_> = M::COMMANDS.iter().map(|c| c.info()).collect();
        let mut out = Vec::new();
        codec::encode_commands(infos.iter(), &mut out);
        leak_to_host(out)
    }

    /// Backs [`super::export::APPLY`] and [`super::export::QUERY`]. A malformed input or an
    /// index outside the table is a host bug: the guest traps rather than guess.
    pub fn apply<M: StateMachine>(index: u32, len: u32) -> u64 {
        run::<M>(index, len, false)
    }

    /// As [`apply`], refusing write commands.
    pub fn query<M: StateMachine>(index: u32, len: u32) -> u64 {
        run::<M>(index, len, true)
    }

    /// Backs [`super::export::MIGRATE`].
    pub fn migrate<M: StateMachine>() -> u64 {
        begin_call();
        let reply = M::migrate(&mut crate::Tx::new());
        let mut out = Vec::with_capacity(codec::encoded_reply_len(&reply));
        codec::encode_reply(&reply, &mut out);
        leak_to_host(out)
    }

    /// Backs [`super::export::TICK`]: with `dry_run`, whether housekeeping is due (as a read);
    /// without, the housekeeping itself (as a write).
    pub fn tick<M: StateMachine>(dry_run: u32) -> u64 {
        begin_call();
        let reply = if dry_run != 0 {
            crate::Reply::Integer(i64::from(M::tick_due(&crate::View(()))))
        } else {
            M::tick(&mut crate::Tx::new())
        };
        let mut out = Vec::with_capacity(codec::encoded_reply_len(&reply));
        codec::encode_reply(&reply, &mut out);
        leak_to_host(out)
    }

    /// Backs [`super::export::WATCH`].
    pub fn watch<M: StateMachine>(len: u32) -> u64 {
        begin_call();
        // SAFETY: right after `begin_call`, once; `input` and everything borrowing it are dropped
        // before this function returns.
        let input = unsafe { super::claim_input(len as usize) };
        let mut args = Vec::new();
        codec::decode_args_into(input, &mut args).expect("host sent a well-formed argument list");
        let reply = match args.first().map(|key| M::watch_token(&crate::View(()), key)) {
            Some(Some(token)) => crate::Reply::Bulk(token),
            Some(None) => crate::Reply::error("ERR WATCH is not supported by this state machine"),
            None => crate::Reply::error("ERR WATCH needs a key"),
        };
        let mut out = Vec::with_capacity(codec::encoded_reply_len(&reply));
        codec::encode_reply(&reply, &mut out);
        leak_to_host(out)
    }

    fn run<M: StateMachine>(index: u32, len: u32, read_only: bool) -> u64 {
        begin_call();
        // SAFETY: right after `begin_call`, once; `input` and everything borrowing it are dropped
        // before this function returns.
        let input = unsafe { super::claim_input(len as usize) };
        // Most commands have few arguments: keep them on the stack.
        let mut small: [&[u8]; 16] = [&[]; 16];
        let mut large = Vec::new();
        let decoded = codec::decode_args_to_slice(input, &mut small).expect("host sent a well-formed argument list");
        let args: &[&[u8]] = match decoded {
            Some(count) => &small[..count],
            None => {
                codec::decode_args_into(input, &mut large).expect("host sent a well-formed argument list");
                &large
            }
        };
        let command = M::COMMANDS.get(index as usize).expect("command index within the table");
        let reply = command.run(args, read_only);
        let mut out = Vec::with_capacity(codec::encoded_reply_len(&reply));
        codec::encode_reply(&reply, &mut out);
        leak_to_host(out)
    }
}

/// Exports a [`crate::StateMachine`] as a Redraft module: generates the `#[no_mangle]` entry points the
/// host calls (see [`export`]). Call it once, at the crate root of a `cdylib`.
#[macro_export]
macro_rules! export_state_machine {
    ($machine:ty) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn redraft_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn redraft_commands() -> u64 {
            $crate::abi::guest::commands::<$machine>()
        }

        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn redraft_apply(index: u32, len: u32) -> u64 {
            $crate::abi::guest::apply::<$machine>(index, len)
        }

        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn redraft_query(index: u32, len: u32) -> u64 {
            $crate::abi::guest::query::<$machine>(index, len)
        }

        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn redraft_migrate() -> u64 {
            $crate::abi::guest::migrate::<$machine>()
        }

        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn redraft_tick(dry_run: u32) -> u64 {
            $crate::abi::guest::tick::<$machine>(dry_run)
        }

        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn redraft_watch(len: u32) -> u64 {
            $crate::abi::guest::watch::<$machine>(len)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips() {
        assert_eq!(unpack(pack(0xdead_beef, 42)), (0xdead_beef, 42));
        assert_eq!(unpack(pack(u32::MAX, u32::MAX)), (u32::MAX, u32::MAX));
    }

    #[test]
    fn allow_list_names_every_import() {
        assert_eq!(
            import::ALL,
            [import::GET, import::PUT, import::DELETE, import::SCAN, import::SCAN_REV, import::CLEAR, import::TIME]
        );
    }
}
