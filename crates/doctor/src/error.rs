//! One error type for the apply side, grouped by concern. Every variant names
//! what an operator needs to act: the pid/tid, the object, the function, the
//! file, and whether the patient was left untouched.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- the patient -------------------------------------------------------
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: i32 },
    #[error("process {pid} exited while being patched")]
    Exited { pid: i32 },
    #[error("ptrace {op} on thread {tid} failed: {source}")]
    Ptrace {
        op: &'static str,
        tid: i32,
        source: nix::Error,
    },
    #[error("thread {tid} of process {pid} {what}")]
    Thread { pid: i32, tid: i32, what: String },
    #[error("reading {what} of process {pid}: {source}")]
    Proc {
        pid: i32,
        what: String,
        source: std::io::Error,
    },
    #[error("{op} {len} bytes at {addr:#x} in process {pid}: {source}")]
    Memory {
        op: &'static str,
        pid: i32,
        addr: u64,
        len: usize,
        source: std::io::Error,
    },
    #[error("remote {name} in process {pid} failed: {errno}")]
    RemoteSyscall {
        pid: i32,
        name: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("no executable `syscall` instruction found in process {pid}")]
    NoSyscallInsn { pid: i32 },

    // ---- objects and the patch file ----------------------------------------
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Kpatch {
        path: PathBuf,
        source: kpatch_file::Error,
    },
    #[error("{what}: malformed ELF: {detail}")]
    Elf { what: String, detail: String },
    #[error("patch for BuildID {build_id} matches no object of process {pid}")]
    NoTarget { pid: i32, build_id: String },

    // ---- preparing the patch -----------------------------------------------
    #[error("patch {patch}: symbol `{symbol}` not found in any object of process {pid}")]
    Unresolved {
        pid: i32,
        patch: String,
        symbol: String,
    },
    #[error("patch {patch}: section `{section}` not found in target object {object}")]
    NoSection {
        patch: String,
        section: String,
        object: String,
    },
    #[error("patch {patch}: unsupported {what}")]
    Unsupported { patch: String, what: String },
    #[error("patch {patch}: cannot be placed exactly: {what}; patient untouched")]
    Layout { patch: String, what: String },
    #[error(
        "patch {}: relocation {} at {}+{:#x} against `{}`: {}",
        .0.patch, .0.rtype, .0.section, .0.offset, .0.symbol, .0.why
    )]
    Relocation(Box<RelocFault>),
    #[error("no free address range of {size:#x} bytes within 2 GiB of {object} in process {pid}")]
    NoRoom { pid: i32, object: String, size: u64 },
    #[error("function `{function}` is {len} bytes, too short for a {need}-byte jump")]
    FunctionTooShort {
        function: String,
        len: u32,
        need: u32,
    },
    #[error("function `{function}`: jump from {from:#x} to {to:#x} does not fit in 32 bits")]
    JumpTooFar {
        function: String,
        from: u64,
        to: u64,
    },

    // ---- applying ------------------------------------------------------------
    #[error("unsafe to switch: thread {tid} is in `{function}` ({where_}); patient untouched")]
    Unsafe {
        tid: i32,
        function: String,
        where_: String,
    },
    #[error(
        "unsafe to switch: stack walk of thread {tid} failed at pc {pc:#x} ({place}): {why}; patient untouched"
    )]
    Unwalkable {
        tid: i32,
        pc: u64,
        place: String,
        why: String,
    },
    #[error(
        "unsafe to switch: `{function}` is suspended on a coroutine stack ({kind} at {at:#x}: {detail}); patient untouched"
    )]
    Suspended {
        function: String,
        kind: &'static str,
        at: u64,
        detail: String,
    },
    #[error(
        "process {pid} switches stacks (`makecontext` in {object}) but its coroutines cannot be found: {why}; patient untouched"
    )]
    Coroutines {
        pid: i32,
        object: String,
        why: String,
    },
    #[error("interrupted by {signal} while waiting for {waiting_for}; patient untouched")]
    Interrupted { signal: String, waiting_for: String },
    #[error("patient {pid}: applied patch record at {addr:#x} is corrupt: {why}")]
    BadRecord { pid: i32, addr: u64, why: String },
    #[error("patch storage {path}: {why}")]
    Storage { path: PathBuf, why: String },
}

/// Where a relocation went wrong (boxed: it is the largest error).
#[derive(Debug)]
pub struct RelocFault {
    pub patch: String,
    pub section: String,
    pub offset: u64,
    pub rtype: String,
    pub symbol: String,
    pub why: String,
}

pub type Result<T> = std::result::Result<T, Error>;
