//! `patch`: the seed's `kpatch_process_patches`, top-down.
//!
//! Before the patient stops: map its objects, pick the patches whose BuildID
//! matches one, skip those already applied, choose a region address, resolve
//! and relocate into a local image, plan the hunks. While it is stopped:
//! allocate the region, write it in one go, wait until no thread is inside a
//! function being replaced, write the hunks, release. Any failure after the
//! first write undoes every write.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use kpatch_file::{INFO_ENTRY_SIZE, InfoEntry};

use crate::error::{Error, Result};
use crate::hunk::{self, Hunk};
use crate::layout::{self, Layout};
use crate::maps::{self, Mapping};
use crate::object::{self, LoadedObject};
use crate::patch::Patch;
use crate::patch_frames;
use crate::patient::{self, Held};
use crate::record::{self, Record};
use crate::region;
use crate::relocate;
use crate::report::{PatchOutcome, ProcessReport};
use crate::resolve::{self, Context};
use crate::safety::{Busy, Checker};
use crate::startup;
use crate::undo_log::{Undo, UndoLog};
use crate::unpatch;

#[derive(Debug, Clone)]
pub struct Options {
    /// How long to wait for a safe moment.
    pub timeout: Duration,
    /// Do everything up to the first write and report what would be done:
    /// objects matched, symbols resolved, relocations computed, a region
    /// chosen, the safety check made once on a short stop. Nothing is
    /// written and no code runs in the patient (an IFUNC not bound yet is
    /// reported, its resolver not called).
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(3),
            dry_run: false,
        }
    }
}

/// What every preparation step needs to know about the patient.
struct Scene<'a> {
    pid: i32,
    patches: &'a [Patch],
    objects: &'a [LoadedObject],
    /// Applied patches (lower levels) this command replaces.
    replace: &'a [Record],
    /// IFUNC implementations obtained by calling their resolvers.
    ifuncs: &'a HashMap<String, u64>,
    /// Removed patches whose regions still wait to be unmapped.
    retired: &'a [Record],
    /// Code of the replaced patches, named, for the safety check.
    replaced_code: &'a [Busy],
    /// The patient's mappings, read before it was stopped.
    maps: &'a [Mapping],
}

/// A patch made ready for one region address.
struct Prepared {
    patch: usize,
    target: usize,
    base: u64,
    image: Vec<u8>,
    hunks: Vec<Hunk>,
    entries: Vec<InfoEntry>,
    record: Record,
}

/// Applies those of `patches` that target an object of `pid`.
///
/// Errors with `NoTarget` when none of them matches any object; a patch that
/// is already applied is reported as such and not applied again.
pub fn patch_process(pid: i32, patches: &[Patch], opts: &Options) -> Result<ProcessReport> {
    if !patient::exists(pid) {
        return Err(Error::NoSuchProcess { pid });
    }
    // A process that has not reached its entry point yet (the dynamic
    // linker is still loading libraries): run it to the entry point under a
    // trap, then prepare and patch it there, before main runs.
    let early = match startup::entry_if_starting(pid)? {
        // Running it to its entry point plants a trap: not for a dry run.
        Some(_) if opts.dry_run => {
            return Err(Error::Unsupported {
                patch: String::new(),
                what: format!(
                    "dry run of process {pid}, which has not reached its entry point yet"
                ),
            });
        }
        Some(entry) => Some(startup::run_to_entry(pid, entry, opts.timeout)?),
        None => None,
    };
    run(pid, patches, opts, early)
}

/// The apply flow; `early` is the patient already held at its entry point.
fn run(
    pid: i32,
    patches: &[Patch],
    opts: &Options,
    mut early: Option<Held>,
) -> Result<ProcessReport> {
    let maps = maps::read(pid)?;
    let objects = object::loaded_objects(pid, &maps)?;
    let (retired, applied): (Vec<Record>, Vec<Record>) = record::scan(pid, &maps)?
        .into_iter()
        .partition(|r| r.retired);
    let mut report = ProcessReport::new(pid);
    let mut todo = Vec::new();
    let mut replace = Vec::new();
    for (pi, p) in patches.iter().enumerate() {
        let Some(ti) = objects.iter().position(|o| o.build_id == p.header.build_id) else {
            continue;
        };
        let same_object: Vec<&Record> = applied
            .iter()
            .filter(|r| r.build_id == p.header.build_id && r.object_start == objects[ti].start)
            .collect();
        if let Some(r) = same_object.iter().find(|r| r.digest == p.digest) {
            report
                .patches
                .push(PatchOutcome::from_record(r, "already applied"));
            continue;
        }
        if let Some(r) = same_object
            .iter()
            .find(|r| r.level >= p.level() && p.level() > 0)
        {
            report
                .patches
                .push(PatchOutcome::from_record(r, "newer or equal level applied"));
            continue;
        }
        replace.extend(same_object.iter().map(|r| (*r).clone()));
        todo.push((pi, ti));
    }
    if todo.is_empty() {
        if report.patches.is_empty() {
            return Err(Error::NoTarget {
                pid,
                build_id: patches
                    .iter()
                    .map(|p| p.header.build_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        report.status = "already applied".into();
        report.collect_objects();
        return Ok(report);
    }

    let mut checker = Checker::new(pid, &objects, &maps);
    // Threads may be inside patch code of earlier commands: walk through it.
    for r in applied.iter().chain(&retired) {
        patch_frames::add_from_patient(&mut checker, pid, r);
    }
    let unwinders = patch_frames::unwinder_functions(&objects);
    let (ifuncs, ifunc_stop) = if opts.dry_run {
        (
            unbound_ifuncs_as_resolvers(pid, patches, &todo, &objects),
            Duration::ZERO,
        )
    } else {
        call_ifunc_resolvers(pid, patches, &todo, &objects, early.as_mut())?
    };
    let replaced_code: Vec<Busy> = replace
        .iter()
        .flat_map(|r| unpatch::busy_ranges(r, &record::function_names(pid, r)))
        .collect();
    let scene = Scene {
        pid,
        patches,
        objects: &objects,
        replace: &replace,
        ifuncs: &ifuncs,
        retired: &retired,
        replaced_code: &replaced_code,
        maps: &maps,
    };
    let mut prepared = Vec::new();
    let mut taken: Vec<Mapping> = maps.clone();
    for &(pi, ti) in &todo {
        let p = prepare_anywhere(&scene, pi, ti, &taken)?;
        taken.push(Mapping {
            start: p.base,
            end: p.base + p.image.len() as u64,
            perms: "rwxp".into(),
            offset: 0,
            inode: 0,
            path: String::new(),
        });
        patch_frames::add_from_image(&mut checker, &p.record, &p.image);
        prepared.push(p);
    }

    if opts.dry_run {
        return dry_run(pid, &scene, &prepared, &checker, report);
    }
    let syscall_insn = crate::syscall::find_syscall_insn(pid, &maps);
    let mut held = match early {
        Some(h) => h,
        None => Held::hold(pid)?,
    };
    held.use_syscall_insn(syscall_insn);
    let mut undo = UndoLog::default();
    let result = switch(
        &mut held,
        &scene,
        &mut prepared,
        &mut checker,
        &unwinders,
        opts,
        &mut undo,
    );
    if result.is_err() {
        undo.roll_back(&mut held);
    }
    report.stopped_us = (ifunc_stop + held.stopped_for()).as_micros() as u64;
    drop(held);
    if let Err(e) = result {
        tracing::info!(
            "pid {pid}: nothing applied; stopped {} us",
            report.stopped_us
        );
        return Err(e);
    }
    report.hunks = prepared.iter().map(|p| p.hunks.len()).sum();
    for p in &prepared {
        let names = p.hunks.iter().map(|h| h.function.clone()).collect();
        report.patches.push(PatchOutcome {
            build_id: patches[p.patch].header.build_id.clone(),
            object: objects[p.target].name.clone(),
            level: patches[p.patch].level(),
            region: p.base,
            functions: names,
            state: "applied".into(),
        });
    }
    report.status = "patched".into();
    report.collect_objects();
    Ok(report)
}

fn switch(
    held: &mut Held,
    scene: &Scene<'_>,
    prepared: &mut [Prepared],
    checker: &mut Checker,
    unwinders: &[(u64, u64)],
    opts: &Options,
    undo: &mut UndoLog,
) -> Result<()> {
    let replace = scene.replace;
    for p in prepared.iter_mut() {
        let len = p.image.len() as u64;
        match held.mmap_fixed(p.base, len) {
            Ok(_) => {}
            Err(Error::RemoteSyscall {
                errno: nix::errno::Errno::EEXIST,
                ..
            }) => {
                // Someone mapped our spot since we looked: prepare again.
                let maps = maps::read(held.pid())?;
                let again = prepare_anywhere(scene, p.patch, p.target, &maps)?;
                checker.remove_region(&patch_frames::region_name(&p.record));
                patch_frames::add_from_image(checker, &again.record, &again.image);
                *p = again;
                held.mmap_fixed(p.base, p.image.len() as u64)?;
            }
            Err(e) => return Err(e),
        }
        undo.push(Undo::Unmap {
            base: p.base,
            len: p.image.len() as u64,
        });
        held.write(p.base, &p.image)?;
        // Before any hunk goes live: an exception thrown in the new code
        // must find its frames. Logged first: the region notes each
        // registration as it succeeds, and the undo takes back those.
        undo.push(Undo::Deregister {
            record: p.record.clone(),
        });
        patch_frames::register(held, &p.record, &p.image, unwinders)?;
    }
    let mut busy: Vec<Busy> = Vec::new();
    for p in prepared.iter() {
        for (h, e) in p
            .hunks
            .iter()
            .zip(p.entries.iter().filter(|e| !e.is_new_function()))
        {
            busy.push(Busy {
                function: h.function.clone(),
                start: e.daddr,
                end: e.daddr + u64::from(e.dlen),
            });
        }
    }
    busy.extend_from_slice(scene.replaced_code);
    checker.wait_until_safe(held, &busy, opts.timeout)?;
    // Lower patch levels being replaced go first, newest first.
    for r in replace.iter().rev() {
        unpatch::restore(held, r, undo)?;
    }
    for p in prepared.iter() {
        for h in &p.hunks {
            let mut now = vec![0u8; h.saved.len()];
            held.read(h.addr, &mut now)?;
            if now != h.saved {
                return Err(Error::Thread {
                    pid: held.pid(),
                    tid: held.pid(),
                    what: format!(
                        "changed the code of `{}` at {:#x} while we prepared the patch",
                        h.function, h.addr
                    ),
                });
            }
            undo.push(Undo::Restore {
                addr: h.addr,
                bytes: h.saved.clone(),
            });
            held.write(h.addr, &h.bytes)?;
            tracing::info!("{}: jump at {:#x} -> {:#x}", h.function, h.addr, h.target);
        }
    }
    unpatch::release_regions(held, scene.maps, replace, unpatch::RELEASE_BUDGET);
    unpatch::release_regions(held, scene.maps, scene.retired, unpatch::RELEASE_BUDGET);
    Ok(())
}

/// The IFUNCs a real run would resolve by calling their resolvers, mapped
/// to the resolvers themselves: a dry run computes relocations with them
/// (their values are never written) and says so.
fn unbound_ifuncs_as_resolvers(
    pid: i32,
    patches: &[Patch],
    todo: &[(usize, usize)],
    objects: &[LoadedObject],
) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for &(pi, _) in todo {
        for (name, resolver) in resolve::unbound_ifuncs(pid, &patches[pi], objects) {
            tracing::info!("dry run: would call the resolver of IFUNC `{name}` at {resolver:#x}");
            out.insert(name, resolver);
        }
    }
    out
}

/// The end of a dry run: one short stop for the safety check, then the
/// report of what would be applied and whether the moment was safe.
fn dry_run(
    pid: i32,
    scene: &Scene<'_>,
    prepared: &[Prepared],
    checker: &Checker,
    mut report: ProcessReport,
) -> Result<ProcessReport> {
    let mut busy: Vec<Busy> = scene.replaced_code.to_vec();
    for p in prepared {
        busy.extend(
            p.hunks
                .iter()
                .zip(p.entries.iter().filter(|e| !e.is_new_function()))
                .map(|(h, e)| Busy {
                    function: h.function.clone(),
                    start: e.daddr,
                    end: e.daddr + u64::from(e.dlen),
                }),
        );
    }
    let held = Held::hold(pid)?;
    let blocker = checker.blockers(&held, &busy).into_iter().next();
    report.stopped_us = held.stopped_for().as_micros() as u64;
    drop(held);
    for p in prepared {
        report.patches.push(PatchOutcome {
            build_id: scene.patches[p.patch].header.build_id.clone(),
            object: scene.objects[p.target].name.clone(),
            level: scene.patches[p.patch].level(),
            region: p.base,
            functions: p.hunks.iter().map(|h| h.function.clone()).collect(),
            state: format!("would apply at {:#x}", p.base),
        });
    }
    report.hunks = prepared.iter().map(|p| p.hunks.len()).sum();
    report.status = match blocker {
        None => "dry run, safe now".into(),
        Some(b) if b.function.is_empty() => format!(
            "dry run, not safe now (thread {}: {}); a patch would wait up to its timeout",
            b.tid, b.detail
        ),
        Some(b) => format!(
            "dry run, not safe now (thread {} in `{}`: {}); a patch would wait up to its timeout",
            b.tid, b.function, b.detail
        ),
    };
    report.collect_objects();
    Ok(report)
}

/// Calls, in one short stop, the resolvers of the IFUNCs the patches need
/// and the process has not bound yet.
fn call_ifunc_resolvers(
    pid: i32,
    patches: &[Patch],
    todo: &[(usize, usize)],
    objects: &[LoadedObject],
    already_held: Option<&mut Held>,
) -> Result<(HashMap<String, u64>, Duration)> {
    let mut wanted: Vec<(String, u64)> = Vec::new();
    for &(pi, _) in todo {
        for w in resolve::unbound_ifuncs(pid, &patches[pi], objects) {
            if !wanted.iter().any(|(n, _)| *n == w.0) {
                wanted.push(w);
            }
        }
    }
    let mut out = HashMap::new();
    if wanted.is_empty() {
        return Ok((out, Duration::ZERO));
    }
    let mut own = None;
    let held = match already_held {
        Some(h) => h,
        None => own.insert(Held::hold(pid)?),
    };
    for (name, resolver) in wanted {
        let implementation = held.call(resolver, [0; 6])?;
        tracing::debug!("IFUNC {name}: resolver {resolver:#x} chose {implementation:#x}");
        out.insert(name, implementation);
    }
    Ok((out, own.map_or(Duration::ZERO, |h| h.stopped_for())))
}

/// Prepares patch `pi` for object `ti` at the nearest workable address.
fn prepare_anywhere(scene: &Scene<'_>, pi: usize, ti: usize, maps: &[Mapping]) -> Result<Prepared> {
    let (pid, patch, objects, replace) =
        (scene.pid, &scene.patches[pi], scene.objects, scene.replace);
    let layout = layout::plan(patch);
    let target = &objects[ti];
    let base = region::candidates(maps, target.start, target.end, layout.size)
        .into_iter()
        .next()
        .ok_or_else(|| Error::NoRoom {
            pid,
            object: target.name.clone(),
            size: layout.size,
        })?;
    let mut p = prepare(scene, &layout, pi, ti, base)?;
    // A function of a patch being replaced holds that patch's jump now; the
    // bytes to keep (and to check before writing) are the true originals it
    // saved, which go back in place first.
    let mut changed = false;
    for h in &mut p.hunks {
        if let Some(old) = replace
            .iter()
            .flat_map(|r| &r.hunks)
            .find(|o| o.addr == h.addr)
        {
            h.saved = old.saved.clone();
            changed = true;
        }
    }
    if changed {
        p.record.hunks = p.hunks.iter().map(Hunk::saved_hunk).collect();
        p.record.encode_into(&mut p.image, layout.record_cap);
    }
    Ok(p)
}

fn prepare(
    scene: &Scene<'_>,
    layout: &Layout,
    pi: usize,
    ti: usize,
    base: u64,
) -> Result<Prepared> {
    let (pid, patch, objects) = (scene.pid, &scene.patches[pi], scene.objects);
    let target = &objects[ti];
    let cx = Context {
        pid,
        patch,
        layout,
        base,
        target,
        objects,
        ifuncs: scene.ifuncs,
    };
    let values = resolve::resolve(&cx)?;
    let mut image = relocate::build_image(patch, layout, base, &values, target.bias)?;
    let entries = info_entries(patch, layout, &image)?;
    let bad_entry = |why: String| Error::Elf {
        what: patch.display(),
        detail: format!(".kpatch.info: {why}"),
    };
    let mut hunks = Vec::new();
    for e in &entries {
        let name = function_name(e, base, &image);
        if e.saddr < base || e.saddr + u64::from(e.slen) > base + image.len() as u64 {
            return Err(bad_entry(format!(
                "new code of `{name}` at {:#x} is outside the patch",
                e.saddr
            )));
        }
        if e.is_new_function() {
            continue;
        }
        if e.daddr < target.start || e.daddr + u64::from(e.dlen) > target.end {
            return Err(bad_entry(format!(
                "`{name}` at {:#x} is outside {} ({:#x}..{:#x})",
                e.daddr, target.name, target.start, target.end
            )));
        }
        let mut head = [0u8; 16];
        patient::read_memory(pid, e.daddr, &mut head)?;
        if let Some(h) = hunk::plan(e, &name, &head)? {
            hunks.push(h);
        }
    }
    let mut header = patch.header_bytes.clone();
    kpatch_file::set_jmp_offset(&mut header, layout.jump_table as u32);
    image[..kpatch_file::HEADER_SIZE].copy_from_slice(&header);
    let applied_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let record = Record {
        base,
        region_len: image.len() as u64,
        digest: patch.digest,
        applied_ns,
        object_start: target.start,
        object: target.name.clone(),
        build_id: patch.header.build_id.clone(),
        modulename: patch.header.modulename.clone(),
        level: patch.level(),
        retired: false,
        hunks: hunks.iter().map(Hunk::saved_hunk).collect(),
        entries: entries.clone(),
        eh_frame: patch_frames::locate(patch, layout),
        deregister: [0; record::UNWINDERS],
    };
    record.encode_into(&mut image, layout.record_cap);
    Ok(Prepared {
        record,
        patch: pi,
        target: ti,
        base,
        image,
        hunks,
        entries,
    })
}

fn info_entries(patch: &Patch, layout: &Layout, image: &[u8]) -> Result<Vec<InfoEntry>> {
    let mut out = Vec::new();
    for (i, s) in patch.sections.iter().enumerate() {
        if s.name != ".kpatch.info" {
            continue;
        }
        let off = layout.section_offset[i].expect(".kpatch.info is loaded") as usize;
        let len = (s.size as usize) / INFO_ENTRY_SIZE * INFO_ENTRY_SIZE;
        out.extend(
            kpatch_file::parse_info(&image[off..off + len]).map_err(|e| Error::Elf {
                what: patch.display(),
                detail: e.to_string(),
            })?,
        );
    }
    Ok(out)
}

/// The patched function's name from `.kpatch.strtab`, without `.kpatch`.
fn function_name(e: &InfoEntry, base: u64, image: &[u8]) -> String {
    let fallback = || format!("function at {:#x}", e.daddr);
    let Some(off) = e.symstr.checked_sub(base).map(|o| o as usize) else {
        return fallback();
    };
    let Some(tail) = image.get(off..) else {
        return fallback();
    };
    let end = tail.iter().position(|&b| b == 0).unwrap_or(0).min(256);
    if end == 0 {
        return fallback();
    }
    let name = String::from_utf8_lossy(&tail[..end]).into_owned();
    name.strip_suffix(".kpatch")
        .map(str::to_string)
        .unwrap_or(name)
}
