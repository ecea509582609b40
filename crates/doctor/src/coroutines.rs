//! Stacks no thread is on. A patient that switches stacks itself
//! (`makecontext`/`swapcontext`, or `sigsetjmp`/`siglongjmp` between
//! stacks made by `makecontext`, which is QEMU's coroutine shape) keeps
//! calls suspended on stacks that no register of any thread points to. A
//! function being replaced may be suspended there, and walking the threads
//! alone would never see it.
//!
//! Such a patient is recognised by its use of `makecontext`. While it is
//! held, its writable memory is searched for the contexts a switch leaves
//! behind: a `jmp_buf` (stack pointer, frame pointer and pc mangled with
//! the pointer guard glibc keeps at `%fs:0x30`) or a `ucontext_t` saved by
//! `swapcontext` (plain registers). A candidate counts when its pc is right
//! after a call instruction in executable memory and its stack pointer lies
//! in writable memory that is not the stack some thread is running on (the
//! live part of that one is walked with the thread, and what lies below is
//! dead). Each context is walked like a thread, and the frames it walks
//! count. Where a walk fails (code without unwind tables), what lies above
//! is not guessed at: memory holds many stale contexts and stale return
//! addresses, and guessing would refuse every patch; a busy function above
//! such code on a suspended coroutine stack is the case left unseen.
//!
//! If the pointer guard cannot be read, the coroutines cannot be found and
//! the patient is refused, naming the object that uses `makecontext`, as
//! LibCare does.

use crate::error::{Error, Result};
use crate::maps::Mapping;
use crate::object::LoadedObject;
use crate::patient::Held;
use crate::safety::Busy;
use crate::stack_scan;
use crate::unwind::{self, Memory, Registers, Tables};

/// The functions that give a patient stacks of its own making.
const STACK_MAKERS: &[&str] = &["makecontext", "swapcontext"];

/// glibc's pointer guard: `tcbhead_t.pointer_guard`, at this offset from
/// the thread pointer on x86-64.
const POINTER_GUARD: u64 = 0x30;

/// `jmp_buf` words: rbx, rbp, r12, r13, r14, r15, rsp, pc (rbp, rsp and pc
/// mangled).
const JMP_BUF_WORDS: usize = 8;

/// `ucontext_t`: `uc_mcontext.gregs` starts at byte 40; the indices of the
/// registers used here (`REG_R12` = 4 ... `REG_RIP` = 16).
const GREGS_WORD: usize = 5;
const UC_WORDS: usize = GREGS_WORD + 17;

/// Mappings larger than this are not searched (guest memory of a virtual
/// machine, big caches): malloc arenas and coroutine stacks are smaller.
const LARGEST_SEARCHED: u64 = 1 << 30;

/// How much of a mapping is read at a time.
const CHUNK: u64 = 1 << 20;

/// A thread running on a stack inside `[heap]` hides the contexts near its
/// stack pointer (they are its own, live or dead).
const HEAP_STACK_WINDOW: u64 = 256 * 1024;

/// The object that makes the patient switch stacks, if one does.
pub fn stack_maker(objects: &[LoadedObject]) -> Option<String> {
    objects.iter().find_map(|o| {
        let imports = STACK_MAKERS
            .iter()
            .any(|name| !o.import_slots(name).is_empty());
        // A static executable carries its own copy instead of importing it.
        let static_copy = o.is_main && STACK_MAKERS.iter().any(|name| o.lookup_any(name).is_some());
        (imports || static_copy).then(|| o.short_name().to_string())
    })
}

/// A suspended context found in the patient's memory.
#[derive(Debug, Clone)]
pub struct Suspended {
    /// Where the `jmp_buf` or `ucontext_t` lies.
    pub at: u64,
    pub kind: &'static str,
    pub regs: Registers,
}

/// A function being replaced that a suspended context still has a call of.
#[derive(Debug, Clone)]
pub struct SuspendedIn {
    pub function: String,
    pub context: Suspended,
    /// The return address into the function, and where it was seen.
    pub detail: String,
}

fn demangle(v: u64, guard: u64) -> u64 {
    v.rotate_right(0x11) ^ guard
}

fn word(bytes: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}

/// The mapping holding `a` (`maps` is sorted, as `/proc/PID/maps` is).
fn containing(maps: &[Mapping], a: u64) -> Option<&Mapping> {
    let i = maps.partition_point(|m| m.end <= a);
    maps.get(i).filter(|m| a >= m.start)
}

fn writable(m: &Mapping) -> bool {
    m.perms.as_bytes().get(1) == Some(&b'w')
}

fn after_call(mem: &dyn Memory, ret: u64) -> bool {
    stack_scan::after_call(|a, b| mem.read(a, b).is_ok(), ret)
}

/// Where the patient's threads are running: the stacks whose contexts are
/// theirs, not suspended coroutines'.
struct ThreadStacks<'a> {
    maps: &'a [Mapping],
    sps: Vec<u64>,
}

impl ThreadStacks<'_> {
    fn owns(&self, sp: u64) -> bool {
        self.sps.iter().any(|&t| {
            let Some(m) = containing(self.maps, t) else {
                return false;
            };
            if m.path == "[heap]" {
                sp.abs_diff(t) < HEAP_STACK_WINDOW
            } else {
                sp >= m.start && sp < m.end
            }
        })
    }
}

/// Every suspended context in the patient's writable memory.
pub fn find(held: &Held, mem: &dyn Memory, maps: &[Mapping]) -> Result<Vec<Suspended>> {
    let pid = held.pid();
    let cannot = |why: String| Error::Coroutines {
        pid,
        object: String::new(),
        why,
    };
    let mut maps = maps.to_vec();
    maps.sort_by_key(|m| m.start);
    let maps = &maps[..];
    let thread = held
        .threads()
        .first()
        .ok_or_else(|| cannot("no thread is held".into()))?;
    let mut g = [0u8; 8];
    held.read(thread.regs.fs_base.wrapping_add(POINTER_GUARD), &mut g)
        .map_err(|e| cannot(format!("the pointer guard cannot be read: {e}")))?;
    let guard = u64::from_le_bytes(g);
    let stacks = ThreadStacks {
        maps,
        sps: held.threads().iter().map(|t| t.regs.rsp).collect(),
    };
    let (lo, hi) = maps
        .iter()
        .filter(|m| m.executable())
        .fold((u64::MAX, 0), |(lo, hi), m| {
            (lo.min(m.start), hi.max(m.end))
        });
    let code = |pc: u64| {
        pc >= lo && pc < hi && containing(maps, pc).is_some_and(|m| m.executable() && m.readable())
    };
    let stack = |sp: u64| {
        sp.is_multiple_of(8)
            && containing(maps, sp).is_some_and(|m| writable(m) && !m.executable())
            && !stacks.owns(sp)
    };
    let mut out = Vec::new();
    for m in maps.iter().filter(|m| {
        m.readable()
            && writable(m)
            && !m.executable()
            && m.end - m.start <= LARGEST_SEARCHED
            && !m.path.starts_with("[v")
    }) {
        let probe = Probe {
            guard,
            code: &code,
            stack: &stack,
            mem,
        };
        // In chunks, each read with the tail a structure starting near its
        // end needs: a big arena is never copied whole.
        let mut chunk_start = m.start;
        while chunk_start < m.end {
            let chunk_end = (chunk_start + CHUNK).min(m.end);
            let read_end = (chunk_end + (UC_WORDS * 8) as u64).min(m.end);
            let mut bytes = vec![0u8; (read_end - chunk_start) as usize];
            if held.read(chunk_start, &mut bytes).is_ok() {
                let starts = ((chunk_end - chunk_start) / 8) as usize;
                scan_chunk(chunk_start, &bytes, starts, &probe, &mut out);
            }
            chunk_start = chunk_end;
        }
    }
    Ok(out)
}

/// What a word must be to count as a saved pc or stack pointer.
struct Probe<'a> {
    guard: u64,
    code: &'a dyn Fn(u64) -> bool,
    stack: &'a dyn Fn(u64) -> bool,
    mem: &'a dyn Memory,
}

impl Probe<'_> {
    fn context(&self, pc: u64, sp: u64) -> bool {
        (self.code)(pc) && (self.stack)(sp) && after_call(self.mem, pc)
    }
}

/// Candidates whose first word is one of the first `starts` words of
/// `bytes` (read at `base`; the rest is the tail a structure needs).
fn scan_chunk(base: u64, bytes: &[u8], starts: usize, probe: &Probe<'_>, out: &mut Vec<Suspended>) {
    let guard = probe.guard;
    let words = bytes.len() / 8;
    for i in 0..starts {
        let at = base + i as u64 * 8;
        if i + JMP_BUF_WORDS <= words {
            let pc = demangle(word(bytes, i + 7), guard);
            let sp = demangle(word(bytes, i + 6), guard);
            if probe.context(pc, sp) {
                out.push(Suspended {
                    at,
                    kind: "jmp_buf",
                    regs: Registers {
                        rbx: word(bytes, i),
                        rbp: demangle(word(bytes, i + 1), guard),
                        r12: word(bytes, i + 2),
                        r13: word(bytes, i + 3),
                        r14: word(bytes, i + 4),
                        r15: word(bytes, i + 5),
                        rsp: sp,
                        rip: pc,
                        ..Registers::default()
                    },
                });
            }
        }
        if i + UC_WORDS <= words {
            let gregs = |r: usize| word(bytes, i + GREGS_WORD + r);
            let (pc, sp) = (gregs(16), gregs(15));
            if probe.context(pc, sp) {
                out.push(Suspended {
                    at,
                    kind: "ucontext",
                    regs: Registers {
                        r12: gregs(4),
                        r13: gregs(5),
                        r14: gregs(6),
                        r15: gregs(7),
                        rbp: gregs(10),
                        rbx: gregs(11),
                        rsp: sp,
                        rip: pc,
                        ..Registers::default()
                    },
                });
            }
        }
    }
}

/// The first function of `busy` that a suspended context has a call of.
pub fn suspended_in(
    contexts: &[Suspended],
    mem: &dyn Memory,
    tables: &Tables,
    busy: &[Busy],
) -> Option<SuspendedIn> {
    let inside = |pc: u64| busy.iter().find(|b| pc >= b.start && pc < b.end);
    for c in contexts {
        let (frames, failure) = unwind::unwind_partial(&c.regs, mem, tables, 1024);
        tracing::debug!(
            "{} at {:#x}: pc {:#x} sp {:#x}: {} frames{}",
            c.kind,
            c.at,
            c.regs.rip,
            c.regs.rsp,
            frames.len(),
            failure
                .as_ref()
                .map(|e| format!(", then {e}"))
                .unwrap_or_default()
        );
        // The first frame's pc is a return address too (the call that
        // saved the context), so every frame is looked up just before it.
        if let Some((f, b)) = frames
            .iter()
            .find_map(|f| inside(f.pc.wrapping_sub(1)).map(|b| (f, b)))
        {
            return Some(SuspendedIn {
                function: b.function.clone(),
                context: c.clone(),
                detail: format!("returns to {:#x} (stack at {:#x})", f.pc, f.sp),
            });
        }
    }
    None
}
