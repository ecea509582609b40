//! Patches move between LibCare and us, both ways.
//!
//! - Files built by LibCare's own toolchain (`tests/interop/`) apply and
//!   come off with our libcare-ctl, and the program's output shows it.
//! - A file whose layout our doctor cannot place exactly is refused with the
//!   patient untouched.
//! - Files our toolchain builds from the same programs apply with our
//!   libcare-ctl and have the shape LibCare's loader takes (ET_REL, sections
//!   where it places them, original section addresses, relocation types it
//!   knows), in the seed's order of the recipe's steps and in the order
//!   LibCare's makefiles use (`strip --strip-unneeded` before `--rel-fixup`).
//! - The shapes of LibCare's own tests that our tools failed
//!   (`tests/cases/lc_*`): a file-static thread-local of a shared library,
//!   a file-static pointer in `.data`, patch levels from a storage whose
//!   files carry no level of their own.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::{LittleEndian as LE, SectionIndex};

use support::tools::workspace_root;
use support::{
    Case, Flavour, Order, Patient, build_by_patch_make, build_by_recipe_in, build_id, ctl, ctl_ok,
    patch_and_unpatch, refused, run_ok, snapshot, stderr, tool,
};

/// One interop case: a program, its fixed source and the two output
/// fragments that tell before from after.
struct Interop {
    dir: PathBuf,
    before: String,
    after: String,
}

impl Interop {
    fn load(dir: &Path) -> Interop {
        let expect = std::fs::read_to_string(dir.join("expect"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut lines = expect.lines();
        let (Some(before), Some(after)) = (lines.next(), lines.next()) else {
            panic!("{}: expect needs two lines", dir.display());
        };
        Interop {
            dir: dir.to_path_buf(),
            before: before.to_string(),
            after: after.to_string(),
        }
    }

    fn vendored(name: &str) -> Interop {
        Interop::load(&workspace_root().join("tests/interop").join(name))
    }

    /// A private copy of the folder: the test writes next to the files.
    fn copy(&self) -> tempfile::TempDir {
        let tmp = tempfile::Builder::new()
            .prefix("lc-interop.")
            .tempdir()
            .unwrap();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
            }
        }
        tmp
    }

    fn is_before(&self, line: &str) -> bool {
        line.contains(&self.before) && !line.contains(&self.after)
    }

    fn is_after(&self, line: &str) -> bool {
        line.contains(&self.after)
    }
}

/// Runs `program`, patches it with `patch` (a file or a directory), checks
/// the output switches, unpatches, checks it switches back; twice, so that a
/// region left behind or a wrong undo shows on the second round.
fn cycle(case: &Interop, program: &Path, patch: &Path) {
    cycle_with(case, program, patch, ["patch", "unpatch"]);
}

/// [`cycle`] with the given names of the two commands (LibCare's aliases).
fn cycle_with(case: &Interop, program: &Path, patch: &Path, [patch_cmd, unpatch_cmd]: [&str; 2]) {
    let mut patient = Patient::start_program(program, program.parent().unwrap());
    let pid = patient.pid_arg();
    let patch = patch.to_str().unwrap();
    patient.wait_until("the old line", |l| case.is_before(l), |_| false);
    for _ in 0..2 {
        ctl_ok(&mut patient, &["-v", patch_cmd, "-p", &pid, patch]);
        patient.wait_until("the new line", |l| case.is_after(l), |l| case.is_before(l));
        patient.expect_steady_by("the new line", 3, |l| case.is_after(l));
        ctl_ok(&mut patient, &["-v", unpatch_cmd, "-p", &pid]);
        patient.wait_until("the old line", |l| case.is_before(l), |l| case.is_after(l));
        patient.expect_steady_by("the old line", 3, |l| case.is_before(l));
    }
    assert!(patient.alive(), "pid {pid} died");
}

/// LibCare's file as it is, then from a directory of `<BuildID>.kpatch`
/// with LibCare's names of the commands.
fn libcare_built(name: &str) {
    let case = Interop::vendored(name);
    let tmp = case.copy();
    let program = tmp.path().join("foo");
    cycle(&case, &program, &tmp.path().join("foo.kpatch"));
    let dir = tmp.path().join("patches");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        tmp.path().join("foo.kpatch"),
        dir.join(format!("{}.kpatch", build_id(&program))),
    )
    .unwrap();
    cycle_with(&case, &program, &dir, ["patch-user", "unpatch-user"]);
}

#[test]
fn libcare_built_seed_patch_applies_and_unpatches() {
    libcare_built("seed");
}

#[test]
fn libcare_built_new_data_patch_applies_and_unpatches() {
    libcare_built("newdata");
}

#[test]
fn libcare_built_thread_local_patch_applies_and_unpatches() {
    libcare_built("tls");
}

/// Whatever the team put in the shared interop folder beside the
/// repository (a fresh clone elsewhere has none; the vendored cases above
/// are the proof that always runs).
#[test]
fn libcare_built_patches_of_the_shared_folder() {
    let shared = workspace_root().join("../shared/interop");
    let Ok(entries) = std::fs::read_dir(&shared) else {
        eprintln!("{}: absent, nothing more to try", shared.display());
        return;
    };
    for entry in entries {
        let dir = entry.unwrap().path();
        if !dir.join("foo.kpatch").is_file() || !dir.join("expect").is_file() {
            continue;
        }
        let case = Interop::load(&dir);
        let tmp = case.copy();
        cycle(
            &case,
            &tmp.path().join("foo"),
            &tmp.path().join("foo.kpatch"),
        );
    }
}

// ---- refusals ----------------------------------------------------------

/// The patch ELF of a `.kpatch` file, edited by `edit`, wrapped again in
/// the same header (checksum 0, as LibCare writes it).
fn edit_elf(kpatch: &[u8], edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut out = kpatch.to_vec();
    edit(&mut out[kpatch_file::HEADER_SIZE..]);
    out
}

/// Every `.symtab` entry of the ELF: its byte offset in the file, type,
/// section index, value, and its section's address.
fn symbols(elf_bytes: &[u8]) -> Vec<(usize, u8, u16, u64, u64)> {
    let hdr = elf::FileHeader64::<LE>::parse(elf_bytes).unwrap();
    let sections = hdr.sections(LE, elf_bytes).unwrap();
    let symtab = sections
        .iter()
        .find(|s| s.sh_type(LE) == elf::SHT_SYMTAB)
        .expect("a .symtab");
    let start = symtab.sh_offset(LE) as usize;
    let table = sections.symbols(LE, elf_bytes, elf::SHT_SYMTAB).unwrap();
    table
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let shndx = s.st_shndx(LE);
            let addr = sections
                .section(SectionIndex(shndx as usize))
                .map_or(0, |sh| sh.sh_addr(LE));
            (start + n * 24, s.st_type(), shndx, s.st_value(LE), addr)
        })
        .collect()
}

#[test]
fn libcare_built_file_with_a_layout_we_cannot_place_is_refused_untouched() {
    let case = Interop::vendored("seed");
    let tmp = case.copy();
    let good = std::fs::read(tmp.path().join("foo.kpatch")).unwrap();
    let elf_bytes = &good[kpatch_file::HEADER_SIZE..];
    let syms = symbols(elf_bytes);
    // A section symbol whose value is neither 0 nor its section's address.
    let (at, ..) = *syms
        .iter()
        .find(|s| s.1 == elf::STT_SECTION && s.3 != 0)
        .expect("LibCare's section symbols carry their section's address");
    let odd_section_symbol = edit_elf(&good, |e| {
        let v = u64::from_le_bytes(e[at + 8..at + 16].try_into().unwrap());
        e[at + 8..at + 16].copy_from_slice(&(v + 8).to_le_bytes());
    });
    // The new function's symbol with its linked address, as a file whose
    // link was never undone has it.
    let (at, _, _, _, addr) = *syms
        .iter()
        .find(|s| s.1 == elf::STT_FUNC && s.2 != 0 && s.3 == 0 && s.4 != 0)
        .expect("the .kpatch function symbol");
    let linked_symbol = edit_elf(&good, |e| {
        e[at + 8..at + 16].copy_from_slice(&addr.to_le_bytes());
    });

    let mut patient = Patient::start_program(&tmp.path().join("foo"), tmp.path());
    patient.wait_until("the old line", |l| case.is_before(l), |_| false);
    let pid = patient.pid();
    let snap = snapshot(pid);
    for (name, bytes, why) in [
        (
            "section-symbol.kpatch",
            &odd_section_symbol,
            "neither 0 nor the section's address",
        ),
        (
            "linked.kpatch",
            &linked_symbol,
            "lies beyond the end of section .kpatch.text",
        ),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = ctl(&["patch", "-p", &pid.to_string(), path.to_str().unwrap()]);
        refused(&out, why);
        assert!(
            stderr(&out).contains("cannot be placed exactly"),
            "{}",
            stderr(&out)
        );
        patient.expect_steady_by("the old line", 2, |l| case.is_before(l));
        assert_eq!(snapshot(pid), snap, "{name}: the patient changed");
    }
    assert!(patient.alive());
}

// ---- our files, LibCare's loader ----------------------------------------

/// The interop README's recipe with our tools, in `dir` (which holds foo.c
/// and bar.c); returns the original program and the `.kpatch`.
fn our_recipe(dir: &Path, order: Order) -> (PathBuf, PathBuf) {
    let sh = |cmd: &mut Command| {
        run_ok(cmd.current_dir(dir));
    };
    sh(Command::new("gcc").args(["-S", "foo.c"]));
    sh(Command::new("gcc").args(["-S", "bar.c"]));
    let bar = std::fs::read_to_string(dir.join("bar.s")).unwrap();
    std::fs::write(dir.join("bar.s"), bar.replace("\"bar.c\"", "\"foo.c\"")).unwrap();
    sh(Command::new(tool("kpatch_gensrc")).args([
        "--os=rhel6",
        "-i",
        "foo.s",
        "-i",
        "bar.s",
        "-o",
        "foobar.s",
    ]));
    sh(Command::new("gcc").args(["-o", "foo", "foo.s"]));
    sh(Command::new("gcc").args(["-o", "foobar", "foobar.s", "-Wl,-q"]));
    let strip = || Command::new(tool("kpatch_strip"));
    sh(strip().args(["--strip", "foobar", "foobar.stripped"]));
    match order {
        Order::Seed => {
            sh(strip().args(["--rel-fixup", "foo", "foobar.stripped"]));
            sh(Command::new("strip").args(["--strip-unneeded", "foobar.stripped"]));
        }
        Order::LibCare => {
            sh(Command::new("strip").args(["--strip-unneeded", "foobar.stripped"]));
            sh(strip().args(["--rel-fixup", "foo", "foobar.stripped"]));
        }
    }
    sh(strip().args(["--undo-link", "foo", "foobar.stripped"]));
    let id = build_id(&dir.join("foo"));
    sh(Command::new(tool("kpatch_make")).args(["-b", &id, "foobar.stripped", "-o", "foo.kpatch"]));
    (dir.join("foo"), dir.join("foo.kpatch"))
}

/// Checks the facts of LibCare's loader on a `.kpatch` for `original`:
/// it takes only ET_REL with 64-byte section headers; it loads the whole
/// file into a page-aligned region and places every section that has bytes
/// at its file offset (so the header's 688 bytes plus `sh_offset` must keep
/// the section's alignment); it finds the original's sections at the
/// patch's `sh_addr` plus the load bias (so those must be the original's
/// addresses); it resolves defined symbols as section address plus value,
/// undefined ones only when they are functions or objects; it reads the
/// entries of an applied patch back until a zero one.
fn assert_libcare_loadable(kpatch: &Path, original: &Path) {
    let file = std::fs::read(kpatch).unwrap();
    let k = kpatch_file::KpatchFile::parse(&file).unwrap();
    let data = k.elf;
    let what = kpatch.display();
    let hdr = elf::FileHeader64::<LE>::parse(data).unwrap();
    assert_eq!(hdr.e_type(LE), elf::ET_REL, "{what}: e_type");
    assert_eq!(hdr.e_shentsize(LE), 64, "{what}: e_shentsize");
    assert_eq!(hdr.e_phnum(LE), 0, "{what}: program headers");
    assert_eq!(
        k.header.kpatch_offset as usize,
        kpatch_file::HEADER_SIZE,
        "{what}: kpatch_offset"
    );
    let orig_bytes = std::fs::read(original).unwrap();
    let ohdr = elf::FileHeader64::<LE>::parse(&*orig_bytes).unwrap();
    let osecs = ohdr.sections(LE, &*orig_bytes).unwrap();
    let orig_addr = |name: &[u8]| {
        osecs
            .iter()
            .find(|s| osecs.section_name(LE, s).ok() == Some(name))
            .map(|s| s.sh_addr(LE))
    };
    let secs = hdr.sections(LE, data).unwrap();
    for sh in secs.iter().skip(1) {
        let name = secs.section_name(LE, sh).unwrap();
        let shown = String::from_utf8_lossy(name);
        let align = sh.sh_addralign(LE).max(1);
        if sh.sh_type(LE) == elf::SHT_NOBITS {
            if let Some(addr) = orig_addr(name)
                && sh.sh_flags(LE) & u64::from(elf::SHF_ALLOC) != 0
            {
                assert_eq!(
                    sh.sh_addr(LE),
                    addr,
                    "{what}: {shown} must carry the original's address"
                );
            }
        } else if name.starts_with(b".kpatch") {
            if name == b".kpatch.info" {
                // LibCare's libcare-ctl reads an applied patch's entries
                // back until daddr, saddr, dlen and slen are all zero.
                let bytes = sh.data(LE, data).unwrap();
                assert!(
                    bytes.len() >= 24 && bytes[bytes.len() - 24..].iter().all(|&b| b == 0),
                    "{what}: .kpatch.info has no terminator"
                );
            }
            assert_eq!(
                (kpatch_file::HEADER_SIZE as u64 + sh.sh_offset(LE)) % align,
                0,
                "{what}: {shown} would be misaligned where LibCare places it"
            );
        }
        if let Some((relas, _)) = sh.rela(LE, data).unwrap() {
            let target = secs.section(SectionIndex(sh.sh_info(LE) as usize)).unwrap();
            if !secs
                .section_name(LE, target)
                .unwrap()
                .starts_with(b".kpatch")
            {
                continue;
            }
            for r in relas {
                let t = r.r_type(LE, false);
                assert!(
                    kpatch_file::reloc::reloc(t).is_some_and(|k| k.libcare_applies),
                    "{what}: {shown} has relocation type {t}, which LibCare's loader refuses"
                );
            }
        }
    }
    let syms = secs.symbols(LE, data, elf::SHT_SYMTAB).unwrap();
    for s in syms.iter().skip(1) {
        let name = String::from_utf8_lossy(syms.symbol_name(LE, s).unwrap());
        match s.st_shndx(LE) {
            elf::SHN_UNDEF => assert!(
                matches!(s.st_type(), elf::STT_FUNC | elf::STT_OBJECT)
                    || s.st_bind() != elf::STB_GLOBAL,
                "{what}: undefined `{name}` of type {} is not resolved by LibCare",
                s.st_type()
            ),
            elf::SHN_ABS => {}
            n => {
                let sec = secs.section(SectionIndex(n as usize)).unwrap();
                if s.st_type() != elf::STT_SECTION && s.st_type() != elf::STT_TLS {
                    assert!(
                        s.st_value(LE) <= sec.sh_size(LE),
                        "{what}: `{name}` is not relative to its section"
                    );
                }
            }
        }
    }
}

fn ours(name: &str, order: Order) {
    let case = Interop::vendored(name);
    let tmp = case.copy();
    // LibCare's original binary and patch must not be confused with ours.
    std::fs::remove_file(tmp.path().join("foo")).unwrap();
    std::fs::remove_file(tmp.path().join("foo.kpatch")).unwrap();
    let (program, kpatch) = our_recipe(tmp.path(), order);
    assert_libcare_loadable(&kpatch, &program);
    cycle(&case, &program, &kpatch);
}

#[test]
fn our_seed_patch_in_the_seeds_order() {
    ours("seed", Order::Seed);
}

#[test]
fn our_seed_patch_in_libcares_order() {
    ours("seed", Order::LibCare);
}

#[test]
fn our_new_data_patch_in_both_orders() {
    ours("newdata", Order::Seed);
    ours("newdata", Order::LibCare);
}

#[test]
fn our_thread_local_patch_in_both_orders() {
    ours("tls", Order::Seed);
    ours("tls", Order::LibCare);
}

// ---- LibCare's test shapes ----------------------------------------------

/// Built by the recipe in both orders and by libcare-patch-make; each
/// patched, checked, unpatched, checked.
fn libcare_shape(name: &str) {
    let case = Case::load(name);
    for order in [Order::Seed, Order::LibCare] {
        let built = build_by_recipe_in(&case, Flavour::PIE_O2_G, order);
        patch_and_unpatch(&case, &built);
    }
    patch_and_unpatch(&case, &build_by_patch_make(&case, Flavour::PIE_O2_G));
}

#[test]
fn libcare_shape_static_thread_local_of_a_shared_library() {
    libcare_shape("lc_tls_shared");
}

#[test]
fn libcare_shape_file_static_pointer_in_data() {
    libcare_shape("lc_ref_rodata");
}

/// LibCare's patchlevel test: files built without a level (kpatch_make
/// with no -l) in `<BuildID>/1/` and `<BuildID>/2/`; `latest` says which
/// one is current, and moving it replaces level 1 with level 2 in the
/// running program and its library.
#[test]
fn libcare_shape_patch_levels_told_by_the_storage() {
    let level1 = Case::load("lc_patchlevel");
    // The same sources with fix2.diff as the fix.
    let tmp = tempfile::Builder::new()
        .prefix("lc-patchlevel.")
        .tempdir()
        .unwrap();
    level1.copy_to(tmp.path());
    std::fs::rename(tmp.path().join("fix2.diff"), tmp.path().join("fix.diff")).unwrap();
    let level2 = Case {
        dir: tmp.path().to_path_buf(),
        after: level1.after.replace("SEMIPATCHED", "PATCHED"),
        ..level1.clone()
    };
    let store = tmp.path().join("store");
    let mut built = Vec::new();
    for (level, case) in [(1, &level1), (2, &level2)] {
        // No -g: the two builds run in different directories, and the
        // originals must be the same binaries (same BuildIDs).
        let b = build_by_recipe_in(case, Flavour::PIE_O0, Order::LibCare);
        for entry in std::fs::read_dir(&b.patch).unwrap() {
            let file = entry.unwrap().path();
            let id = file.file_stem().unwrap().to_str().unwrap().to_string();
            let k = std::fs::read(&file).unwrap();
            let header = kpatch_file::KpatchFile::parse(&k).unwrap().header;
            assert_eq!(header.user_level, 0, "built without a level");
            let dir = store.join(&id).join(level.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("kpatch.bin"), k).unwrap();
        }
        built.push(b);
    }
    let point_latest_to = |level: &str| {
        for entry in std::fs::read_dir(&store).unwrap() {
            let latest = entry.unwrap().path().join("latest");
            let _ = std::fs::remove_file(&latest);
            std::os::unix::fs::symlink(level, &latest).unwrap();
        }
    };
    assert_eq!(
        built[0].targets, built[1].targets,
        "one original for both levels"
    );
    let mut patient = Patient::start(&built[0]);
    let pid = patient.pid_arg();
    let store_arg = store.to_str().unwrap();
    let (v0, v1, v2) = (
        level1.before.as_str(),
        level1.after.as_str(),
        level2.after.as_str(),
    );
    patient.wait_for(v0, &[]);
    point_latest_to("1");
    ctl_ok(&mut patient, &["-v", "patch", "-p", &pid, store_arg]);
    patient.wait_for(v1, &[v0]);
    patient.expect_steady(v1, 2);
    point_latest_to("2");
    ctl_ok(&mut patient, &["-v", "patch", "-p", &pid, store_arg]);
    patient.wait_for(v2, &[v1]);
    patient.expect_steady(v2, 2);
    let info = ctl(&["info", "-p", &pid]);
    let info = String::from_utf8_lossy(&info.stdout).into_owned() + &stderr(&info);
    assert!(info.contains("level 2"), "info: {info}");
    assert!(!info.contains("level 1"), "level 1 still listed: {info}");
    ctl_ok(&mut patient, &["-v", "unpatch", "-p", &pid]);
    patient.wait_for(v0, &[v2]);
    patient.expect_steady(v0, 3);
}

// ---- coroutines ----------------------------------------------------------

/// A copy of `case` whose fix is `diff` (one of its other diffs).
fn with_fix(case: &Case, diff: &str, dir: &Path) -> Case {
    case.copy_to(dir);
    std::fs::rename(dir.join(diff), dir.join("fix.diff")).unwrap();
    Case {
        dir: dir.to_path_buf(),
        ..case.clone()
    }
}

/// A function no coroutine is suspended in is patched as usual in a
/// program whose coroutines switch by jmp_buf (QEMU's shape) and by
/// ucontext; the two functions they are suspended in are refused by name,
/// with the patient untouched (LibCare refuses such programs outright when
/// it cannot find their coroutines).
#[test]
fn coroutine_stacks_are_checked_too() {
    let case = Case::load("lc_coro");
    // No -g: the refused fixes are built in other directories and must
    // target the same binary (same BuildID).
    let built = build_by_recipe_in(&case, Flavour::PIE_O0, Order::Seed);
    patch_and_unpatch(&case, &built);
    patch_and_unpatch(
        &case,
        &build_by_recipe_in(&case, Flavour::PIE_O2_G, Order::Seed),
    );

    let tmp = tempfile::Builder::new()
        .prefix("lc-coro.")
        .tempdir()
        .unwrap();
    let mut patient = Patient::start(&built);
    patient.wait_for(&case.before, &[]);
    let pid = patient.pid();
    let snap = snapshot(pid);
    for (diff, function, kind) in [
        ("fix_a.diff", "body_a", "jmp_buf"),
        ("fix_b.diff", "body_b", "ucontext"),
    ] {
        let dir = tmp.path().join(diff);
        let other = with_fix(&case, diff, &dir);
        let other = build_by_recipe_in(&other, Flavour::PIE_O0, Order::Seed);
        let patch = &other.patch;
        let out = ctl(&[
            "patch",
            "--timeout",
            "0.3",
            "-p",
            &pid.to_string(),
            patch.to_str().unwrap(),
        ]);
        refused(
            &out,
            &format!("`{function}` is suspended on a coroutine stack ({kind} at"),
        );
        patient.expect_steady(&case.before, 2);
        assert_eq!(snapshot(pid), snap, "{diff}: the patient changed");
    }
    assert!(patient.alive());
}
