//! The safety check: never switch a function while any thread is inside it.
//!
//! Every thread's stack is walked with the remote unwinder (`unwind`) from
//! its stopped registers; a frame whose code lies in a busy range (a function
//! about to be replaced, or a patch region about to be removed) makes the
//! moment unsafe, and so does a walk that fails. While unsafe, the patient
//! runs for a short while and is checked again, up to a deadline.

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::coroutines;
use crate::error::{Error, Result};
use crate::maps::{self, Mapping};
use crate::object::LoadedObject;
use crate::patient::Held;
use crate::stack_scan;
use crate::unwind::{self, FrameKind, ProcessMemory, Registers, Tables};

/// A code range that no thread may be executing (or return into).
#[derive(Debug, Clone)]
pub struct Busy {
    pub function: String,
    pub start: u64,
    pub end: u64,
}

/// Unwind tables of the patient, built before it is stopped.
pub struct Checker {
    tables: Tables,
    memory: Option<ProcessMemory>,
    /// The object that makes the patient switch stacks itself, if any:
    /// then suspended coroutines are searched too (see `coroutines`).
    stack_maker: Option<String>,
}

const MAX_FRAMES: usize = 4096;

impl Checker {
    pub fn new(pid: i32, objects: &[LoadedObject], maps: &[Mapping]) -> Checker {
        // An object without any FDE is still added: a walk into it fails
        // (no FDE covers the pc), which the check counts as unsafe.
        let mut tables = Tables::new();
        for o in objects {
            if let Err(e) = tables.add_elf(&o.name, o.data(), o.bias) {
                tracing::debug!("no unwind tables for {}: {e}", o.name);
            }
        }
        let memory = ProcessMemory::open(pid).ok();
        if let (Some(mem), Some(v)) = (&memory, maps.iter().find(|m| m.path == "[vdso]"))
            && let Err(e) = tables.add_vdso(mem, v.start, v.end)
        {
            tracing::debug!("no unwind tables for the vDSO: {e}");
        }
        let stack_maker = coroutines::stack_maker(objects);
        if let Some(o) = &stack_maker {
            tracing::debug!("{o} uses makecontext: suspended coroutines are searched too");
        }
        Checker {
            tables,
            memory,
            stack_maker,
        }
    }

    /// Adds a patch region's code, described by its relocated
    /// `.kpatch.eh_frame` (which runs at `eh_frame_addr`), so that walks
    /// pass through patch frames instead of failing there. A region without
    /// unwind tables is left out: a walk into it fails, which is unsafe.
    pub fn add_region(
        &mut self,
        name: &str,
        code: Range<u64>,
        eh_frame: Vec<u8>,
        eh_frame_addr: u64,
    ) {
        if eh_frame.is_empty() {
            return;
        }
        if let Err(e) = self.tables.add_code(name, code, eh_frame, eh_frame_addr) {
            tracing::debug!("no unwind tables for {name}: {e}");
        }
    }

    /// Forgets a region added by `add_region` (it moved or went away).
    pub fn remove_region(&mut self, name: &str) {
        self.tables.remove(name);
    }

    /// Every thread that makes the moment unsafe, with what it is doing.
    pub fn blockers(&self, held: &Held, busy: &[Busy]) -> Vec<Blocker> {
        let inside = |pc: u64| busy.iter().find(|b| pc >= b.start && pc < b.end);
        let mut out = Vec::new();
        let is_code = |a: u64| self.tables.object_name_at(a).is_some();
        let code = self
            .memory
            .as_ref()
            .map(|mem| unwind::CodePages::new(mem, &is_code));
        for t in held.threads() {
            let Some(mem) = &code else {
                out.push(Blocker {
                    tid: t.tid,
                    function: "?".into(),
                    detail: "cannot read the patient's memory".into(),
                    return_to: None,
                    unwalkable: None,
                    suspended: None,
                    unsearchable: None,
                });
                continue;
            };
            let walked = unwind::unwind(&Registers::from(t.regs), mem, &self.tables, MAX_FRAMES);
            match walked {
                Ok(frames) => {
                    // The outermost busy frame: once it returns, none is left.
                    let Some(i) = frames.iter().rposition(|f| inside(f.lookup_pc()).is_some())
                    else {
                        continue;
                    };
                    let b = inside(frames[i].lookup_pc()).expect("found above");
                    let return_to = frames
                        .get(i + 1)
                        .filter(|f| f.kind == FrameKind::Call && inside(f.pc).is_none())
                        .map(|f| f.pc);
                    out.push(Blocker {
                        tid: t.tid,
                        function: b.function.clone(),
                        detail: if i == 0 {
                            format!("executing it at {:#x}", frames[0].pc)
                        } else {
                            format!("it is on the stack (frame {i}, pc {:#x})", frames[i].pc)
                        },
                        return_to,
                        unwalkable: None,
                        suspended: None,
                        unsearchable: None,
                    });
                }
                Err(e) => {
                    // A stack we cannot walk is a stack we cannot clear, for
                    // now: glibc's clone leaves the instructions right after
                    // its syscall without CFI, so a thread being created is
                    // unwalkable for a moment. Where to wait for it: out of
                    // busy code and out of code without unwind tables
                    // (anonymous executable memory).
                    let maps = maps::read(held.pid()).unwrap_or_default();
                    let mut opaque = busy.to_vec();
                    opaque.extend(maps.iter().filter(|m| m.anonymous() && m.executable()).map(
                        |m| Busy {
                            function: String::new(),
                            start: m.start,
                            end: m.end,
                        },
                    ));
                    let pc = e.pc();
                    out.push(Blocker {
                        tid: t.tid,
                        function: String::new(),
                        detail: e.to_string(),
                        return_to: stack_scan::return_out_of_busy(held, &maps, t.regs.rsp, &opaque),
                        unwalkable: Some((pc, place(&maps, pc))),
                        suspended: None,
                        unsearchable: None,
                    });
                }
            }
        }
        if out.is_empty()
            && let (Some(maker), Some(mem)) = (&self.stack_maker, &self.memory)
        {
            out.extend(self.coroutine_blocker(held, mem, maker, busy));
        }
        out
    }

    /// A coroutine suspended in a busy function, or the refusal when the
    /// coroutines cannot be searched.
    fn coroutine_blocker(
        &self,
        held: &Held,
        mem: &ProcessMemory,
        maker: &str,
        busy: &[Busy],
    ) -> Option<Blocker> {
        let t = std::time::Instant::now();
        let maps = maps::read(held.pid()).unwrap_or_default();
        let found = coroutines::find(held, mem, &maps).map(|contexts| {
            tracing::debug!(
                contexts = contexts.len(),
                us = t.elapsed().as_micros() as u64,
                "suspended contexts searched"
            );
            coroutines::suspended_in(&contexts, mem, &self.tables, busy)
        });
        match found {
            Ok(None) => None,
            Ok(Some(s)) => Some(Blocker {
                tid: held.pid(),
                function: s.function.clone(),
                detail: format!("suspended on a coroutine stack, {}", s.detail),
                return_to: None,
                unwalkable: None,
                suspended: Some(s),
                unsearchable: None,
            }),
            Err(e) => {
                let why = match e {
                    Error::Coroutines { why, .. } => why,
                    e => e.to_string(),
                };
                Some(Blocker {
                    tid: held.pid(),
                    function: String::new(),
                    detail: why.clone(),
                    return_to: None,
                    unwalkable: None,
                    suspended: None,
                    unsearchable: Some((maker.to_string(), why)),
                })
            }
        }
    }

    /// The first blocker, as (thread, function, detail); the function is
    /// empty for a thread whose stack could not be walked.
    pub fn find_unsafe(&self, held: &Held, busy: &[Busy]) -> Option<(i32, String, String)> {
        self.blockers(held, busy)
            .into_iter()
            .next()
            .map(|b| (b.tid, b.function, b.detail))
    }

    /// Checks, and while unsafe lets the patient run until every blocking
    /// thread has returned from its busy frame (a breakpoint on each return
    /// address) or, where no return address is known, for a short while;
    /// then checks again, until `timeout`.
    pub fn wait_until_safe(&self, held: &mut Held, busy: &[Busy], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            let blockers = self.blockers(held, busy);
            let Some(first) = blockers.first() else {
                return Ok(());
            };
            let now = Instant::now();
            if now >= deadline || first.unsearchable.is_some() {
                return Err(first.refusal());
            }
            if let Some(sig) = crate::ptrace::termination_pending() {
                return Err(Error::Interrupted {
                    signal: sig.to_string(),
                    waiting_for: first.waiting_for(),
                });
            }
            tracing::debug!(
                tid = first.tid,
                function = first.function,
                detail = first.detail,
                "not safe yet; letting the patient run"
            );
            let mut traps: Vec<u64> = blockers.iter().filter_map(|b| b.return_to).collect();
            traps.sort_unstable();
            traps.dedup();
            if blockers.iter().all(|b| b.return_to.is_some()) {
                // A return address found by scanning an unwalkable stack is
                // a guess that may never be hit: check again soon.
                let until = if blockers.iter().any(|b| b.unwalkable.is_some()) {
                    deadline.min(now + pause)
                } else {
                    deadline
                };
                let t = Instant::now();
                let hit = held.run_until_trap(&traps, until)?;
                tracing::debug!(
                    ?traps,
                    hit,
                    waited_us = t.elapsed().as_micros() as u64,
                    "return breakpoints"
                );
            } else {
                held.resume_for(pause.min(deadline - now))?;
            }
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// A thread that makes the moment unsafe.
#[derive(Debug, Clone)]
pub struct Blocker {
    pub tid: i32,
    pub function: String,
    pub detail: String,
    /// Where its outermost busy frame returns to, if known.
    pub return_to: Option<u64>,
    /// Set when its stack could not be walked: the pc where the walk
    /// stopped, and that pc as `object+offset`.
    pub unwalkable: Option<(u64, String)>,
    /// Set for a busy function suspended on a coroutine stack (`tid` is
    /// then the process).
    pub suspended: Option<coroutines::SuspendedIn>,
    /// Set when the patient switches stacks and its coroutines cannot be
    /// searched: the object that makes stacks, and why (a refusal at once).
    pub unsearchable: Option<(String, String)>,
}

impl Blocker {
    fn waiting_for(&self) -> String {
        if self.suspended.is_some() {
            return format!("the coroutine suspended in `{}` to go on", self.function);
        }
        match &self.unwalkable {
            Some((pc, place)) => format!(
                "the stack of thread {} to be walkable (pc {pc:#x}, {place})",
                self.tid
            ),
            None => format!("thread {} to leave `{}`", self.tid, self.function),
        }
    }

    fn refusal(&self) -> Error {
        if let Some((object, why)) = &self.unsearchable {
            return Error::Coroutines {
                pid: self.tid,
                object: object.clone(),
                why: why.clone(),
            };
        }
        if let Some(s) = &self.suspended {
            return Error::Suspended {
                function: s.function.clone(),
                kind: s.context.kind,
                at: s.context.at,
                detail: s.detail.clone(),
            };
        }
        match &self.unwalkable {
            Some((pc, place)) => Error::Unwalkable {
                tid: self.tid,
                pc: *pc,
                place: place.clone(),
                why: self.detail.clone(),
            },
            None => Error::Unsafe {
                tid: self.tid,
                function: self.function.clone(),
                where_: self.detail.clone(),
            },
        }
    }
}

/// `pc` as `object+offset` (file offset), or `anonymous memory`.
fn place(maps: &[Mapping], pc: u64) -> String {
    match maps.iter().find(|m| pc >= m.start && pc < m.end) {
        Some(m) if !m.path.is_empty() => {
            let name = m.path.rsplit('/').next().unwrap_or(&m.path);
            format!("{name}+{:#x}", pc - m.start + m.offset)
        }
        Some(_) => "anonymous memory".into(),
        None => "unmapped".into(),
    }
}

/// Lowest address of the red zone below a thread's stack pointer, which a
/// leaf function may use.
const RED_ZONE: u64 = 128;
/// How much of each stack above its pointer to search.
const STACK_SCAN: u64 = 1 << 20;

/// A thread holding a value inside `start..end` in a register or on the live
/// part of its stack: (tid, where). Conservative: any such word counts.
/// Pointers the patient stored in its heap or globals are not searched: a
/// patch whose code hands out pointers to its own data (a string literal
/// kept in a global, say) must not be unpatched while they are in use.
/// `maps` is the patient's mappings as read before it was stopped (stacks
/// only grow, and a thread's stack missing from them is looked up afresh).
pub fn reference_into(
    held: &Held,
    maps: &[Mapping],
    start: u64,
    end: u64,
) -> Option<(i32, String)> {
    let inside = |v: u64| v >= start && v < end;
    let mut fresh: Option<Vec<Mapping>> = None;
    for t in held.threads() {
        let r = &t.regs;
        let named = [
            ("rax", r.rax),
            ("rbx", r.rbx),
            ("rcx", r.rcx),
            ("rdx", r.rdx),
            ("rsi", r.rsi),
            ("rdi", r.rdi),
            ("rbp", r.rbp),
            ("r8", r.r8),
            ("r9", r.r9),
            ("r10", r.r10),
            ("r11", r.r11),
            ("r12", r.r12),
            ("r13", r.r13),
            ("r14", r.r14),
            ("r15", r.r15),
            ("rip", r.rip),
        ];
        if let Some((n, v)) = named.iter().find(|(_, v)| inside(*v)) {
            return Some((t.tid, format!("{n} = {v:#x}")));
        }
        let lo = r.rsp.saturating_sub(RED_ZONE);
        let holds = |m: &&Mapping| lo >= m.start && lo < m.end;
        let stack = match maps.iter().find(holds) {
            Some(m) => m.clone(),
            None => {
                let now = fresh.get_or_insert_with(|| maps::read(held.pid()).unwrap_or_default());
                match now.iter().find(holds) {
                    Some(m) => m.clone(),
                    None => continue,
                }
            }
        };
        let hi = stack.end.min(r.rsp + STACK_SCAN);
        let mut words = vec![0u8; ((hi - lo) & !7) as usize];
        if held.read(lo, &mut words).is_err() {
            // Unreadable stack: assume the worst.
            return Some((t.tid, format!("stack at {lo:#x} unreadable")));
        }
        if let Some(i) = words
            .chunks_exact(8)
            .position(|w| inside(u64::from_le_bytes(w.try_into().expect("8"))))
        {
            return Some((t.tid, format!("stack word at {:#x}", lo + 8 * i as u64)));
        }
    }
    None
}
