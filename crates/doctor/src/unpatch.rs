//! `unpatch`: find applied patches by their records in the patient, wait
//! until no thread runs (or will return into) their code, put the original
//! bytes back exactly, unmap the regions.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::hunk;
use crate::maps::{self, Mapping};
use crate::patch_frames;
use crate::patient::{self, Held};
use crate::record::{self, Record};
use crate::report::{PatchOutcome, ProcessReport};
use crate::safety::{self, Busy, Checker};
use crate::undo_log::{Undo, UndoLog};

/// Code that must be off every stack before `r` can be removed: its whole
/// region (patched functions, new functions, jump table). Each function's
/// new code is named (`names`, from `record::function_names`), so that a
/// refusal says which one a thread is in; the rest of the region counts too.
pub fn busy_ranges(r: &Record, names: &[String]) -> Vec<Busy> {
    let mut out: Vec<Busy> = r
        .entries
        .iter()
        .zip(names)
        .filter(|(e, _)| e.slen > 0)
        .map(|(e, name)| Busy {
            function: format!("{name} (patch level {})", r.level),
            start: e.saddr,
            end: e.saddr + u64::from(e.slen),
        })
        .collect();
    out.push(Busy {
        function: format!(
            "patch code of {} (BuildID {})",
            short(&r.object),
            r.build_id
        ),
        start: r.base,
        end: r.base + r.region_len,
    });
    out
}

fn short(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether `r` is selected by the operator's `[BuildID|name ...]` list.
pub fn selected(r: &Record, filter: &[String]) -> bool {
    filter.is_empty()
        || filter.iter().any(|f| {
            *f == r.build_id || *f == r.modulename || *f == r.object || *f == short(&r.object)
        })
}

/// Restores the original bytes of every hunk of `r`. The region stays
/// mapped: callers unmap it only once nothing can fail any more, so that a
/// rollback never re-creates a jump into unmapped memory.
pub fn restore(held: &mut Held, r: &Record, undo: &mut UndoLog) -> Result<()> {
    for h in r.hunks.iter().rev() {
        let expect = hunk::jmp(h.addr, h.target).ok_or_else(|| Error::BadRecord {
            pid: held.pid(),
            addr: r.base,
            why: format!("hunk at {:#x} cannot reach {:#x}", h.addr, h.target),
        })?;
        let mut now = [0u8; 5];
        held.read(h.addr, &mut now)?;
        if now != expect {
            return Err(Error::BadRecord {
                pid: held.pid(),
                addr: r.base,
                why: format!(
                    "code at {:#x} is no longer this patch's jump (a later patch on the same function? unpatch it first)",
                    h.addr
                ),
            });
        }
        undo.push(Undo::Restore {
            addr: h.addr,
            bytes: expect.to_vec(),
        });
        held.write(h.addr, &h.saved)?;
    }
    Ok(())
}

/// How long `release_regions` lets the patient run, in short steps, for
/// references into a region to die out before it retires the region.
pub const RELEASE_BUDGET: Duration = Duration::from_millis(200);

/// Unmaps regions whose jumps are gone, unless a thread may still use
/// them: no code of theirs is on any stack (the safety check saw to that),
/// but a tail call from patch code leaves a pointer to the patch's data (a
/// format string, say) in a register or on the stack of a function that
/// runs on. The search is conservative (any word counts, stale ones too), so
/// the patient runs a few milliseconds at a time, within `RELEASE_BUDGET`,
/// for such words to go away; a region still referenced after that is
/// marked retired and unmapped by a later command. This runs after the
/// switch is complete and the patient has run new code, so nothing here may
/// fail the command (a rollback now would be the dangerous thing): problems
/// are logged, and the worst outcome is unused memory left mapped.
pub fn release_regions(held: &mut Held, maps: &[Mapping], records: &[Record], budget: Duration) {
    if let Err(e) = try_release(held, maps, records, budget) {
        tracing::warn!("patch regions stay mapped: {e}");
    }
}

fn try_release(
    held: &mut Held,
    maps: &[Mapping],
    records: &[Record],
    budget: Duration,
) -> Result<()> {
    let deadline = Instant::now() + budget;
    let mut left: Vec<&Record> = records.iter().collect();
    let mut pause = Duration::from_millis(5);
    loop {
        let mut still = Vec::new();
        for r in left {
            match safety::reference_into(held, maps, r.base, r.base + r.region_len) {
                Some(at) => still.push((r, at)),
                None => {
                    if let Err(e) = patch_frames::deregister(held, r) {
                        // Unmapping now would leave the patient's unwinder
                        // reading freed memory; a later command retries.
                        tracing::warn!(
                            "patch region at {:#x} stays mapped: deregistering its unwind table: {e}",
                            r.base
                        );
                        if !r.retired {
                            held.write(r.base + record::RETIRED_OFF as u64, &[1])?;
                        }
                    } else if let Err(e) = held.munmap(r.base, r.region_len) {
                        tracing::warn!("patch region at {:#x} stays mapped: {e}", r.base);
                    }
                }
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if Instant::now() + pause > deadline {
            for (r, (tid, at)) in still {
                tracing::info!(
                    "patch region at {:#x} kept for now: thread {tid} still points into it ({at})",
                    r.base
                );
                if !r.retired {
                    held.write(r.base + record::RETIRED_OFF as u64, &[1])?;
                }
            }
            return Ok(());
        }
        held.resume_for(pause)?;
        pause = (pause * 2).min(Duration::from_millis(20));
        left = still.into_iter().map(|(r, _)| r).collect();
    }
}

/// Unmaps the retired regions of `pid` that nothing refers to any more,
/// waiting at most `budget`; returns how many are left.
pub fn reclaim(pid: i32, budget: Duration) -> Result<usize> {
    let maps = maps::read(pid)?;
    let retired: Vec<Record> = record::scan(pid, &maps)?
        .into_iter()
        .filter(|r| r.retired)
        .collect();
    if retired.is_empty() {
        return Ok(0);
    }
    let syscall_insn = crate::syscall::find_syscall_insn(pid, &maps);
    let mut held = Held::hold(pid)?;
    held.use_syscall_insn(syscall_insn);
    release_regions(&mut held, &maps, &retired, budget);
    drop(held);
    let left = record::scan(pid, &maps::read(pid)?)?
        .iter()
        .filter(|r| r.retired)
        .count();
    Ok(left)
}

/// Removes the patches selected by `filter` (all when empty), newest first.
/// `budget` bounds the wait for references into their regions to go away
/// (see `release_regions`); with a zero budget a still-referenced region is
/// retired at once, for `reclaim` to unmap later (`-p all` does that, so one
/// process's wait does not add up over many).
pub fn unpatch_process(
    pid: i32,
    filter: &[String],
    timeout: Duration,
    budget: Duration,
) -> Result<ProcessReport> {
    if !patient::exists(pid) {
        return Err(Error::NoSuchProcess { pid });
    }
    let maps = maps::read(pid)?;
    let (retired, live): (Vec<Record>, Vec<Record>) = record::scan(pid, &maps)?
        .into_iter()
        .partition(|r| r.retired);
    let (records, others): (Vec<Record>, Vec<Record>) =
        live.into_iter().partition(|r| selected(r, filter));
    let mut report = ProcessReport::new(pid);
    if records.is_empty() {
        if !retired.is_empty() {
            let mut held = Held::hold(pid)?;
            release_regions(&mut held, &maps, &retired, budget);
            report.stopped_us = held.stopped_for().as_micros() as u64;
        }
        report.status = "nothing to unpatch".into();
        return Ok(report);
    }
    let objects = crate::object::loaded_objects(pid, &maps)?;
    let mut checker = Checker::new(pid, &objects, &maps);
    // Threads inside patch code (the patches being removed or any other)
    // are walked through its frames.
    for r in records.iter().chain(&others).chain(&retired) {
        patch_frames::add_from_patient(&mut checker, pid, r);
    }
    let names: Vec<Vec<String>> = records
        .iter()
        .map(|r| record::function_names(pid, r))
        .collect();
    let busy: Vec<Busy> = records
        .iter()
        .zip(&names)
        .flat_map(|(r, n)| busy_ranges(r, n))
        .collect();
    let syscall_insn = crate::syscall::find_syscall_insn(pid, &maps);
    let mut held = Held::hold(pid)?;
    held.use_syscall_insn(syscall_insn);
    let mut undo = UndoLog::default();
    let at = |held: &Held, step: &str| {
        tracing::debug!(
            stopped_us = held.stopped_for().as_micros() as u64,
            "unpatch: {step}"
        );
    };
    at(&held, "held");
    let result = checker
        .wait_until_safe(&mut held, &busy, timeout)
        .and_then(|()| {
            at(&held, "safe");
            for r in records.iter().rev() {
                restore(&mut held, r, &mut undo)?;
            }
            at(&held, "restored");
            Ok(())
        });
    report.stopped_us = held.stopped_for().as_micros() as u64;
    if let Err(e) = result {
        undo.roll_back(&mut held);
        return Err(e);
    }
    release_regions(&mut held, &maps, &records, budget);
    release_regions(&mut held, &maps, &retired, budget);
    at(&held, "released");
    report.stopped_us = held.stopped_for().as_micros() as u64;
    drop(held);
    for (r, functions) in records.iter().zip(names) {
        let mut o = PatchOutcome::from_record(r, "removed");
        o.functions = functions;
        report.patches.push(o);
    }
    report.hunks = records.iter().map(|r| r.hunks.len()).sum();
    report.status = "unpatched".into();
    report.collect_objects();
    Ok(report)
}
