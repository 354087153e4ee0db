//! The guest/host ABI: every export and import name, the ABI version, the status codes, and all
//! of the SDK's `extern "C"` glue. This is the only module in the SDK (and so in any state machine
//! written with it) that contains `unsafe`.
//!
//! The contract, byte by byte, is in `docs/DESIGN.md` ("The ABI, byte by byte"). In short:
//!
//! * The host writes an encoded argument list ([`crate::codec::encode_args`]) into a buffer the
//!   guest hands out through [`export::INPUT`], then calls [`export::APPLY`] or [`export::QUERY`]
//!   with the command's index in the table. The guest returns `(ptr << 32) | len` of an encoded
//!   reply that stays valid until the next call.
//! * State lives in the host. The guest reaches it through the functions in [`import`]; pointers
//!   are offsets into the guest's own linear memory.

/// Version of this contract. The host refuses a module that reports another number.
pub const ABI_VERSION: u32 = 1;

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
    /// `(len: i32) -> i32`: pointer to a guest buffer of at least `len` bytes for the next call's
    /// input. The buffer never shrinks and stays at that address until the next `INPUT` call, so
    /// the host calls this only when an input is longer than any before it.
    pub const INPUT: &str = "redraft_input";
    /// `(command_index: i32, input_len: i32) -> i64`: run a command that may write; returns the
    /// packed pointer and length of the encoded reply.
    pub const APPLY: &str = "redraft_apply";
    /// `(command_index: i32, input_len: i32) -> i64`: as [`APPLY`], but the host refuses writes.
    pub const QUERY: &str = "redraft_query";
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
    /// Every name above: the host's allow-list.
    pub const ALL: [&str; 4] = [GET, PUT, DELETE, SCAN];
}

/// Status returned by [`import::GET`] for a key that does not exist.
pub const ABSENT: i64 = -1;

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

pub(crate) fn host_scan(start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<u8> {
    let end = end.unwrap_or(&[]);
    let mut buf = Vec::with_capacity(GET_BUFFER_BYTES_INITIAL);
    // SAFETY: all slices are valid for the lengths given; the host writes at most `cap` bytes.
    let _ = fill_buffer(&mut buf, |dst, cap| unsafe {
        raw::scan(start.as_ptr(), len32(start.len()), end.as_ptr(), len32(end.len()), limit, dst, cap)
    });
    buf
}

/// The guest half of the exports. [`crate::export_state_machine!`] generates `#[no_mangle]`
/// wrappers that call these, so a state machine author writes no `unsafe` at all.
#[doc(hidden)]
pub mod guest {
    use super::{len32, pack};
    use crate::{StateMachine, codec};
    use std::cell::RefCell;

    /// Buffers reused across calls. They carry no meaning from one call to the next: the host
    /// overwrites the input before every call and reads the output right after it.
    struct Buffers {
        input: Vec<u8>,
        output: Vec<u8>,
    }

    thread_local! {
        static BUFFERS: RefCell<Buffers> = const {
            RefCell::new(Buffers { input: Vec::new(), output: Vec::new() })
        };
    }

    fn ptr32(ptr: *const u8) -> u32 {
        // On wasm32 a pointer is a 32-bit offset into linear memory.
        ptr as usize as u32
    }

    /// Backs [`super::export::COMMANDS`].
    pub fn commands<M: StateMachine>() -> u64 {
        BUFFERS.with_borrow_mut(|b| {
            b.output.clear();
            let infos: Vec<_> = M::COMMANDS.iter().map(|c| c.info()).collect();
            codec::encode_commands(infos.iter(), &mut b.output);
            pack(ptr32(b.output.as_ptr()), len32(b.output.len()))
        })
    }

    /// Backs [`super::export::INPUT`].
    pub fn input(len: u32) -> u32 {
        BUFFERS.with_borrow_mut(|b| {
            if b.input.len() < len as usize {
                b.input.resize(len as usize, 0);
            }
            ptr32(b.input.as_ptr())
        })
    }

    /// Backs [`super::export::APPLY`] and [`super::export::QUERY`]. A malformed input or an
    /// index outside the table is a host bug: the guest traps rather than guess.
    pub fn call<M: StateMachine>(index: u32, len: u32, read_only: bool) -> u64 {
        BUFFERS.with_borrow_mut(|b| {
            let Buffers { input, output } = b;
            let input = input.get(..len as usize).expect("input length within the input buffer");
            let mut args = Vec::new();
            codec::decode_args_into(input, &mut args).expect("host sent a well-formed argument list");
            let command = M::COMMANDS.get(index as usize).expect("command index within the table");
            let reply = command.run(&args, read_only);
            output.clear();
            codec::encode_reply(&reply, output);
            pack(ptr32(output.as_ptr()), len32(output.len()))
        })
    }
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
        assert_eq!(import::ALL, [import::GET, import::PUT, import::DELETE, import::SCAN]);
    }
}
