//! Remote unwinder: the call stack of a stopped thread, from its registers
//! and its process's memory, for the safety check (is a function we are
//! about to switch on any stack?).
//!
//! It owns the walk only: CFI from each object's `.eh_frame` (gimli's
//! evaluation, no frame-pointer guessing), the vDSO's table read from the
//! patient, patch code's own tables, and signal frames through the kernel's
//! `rt_sigframe`. It never stops, resumes or writes to a process; the caller
//! holds the patient and hands in registers and a [`Memory`]. It never
//! reports a truncated stack as complete: every walk ends at a frame the CFI
//! marks outermost, or in an [`UnwindError`] naming the pc and object.

mod cfi;
mod memory;
mod registers;
mod sigframe;
mod tables;

use std::sync::Arc;

use gimli::UnwindContext;

pub use cfi::CfiError;
pub use memory::{CodePages, Memory, MemoryError, ProcessMemory};
pub use registers::Registers;
pub use sigframe::RESTORE_RT;
pub use tables::{TableError, Tables, load_bias};

use memory::PageCache;
use registers::RegisterFile;
use tables::Lookup;

/// How a frame's pc relates to the code that was running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// The innermost frame: pc is where the thread is stopped.
    Top,
    /// pc is a return address: the call instruction is just before it.
    Call,
    /// The sigreturn trampoline a signal handler returns into.
    SignalTrampoline,
    /// pc is where a signal interrupted the thread (saved by the kernel).
    Interrupted,
}

/// One frame of a walked stack.
#[derive(Clone, Debug)]
pub struct Frame {
    pub pc: u64,
    /// Stack pointer in this frame.
    pub sp: u64,
    /// Canonical frame address computed from this frame's CFI (for a
    /// signal trampoline: the address of the saved ucontext).
    pub cfa: Option<u64>,
    pub kind: FrameKind,
    /// Name of the object (file path, `[vdso]`, patch region) holding pc.
    pub object: Option<Arc<str>>,
}

impl Frame {
    /// The address that identifies the code this frame is executing: for a
    /// return address the call instruction before it (a call to a
    /// `noreturn` function may be the last instruction of its function), for
    /// the other kinds the pc itself.
    pub fn lookup_pc(&self) -> u64 {
        match self.kind {
            FrameKind::Call => self.pc.wrapping_sub(1),
            _ => self.pc,
        }
    }
}

/// A walk that could not reach the outermost frame. The safety check must
/// treat every one of these as "unsafe".
#[derive(Debug, thiserror::Error)]
pub enum UnwindError {
    #[error("frame {frame}: pc {pc:#x} is in no object with unwind tables (anonymous memory?)")]
    UnknownCode { frame: usize, pc: u64 },
    #[error("frame {frame}: no FDE in {object}'s .eh_frame covers pc {pc:#x}")]
    NoFde {
        frame: usize,
        pc: u64,
        object: Arc<str>,
    },
    #[error("frame {frame}: pc {pc:#x} in {object}: {source}")]
    Cfi {
        frame: usize,
        pc: u64,
        object: Arc<str>,
        source: CfiError,
    },
    #[error("frame {frame}: signal frame at pc {pc:#x}, ucontext at {ucontext:#x}: {source}")]
    SignalFrame {
        frame: usize,
        pc: u64,
        ucontext: u64,
        source: MemoryError,
    },
    #[error("frame {frame}: pc {pc:#x} in {object}: rsp unknown")]
    NoStackPointer {
        frame: usize,
        pc: u64,
        object: Arc<str>,
    },
    #[error(
        "frame {frame}: pc {pc:#x} in {object}: no progress (caller sp {caller_sp:#x} not above sp {sp:#x})"
    )]
    NoProgress {
        frame: usize,
        pc: u64,
        object: Arc<str>,
        sp: u64,
        caller_sp: u64,
    },
    #[error("stack deeper than {max} frames (last pc {pc:#x})")]
    TooDeep { max: usize, pc: u64 },
}

impl UnwindError {
    /// The pc at which the walk stopped.
    pub fn pc(&self) -> u64 {
        match self {
            UnwindError::UnknownCode { pc, .. }
            | UnwindError::NoFde { pc, .. }
            | UnwindError::Cfi { pc, .. }
            | UnwindError::SignalFrame { pc, .. }
            | UnwindError::NoStackPointer { pc, .. }
            | UnwindError::NoProgress { pc, .. }
            | UnwindError::TooDeep { pc, .. } => *pc,
        }
    }
}

/// Walks the stack of a thread stopped with registers `regs`, from the
/// innermost frame to the outermost, which is the last frame returned.
///
/// Outermost means the CFI says there is no caller (return address rule
/// undefined, as glibc's `_start` and `clone`/`clone3` child paths declare),
/// the return address is 0, or the pc is in an ELF entry function that has
/// no FDE at all in an object whose other code has FDEs (a hand-written `_start` without CFI), taken to run from
/// the entry point up to the next FDE. Anything else that stops the walk is an
/// error; so is a stack deeper than `max_frames`.
pub fn unwind(
    regs: &Registers,
    memory: &dyn Memory,
    tables: &Tables,
    max_frames: usize,
) -> Result<Vec<Frame>, UnwindError> {
    let mut frames = Vec::new();
    walk(regs, memory, tables, max_frames, &mut frames)?;
    Ok(frames)
}

/// [`unwind`] that keeps the frames walked before a failure: what a caller
/// may still use when it must judge a stack it cannot walk to the end (a
/// suspended coroutine whose outer code has no unwind tables).
pub fn unwind_partial(
    regs: &Registers,
    memory: &dyn Memory,
    tables: &Tables,
    max_frames: usize,
) -> (Vec<Frame>, Option<UnwindError>) {
    let mut frames = Vec::new();
    let failure = walk(regs, memory, tables, max_frames, &mut frames).err();
    (frames, failure)
}

fn walk(
    regs: &Registers,
    memory: &dyn Memory,
    tables: &Tables,
    max_frames: usize,
    frames: &mut Vec<Frame>,
) -> Result<(), UnwindError> {
    let memory = PageCache::new(memory);
    let mut ctx = UnwindContext::new();
    let mut current = RegisterFile::from(regs);
    let mut kind = FrameKind::Top;
    loop {
        let index = frames.len();
        let pc = current.pc().unwrap_or(0);
        let sp = current.sp();
        if index == max_frames {
            return Err(UnwindError::TooDeep {
                max: max_frames,
                pc,
            });
        }
        let object = tables.object_name_at(pc);
        let mut frame = Frame {
            pc,
            sp: sp.unwrap_or(0),
            cfa: None,
            kind,
            object: object.clone(),
        };

        // The trampoline is recognised by its code before any FDE lookup: a
        // return address pointing at it would otherwise be looked up at pc-1,
        // which belongs to whatever precedes the trampoline.
        if sigframe::trampoline_at(&memory, pc, kind != FrameKind::Call) {
            let ucontext = sp.ok_or_else(|| UnwindError::NoStackPointer {
                frame: index,
                pc,
                object: name(&object),
            })?;
            current = sigframe::interrupted(&memory, ucontext).map_err(|source| {
                UnwindError::SignalFrame {
                    frame: index,
                    pc,
                    ucontext,
                    source,
                }
            })?;
            frame.kind = FrameKind::SignalTrampoline;
            frame.cfa = Some(ucontext);
            frames.push(frame);
            kind = FrameKind::Interrupted;
            if current.pc() == Some(0) {
                return Ok(());
            }
            continue;
        }

        let mut lookup_pc = if kind == FrameKind::Call {
            pc.wrapping_sub(1)
        } else {
            pc
        };
        if kind != FrameKind::Call {
            match clone_return(tables, &memory, pc, &current) {
                Some(CloneReturn::Child) => {
                    frames.push(frame);
                    return Ok(());
                }
                Some(CloneReturn::Parent) => lookup_pc = pc - CLONE_RETURN_BACK,
                None => {}
            }
        }
        if kind == FrameKind::Call && returns_to_start_context(tables, &memory, pc) {
            frames.push(frame);
            return Ok(());
        }
        let (table, fde) = match tables.lookup(lookup_pc) {
            Lookup::Unknown => {
                return Err(UnwindError::UnknownCode {
                    frame: index,
                    pc: lookup_pc,
                });
            }
            Lookup::Known { object, fde: None } if object.in_entry_without_cfi(lookup_pc) => {
                frames.push(frame);
                return Ok(());
            }
            Lookup::Known { object, fde: None } => {
                return Err(UnwindError::NoFde {
                    frame: index,
                    pc: lookup_pc,
                    object: object.name.clone(),
                });
            }
            Lookup::Known {
                object,
                fde: Some(fde),
            } => (object, fde),
        };
        let step = match cfi::step(table, fde, lookup_pc, &current, &memory, &mut ctx) {
            Ok(step) => step,
            Err(CfiError::NotCovered) if table.in_entry_without_cfi(lookup_pc) => {
                frames.push(frame);
                return Ok(());
            }
            Err(CfiError::NotCovered) => {
                return Err(UnwindError::NoFde {
                    frame: index,
                    pc: lookup_pc,
                    object: table.name.clone(),
                });
            }
            Err(source) => {
                return Err(UnwindError::Cfi {
                    frame: index,
                    pc: lookup_pc,
                    object: table.name.clone(),
                    source,
                });
            }
        };
        frame.cfa = Some(step.cfa);
        frames.push(frame);
        let Some(caller) = step.caller else {
            return Ok(());
        };
        match caller.pc() {
            Some(0) => return Ok(()),
            Some(_) => {}
            None => {
                return Err(UnwindError::Cfi {
                    frame: index,
                    pc: lookup_pc,
                    object: table.name.clone(),
                    source: CfiError::UnknownRegister(registers::RIP),
                });
            }
        }
        let sp = sp.unwrap_or(0);
        let caller_sp = caller.sp().unwrap_or(0);
        // A call always leaves the caller's sp above the callee's; a signal
        // frame (possibly on an alternate stack) only has to change state.
        let progress = if step.signal_frame {
            (caller_sp, caller.pc()) != (sp, Some(pc))
        } else {
            caller_sp > sp
        };
        if !progress {
            return Err(UnwindError::NoProgress {
                frame: index,
                pc,
                object: table.name.clone(),
                sp,
                caller_sp,
            });
        }
        current = caller;
        kind = if step.signal_frame {
            FrameKind::Interrupted
        } else {
            FrameKind::Call
        };
    }
}

fn name(object: &Option<Arc<str>>) -> Arc<str> {
    object
        .clone()
        .unwrap_or_else(|| Arc::from("anonymous memory"))
}

/// The first instructions of glibc's x86-64 `__start_context`, where the
/// entry function of a stack made by `makecontext` returns:
/// `mov %rbx,%rsp; mov (%rsp),%rdi; test %rdi,%rdi`.
const START_CONTEXT: [u8; 10] = [0x48, 0x89, 0xdc, 0x48, 0x8b, 0x3c, 0x24, 0x48, 0x85, 0xff];
const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// Whether a frame returns to `__start_context`: the outermost frame of a
/// coroutine stack. makecontext puts that routine's own address as the
/// return address, so the usual lookup at `pc - 1` lands before it, in no
/// FDE; the routine never returns to anything either. Recognised by its
/// code where the return address has no unwind row.
fn returns_to_start_context(tables: &Tables, memory: &dyn Memory, pc: u64) -> bool {
    if let Lookup::Known { object, .. } = tables.lookup(pc.wrapping_sub(1))
        && object.covered(pc.wrapping_sub(1))
    {
        return false;
    }
    let mut code = [0u8; 14];
    if memory.read(pc, &mut code).is_err() {
        return false;
    }
    code[..10] == START_CONTEXT || (code[..4] == ENDBR64 && code[4..] == START_CONTEXT)
}

/// `syscall`, then `test %rax,%rax`: the return of glibc's `clone` and
/// `clone3`.
const SYSCALL: [u8; 2] = [0x0f, 0x05];
const TEST_RAX: [u8; 3] = [0x48, 0x85, 0xc0];
/// From the return of the syscall back to the last byte before it.
const CLONE_RETURN_BACK: u64 = 3;

enum CloneReturn {
    /// The new thread, before its first instruction: nothing called it.
    Child,
    /// The creating thread (stopped there by the clone event while we
    /// trace it): still in the state the FDE describes up to the syscall.
    Parent,
}

/// glibc's `clone` and `clone3` end their FDE just before the `syscall`,
/// so that the child is not unwound with the parent's rules; a thread
/// stopped on the syscall's return is then in no FDE. The child (rax 0)
/// is the outermost frame; the parent has changed nothing the CFI tracks
/// since the FDE's last row (the syscall only writes rax, rcx and r11), so
/// that row unwinds it. Anything else in an FDE gap stays an error.
fn clone_return(
    tables: &Tables,
    memory: &dyn Memory,
    pc: u64,
    regs: &RegisterFile,
) -> Option<CloneReturn> {
    let Lookup::Known { object, .. } = tables.lookup(pc) else {
        return None;
    };
    if object.covered(pc) || !object.covered(pc.checked_sub(CLONE_RETURN_BACK)?) {
        return None;
    }
    let mut code = [0u8; 5];
    memory.read(pc - 2, &mut code).ok()?;
    if code[..2] != SYSCALL || code[2..] != TEST_RAX {
        return None;
    }
    Some(if regs.get(registers::RAX) == Some(0) {
        CloneReturn::Child
    } else {
        CloneReturn::Parent
    })
}
