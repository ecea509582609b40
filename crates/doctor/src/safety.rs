//! The safety check: never switch a function while any thread is inside it.
//!
//! Every thread's stack is walked with the remote unwinder (`unwind`) from
//! its stopped registers; a frame whose code lies in a busy range (a function
//! about to be replaced, or a patch region about to be removed) makes the
//! moment unsafe, and so does a walk that fails. While unsafe, the patient
//! runs for a short while and is checked again, up to a deadline.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::maps::Mapping;
use crate::object::LoadedObject;
use crate::patient::Held;
use crate::unwind::{self, ProcessMemory, Registers, Tables};

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
}

const MAX_FRAMES: usize = 4096;

impl Checker {
    pub fn new(pid: i32, objects: &[LoadedObject], maps: &[Mapping]) -> Checker {
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
        Checker { tables, memory }
    }

    /// The first reason the moment is unsafe: (thread, function, detail).
    pub fn find_unsafe(&self, held: &Held, busy: &[Busy]) -> Option<(i32, String, String)> {
        let inside = |pc: u64| busy.iter().find(|b| pc >= b.start && pc < b.end);
        for t in held.threads() {
            if let Some(b) = inside(t.regs.rip) {
                return Some((
                    t.tid,
                    b.function.clone(),
                    format!("executing at {:#x}", t.regs.rip),
                ));
            }
            let Some(mem) = &self.memory else {
                return Some((t.tid, "?".into(), "cannot read the patient's memory".into()));
            };
            match unwind::unwind(&Registers::from(t.regs), mem, &self.tables, MAX_FRAMES) {
                Ok(frames) => {
                    for (i, f) in frames.iter().enumerate() {
                        if let Some(b) = inside(f.lookup_pc()) {
                            return Some((
                                t.tid,
                                b.function.clone(),
                                format!("on its stack, frame {i}, pc {:#x}", f.pc),
                            ));
                        }
                    }
                }
                Err(e) => {
                    // A stack we cannot walk is a stack we cannot clear.
                    let culprit = busy.first().map_or("?".into(), |b| b.function.clone());
                    return Some((t.tid, culprit, format!("stack walk failed: {e}")));
                }
            }
        }
        None
    }

    /// Checks, and while unsafe lets the patient run briefly and checks
    /// again, until `timeout`.
    pub fn wait_until_safe(&self, held: &mut Held, busy: &[Busy], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            let Some((tid, function, where_)) = self.find_unsafe(held, busy) else {
                return Ok(());
            };
            if Instant::now() + pause > deadline {
                return Err(Error::Unsafe {
                    tid,
                    function,
                    where_,
                });
            }
            tracing::debug!(
                tid,
                function,
                where_,
                "not safe yet; letting the patient run"
            );
            held.resume_for(pause)?;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
