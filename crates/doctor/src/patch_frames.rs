//! The patch code's own unwind table (`.kpatch.eh_frame`, relocated in the
//! region): where it lies, handing it to the safety check's unwinder, and
//! registering it with the patient's unwinder so that C++ exceptions can
//! pass through patch frames.
//!
//! Registration calls `__register_frame` of each unwinder in the patient
//! (libgcc_s's, a `-static-libgcc` program's own) on the section start,
//! which must end with a zero terminator; the region's record keeps each
//! matching `__deregister_frame`, which runs before the region is
//! unmapped (a table left registered over unmapped memory kills the next
//! throw). A process without those functions (plain C) is left alone: no
//! unwinder of its own is ever asked about patch code. Both take libgcc's
//! object lock (and malloc's), which a stopped thread may hold, so every
//! call is bounded in time, and one that does not return fails the
//! command, which is rolled back.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::layout::Layout;
use crate::object::LoadedObject;
use crate::patch::Patch;
use crate::patient::{self, Held};
use crate::record::{self, Record};
use crate::resolve;
use crate::safety::Checker;

pub const SECTION: &str = ".kpatch.eh_frame";

/// How long a call into the patient's unwinder may take before it counts
/// as blocked on a lock that a stopped thread holds.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(100);

/// Offset in the region and length of the patch's `.kpatch.eh_frame`
/// ((0, 0) when the patch brought none).
pub fn locate(patch: &Patch, layout: &Layout) -> (u32, u32) {
    patch
        .sections
        .iter()
        .zip(&layout.section_offset)
        .find_map(|(s, off)| {
            (s.name == SECTION && !s.nobits && s.size > 0)
                .then(|| off.map(|o| (o as u32, s.size as u32)))
                .flatten()
        })
        .unwrap_or((0, 0))
}

/// A name for a region in unwinder messages.
pub fn region_name(r: &Record) -> String {
    format!(
        "patch region at {:#x} for {}",
        r.base,
        r.object.rsplit('/').next().unwrap_or(&r.object)
    )
}

/// Tells the checker about a region's code, from its image (`bytes`, the
/// region as it is or will be in the patient).
pub fn add_from_image(checker: &mut Checker, r: &Record, image: &[u8]) {
    let (off, len) = (r.eh_frame.0 as usize, r.eh_frame.1 as usize);
    let Some(eh) = image.get(off..off + len).filter(|_| len > 0) else {
        return;
    };
    checker.add_region(
        &region_name(r),
        r.base..r.base + r.region_len,
        eh.to_vec(),
        r.base + off as u64,
    );
}

/// Tells the checker about a region already in the patient (applied by an
/// earlier command), reading its table from there.
pub fn add_from_patient(checker: &mut Checker, pid: i32, r: &Record) {
    let (off, len) = (u64::from(r.eh_frame.0), r.eh_frame.1 as usize);
    if len == 0 {
        return;
    }
    let mut eh = vec![0u8; len];
    if let Err(e) = patient::read_memory(pid, r.base + off, &mut eh) {
        tracing::debug!("{}: unwind table unreadable: {e}", region_name(r));
        return;
    }
    checker.add_region(
        &region_name(r),
        r.base..r.base + r.region_len,
        eh,
        r.base + off,
    );
}

/// The patient's unwinders, as (`__register_frame`, `__deregister_frame`)
/// pairs: the one libgcc_s exports in a C++ process, and a program's own
/// static copy (`-static-libgcc`), found in its symbol table. A process can
/// have both (`-static-libgcc` with libstdc++.so, which brings libgcc_s):
/// code of the program resumes unwinding through its own copy, a throw in
/// libstdc++ through libgcc_s's, so the table goes to each. None: plain C.
pub fn unwinder_functions(objects: &[LoadedObject]) -> Vec<(u64, u64)> {
    let order = resolve::search_order(objects);
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut add = |pair: Option<(u64, u64)>| {
        if let Some(pair) = pair
            && !out.contains(&pair)
            && out.len() < record::UNWINDERS
        {
            out.push(pair);
        }
    };
    add(order.iter().find_map(|o| {
        let reg = o.lookup_exported("__register_frame", None)?;
        let dereg = o.lookup_exported("__deregister_frame", None)?;
        Some((reg.addr, dereg.addr))
    }));
    for o in &order {
        let defined = |name| {
            o.lookup_any(name)
                .filter(|f| f.kind == object::elf::STT_FUNC)
                .map(|f| f.addr)
        };
        add(defined("__register_frame").zip(defined("__deregister_frame")));
    }
    out
}

/// Whether a table may be handed to `__register_frame`: libgcc reads FDEs
/// up to a zero length word, and ignores (then cannot deregister) a table
/// that starts with one.
pub fn registrable(eh: &[u8]) -> bool {
    eh.len() >= 8 && eh[..4] != [0; 4] && eh[eh.len() - 4..] == [0; 4]
}

/// Registers the region's table with each of the patient's unwinders,
/// noting each `__deregister_frame` in the record in the patient as soon
/// as its registration is done (what `deregister` takes back).
pub fn register(held: &mut Held, r: &Record, image: &[u8], unwinders: &[(u64, u64)]) -> Result<()> {
    let (off, len) = (r.eh_frame.0 as usize, r.eh_frame.1 as usize);
    if len == 0 {
        return Ok(());
    }
    if unwinders.is_empty() {
        tracing::info!(
            "{}: the process has no __register_frame (no C++ unwinder): patch frames not registered with it",
            region_name(r)
        );
        return Ok(());
    }
    if !image.get(off..off + len).is_some_and(registrable) {
        tracing::warn!(
            "{}: {SECTION} lacks its zero terminator: not registered with the patient's unwinder",
            region_name(r)
        );
        return Ok(());
    }
    let at = r.base + off as u64;
    for (i, &(register, deregister)) in unwinders.iter().take(record::UNWINDERS).enumerate() {
        let t = Instant::now();
        held.call_within(
            register,
            [at, 0, 0, 0, 0, 0],
            Some(Instant::now() + CALL_TIMEOUT),
        )?;
        let slot = r.base + (record::DEREGISTER_OFF + 8 * i) as u64;
        if let Err(e) = held.write(slot, &deregister.to_le_bytes()) {
            // Unnoted, the table would never be taken back: take it back now.
            held.call_within(
                deregister,
                [at, 0, 0, 0, 0, 0],
                Some(Instant::now() + CALL_TIMEOUT),
            )?;
            return Err(e);
        }
        tracing::debug!(
            "{}: {SECTION} at {at:#x} registered with the patient's unwinder (__register_frame at {register:#x}, {} us)",
            region_name(r),
            t.elapsed().as_micros()
        );
    }
    Ok(())
}

/// Takes a region's table back from every unwinder of the patient that
/// holds it; the region must not be unmapped unless this succeeds.
pub fn deregister(held: &mut Held, r: &Record) -> Result<()> {
    let at = r.base + u64::from(r.eh_frame.0);
    for i in 0..record::UNWINDERS {
        let slot = r.base + (record::DEREGISTER_OFF + 8 * i) as u64;
        let mut now = [0u8; 8];
        held.read(slot, &mut now)?;
        let deregister = u64::from_le_bytes(now);
        if deregister == 0 {
            continue;
        }
        held.call_within(
            deregister,
            [at, 0, 0, 0, 0, 0],
            Some(Instant::now() + CALL_TIMEOUT),
        )?;
        // Cleared at once: libgcc aborts on a table it does not know.
        held.write(slot, &[0; 8])?;
        tracing::debug!(
            "{}: {SECTION} deregistered (__deregister_frame at {deregister:#x})",
            region_name(r)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_terminated_non_empty_table_is_registrable() {
        let mut eh = vec![0x14, 0, 0, 0];
        eh.extend([1u8; 20]);
        assert!(!registrable(&eh), "no terminator");
        eh.extend([0u8; 4]);
        assert!(registrable(&eh));
        assert!(!registrable(&[0; 8]), "empty table");
    }
}
