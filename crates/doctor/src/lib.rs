//! doctor: the apply side of live patching. It holds a running process (the
//! patient), maps its ELF objects, loads a `.kpatch` into memory next to
//! the object it targets, resolves and relocates it, waits until no thread
//! is inside a function being replaced, and redirects those functions with
//! jumps; `unpatch` undoes exactly that.
//!
//! Read it top-down in the order of the seed's walk-through: `patient`
//! (hold every thread; `ptrace` and `syscall` underneath) -> `startup` (a
//! process still in its dynamic linker is run to its entry point first) ->
//! `maps`/`object` (what is loaded where, in link-map order) -> `storage`/
//! `patch` (the file) -> `layout`/`region` (where it goes) -> `resolve` ->
//! `relocate` (with `jump_table`) -> `patch_frames` (the patch code's
//! unwind table, for our stack walk and the patient's own unwinder) ->
//! `safety` (with `unwind`, `stack_scan` for code without unwind
//! tables, and `coroutines` for stacks no thread is on) -> `hunk` -> `record` (what we leave behind for `unpatch`/
//! `info`); `apply` and `unpatch` drive the flow, `undo_log` takes back
//! every write when a step after the first write fails.
//!
//! It must never leave a patient stopped or half-patched, never write to a
//! patient before everything that can fail without writing has been
//! checked, and never parse assembly or build patches (that is the build
//! side). `unsafe` lives in `ptrace` alone.

pub mod apply;
mod coroutines;
pub mod error;
pub mod hunk;
pub mod info;
pub mod jump_table;
pub mod layout;
pub mod maps;
pub mod object;
pub mod patch;
pub mod patch_frames;
pub mod patient;
mod ptrace;
pub mod record;
pub mod region;
pub mod relocate;
pub mod report;
pub mod resolve;
pub mod safety;
mod stack_scan;
pub mod startup;
pub mod storage;
mod syscall;
mod undo_log;
pub mod unpatch;
pub mod unwind;

pub use apply::{Options, patch_process};
pub use error::{Error, Result};
pub use ptrace::{defer_termination, termination_pending};
pub use report::{PatchOutcome, ProcessReport};
pub use unpatch::unpatch_process;
