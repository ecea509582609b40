//! Patients caught while starting: the kernel has loaded the program and its
//! interpreter, but the dynamic linker has not yet loaded and relocated the
//! libraries (the seed's `kpatch_load_libraries`). Symbols of those
//! libraries cannot be resolved yet, so the patient is run to its entry
//! point (`AT_ENTRY` from the auxiliary vector) under a trap and patched
//! there, before `main` runs.

use std::time::{Duration, Instant};

use ::object::elf;

use crate::error::{Error, Result};
use crate::maps;
use crate::object;
use crate::patient::{self, Held};

fn read_u64(pid: i32, addr: u64) -> Result<u64> {
    let mut b = [0u8; 8];
    patient::read_memory(pid, addr, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// `Some(entry)` when `pid` is a dynamically linked program whose dynamic
/// linker has not finished: `DT_DEBUG` not set yet, no link map, or the
/// link map not consistent (`r_state` != `RT_CONSISTENT`).
pub fn entry_if_starting(pid: i32) -> Result<Option<u64>> {
    let maps = maps::read(pid)?;
    let objects = object::loaded_objects(pid, &maps)?;
    let Some(main) = objects.iter().find(|o| o.is_main) else {
        return Ok(None);
    };
    let Some(entry) = object::auxv_entry(pid) else {
        return Ok(None);
    };
    let Some((dynamic, size)) = main.section(".dynamic") else {
        // Statically linked: nothing to wait for.
        return Ok(None);
    };
    if main.section(".interp").is_none() {
        return Ok(None);
    }
    let mut raw = vec![0u8; size as usize];
    patient::read_memory(pid, dynamic, &mut raw)?;
    let r_debug = raw.chunks_exact(16).find_map(|e| {
        let tag = u64::from_le_bytes(e[..8].try_into().expect("8"));
        (tag == u64::from(elf::DT_DEBUG)).then(|| u64::from_le_bytes(e[8..].try_into().expect("8")))
    });
    let Some(r_debug) = r_debug else {
        // No DT_DEBUG entry at all: cannot tell; treat as running.
        return Ok(None);
    };
    if r_debug == 0 {
        return Ok(Some(entry));
    }
    // struct r_debug { int r_version; link_map *r_map; ElfW(Addr) r_brk; int r_state; ... }
    let r_map = read_u64(pid, r_debug + 8)?;
    let r_state = read_u64(pid, r_debug + 24)? as u32;
    Ok((r_map == 0 || r_state != 0).then_some(entry))
}

/// Holds `pid`, lets it run until it executes its entry point, and returns
/// it held there.
pub fn run_to_entry(pid: i32, entry: u64, timeout: Duration) -> Result<Held> {
    let mut held = Held::hold(pid)?;
    tracing::info!("pid {pid} is starting: running it to its entry point {entry:#x}");
    if !held.run_until_trap(&[entry], Instant::now() + timeout)? {
        return Err(Error::Thread {
            pid,
            tid: pid,
            what: format!("did not reach its entry point {entry:#x} within {timeout:?}"),
        });
    }
    Ok(held)
}
