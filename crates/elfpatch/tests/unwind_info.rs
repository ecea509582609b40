//! The patch carries the unwind info of its own code: `.kpatch.eh_frame`
//! of the finished patch, relocated the way the doctor does it at an
//! arbitrary load address and read with gimli, has exactly one FDE per
//! patch function, covering `[NAME.kpatch, NAME.kpatch_end)`, with rules
//! that parse; the personality and LSDA pointers land where the patch puts
//! them. Built from the seed example (and two C++ programs) through the
//! real differ, gcc and binutils, in every supported build mode.

mod support;

use std::collections::HashMap;
use std::path::Path;

use gimli::{BaseAddresses, CieOrFde, EhFrame, Pointer, UnwindContext, UnwindSection};
use object::read::elf::{ElfFile64, FileHeader, Rela as _, SectionHeader, Sym as _};
use object::{LittleEndian as LE, Object, ObjectSection, ObjectSymbol, elf};
use support::*;

/// Where the test "loads" the patch's sections, the original's sections,
/// and the jump table slots: within 32-bit reach of each other, as the
/// doctor places them.
const PATCH_BASE: u64 = 0x5555_6000_0000;
const ORIGINAL_BASE: u64 = 0x5555_5000_0000;
const SLOT_BASE: u64 = 0x5555_5fff_0000;

/// Built with gcc or g++, differ, recipe; returns the linked binary and
/// the finished patch.
fn build(dir: &Path, cc: &str, sources: (&str, &str), cflags: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let link: Vec<&str> = cflags.to_vec();
    let compile: Vec<&str> = cflags
        .iter()
        .copied()
        .filter(|f| !matches!(*f, "-shared" | "-no-pie"))
        .collect();
    let mut args = compile.clone();
    let orig_src = fixture(sources.0);
    args.extend(["-S", orig_src.to_str().unwrap(), "-o", "foo.s"]);
    run(dir, cc, &args);
    let mut args = compile;
    let patched_src = fixture(sources.1);
    args.extend(["-S", patched_src.to_str().unwrap(), "-o", "bar.s"]);
    run(dir, cc, &args);
    let orig = std::fs::read_to_string(dir.join("foo.s")).unwrap();
    let patched = std::fs::read_to_string(dir.join("bar.s")).unwrap();
    let out = gensrc::diff("foo.s", &orig, "bar.s", &patched, &Default::default())
        .unwrap_or_else(|e| panic!("kpatch_gensrc: {e}"));
    std::fs::write(dir.join("foobar.s"), out.text).unwrap();
    let built = recipe_cc(dir, cc, &link, "foo.s", "foobar.s", "foo");
    assert_readelf_clean(&built.patch);
    let patch = std::fs::read(&built.patch).unwrap();
    let relocs = check_contract(&patch);
    for r in relocs.iter().filter(|r| r.section == ".kpatch.eh_frame") {
        match r.r_type {
            elf::R_X86_64_PC32 => assert!(r.symbol_section.is_some(), "{r:?}"),
            elf::R_X86_64_GOTPCREL => assert!(r.symbol_section.is_none(), "{r:?}"),
            _ => panic!("unexpected relocation in .kpatch.eh_frame: {r:?}"),
        }
    }
    elfpatch::check_patch_elf(&patch).unwrap();
    (std::fs::read(&built.linked).unwrap(), patch)
}

/// `[start, end)` of every function in the patch's code, as offsets in its
/// section, from the linked binary: sized FUNC symbols in executable
/// `.kpatch.*` sections. Each `NAME.kpatch` must end at `NAME.kpatch_end`.
fn patch_functions(linked: &[u8]) -> HashMap<String, (String, u64, u64)> {
    let f = ElfFile64::<LE>::parse(linked).unwrap();
    let addr_of = |name: &str| {
        f.symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| s.address())
    };
    let mut out = HashMap::new();
    for s in f.symbols() {
        let Some(sec) = s.section_index().and_then(|i| f.section_by_index(i).ok()) else {
            continue;
        };
        let sec_name = sec.name().unwrap();
        let is_code = sec_name.starts_with(".kpatch.")
            && matches!(sec.flags(), object::SectionFlags::Elf { sh_flags }
                if sh_flags & u64::from(elf::SHF_EXECINSTR) != 0);
        if !is_code || s.kind() != object::SymbolKind::Text || s.size() == 0 {
            continue;
        }
        let name = s.name().unwrap().to_string();
        let start = s.address() - sec.address();
        let end = start + s.size();
        if name.ends_with(".kpatch") {
            let end_label = addr_of(&format!("{name}_end")).expect("NAME.kpatch_end label");
            assert_eq!(
                end_label - sec.address(),
                end,
                "{name}: .size and end label"
            );
        }
        out.insert(name, (sec_name.to_string(), start, end));
    }
    assert!(!out.is_empty(), "no patch functions in the linked binary");
    out
}

/// The patch's sections at test addresses: `.kpatch.*` packed from
/// PATCH_BASE at their alignment, every other one at its own spot.
fn placement(patch: &[u8]) -> Vec<u64> {
    let f = ElfFile64::<LE>::parse(patch).unwrap();
    let sections = f.elf_header().sections(LE, patch).unwrap();
    let mut next = PATCH_BASE;
    sections
        .iter()
        .enumerate()
        .map(|(i, sh)| {
            let name = sections.section_name(LE, sh).unwrap();
            if name.starts_with(b".kpatch.") {
                let align = sh.sh_addralign(LE).max(1);
                let at = next.div_ceil(align) * align;
                next = at + sh.sh_size(LE);
                at
            } else {
                ORIGINAL_BASE + i as u64 * 0x10_0000
            }
        })
        .collect()
}

/// `.kpatch.eh_frame` with its relocations applied, as the doctor would
/// at `placement`; `None` when the patch has none. Also returns the slot
/// address given to each undefined symbol reached through GOTPCREL.
fn relocated_eh_frame(patch: &[u8], at: &[u64]) -> Option<(Vec<u8>, u64, HashMap<String, u64>)> {
    let f = ElfFile64::<LE>::parse(patch).unwrap();
    let sections = f.elf_header().sections(LE, patch).unwrap();
    let (index, sh) = sections
        .iter()
        .enumerate()
        .find(|(_, sh)| sections.section_name(LE, sh).unwrap() == b".kpatch.eh_frame")?;
    assert_eq!(sh.sh_type(LE), elf::SHT_PROGBITS);
    assert_eq!(sh.sh_flags(LE), u64::from(elf::SHF_ALLOC));
    assert_eq!(sh.sh_addralign(LE), 8);
    let mut bytes = sh.data(LE, patch).unwrap().to_vec();
    let base = at[index];
    let symtab = sections.symbols(LE, patch, elf::SHT_SYMTAB).unwrap();
    let mut slots = HashMap::new();
    let relas: Vec<_> = sections
        .iter()
        .filter(|r| r.sh_type(LE) == elf::SHT_RELA && r.sh_info(LE) as usize == index)
        .flat_map(|r| r.data_as_array::<elf::Rela64<LE>, _>(LE, patch).unwrap())
        .collect();
    assert!(!relas.is_empty(), ".kpatch.eh_frame without relocations");
    for r in relas {
        let sym = symtab
            .symbol(object::SymbolIndex(r.r_sym(LE, false) as usize))
            .unwrap();
        let name = String::from_utf8_lossy(symtab.symbol_name(LE, sym).unwrap()).into_owned();
        let shndx = usize::from(sym.st_shndx(LE));
        let p = base + r.r_offset(LE);
        let a = r.r_addend(LE);
        let o = r.r_offset(LE) as usize;
        let v = match r.r_type(LE, false) {
            elf::R_X86_64_PC32 => {
                assert_ne!(shndx, 0, "PC32 to undefined {name}");
                let s = at[shndx] + sym.st_value(LE);
                s.wrapping_add(a as u64).wrapping_sub(p) as i64
            }
            elf::R_X86_64_GOTPCREL => {
                assert_eq!(shndx, 0, "GOTPCREL to defined {name}");
                let n = slots.len() as u64;
                let slot = *slots.entry(name).or_insert(SLOT_BASE + 16 * n + 8);
                slot.wrapping_add(a as u64).wrapping_sub(p) as i64
            }
            t => panic!("relocation type {t} in .kpatch.eh_frame"),
        };
        let v = i32::try_from(v).expect("PC-relative value out of 32-bit reach");
        bytes[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    Some((bytes, base, slots))
}

/// What one CFI check found, for the test to compare with its program.
struct Cfi {
    /// Personality pointers, as gimli reads them.
    personalities: Vec<Pointer>,
    /// LSDA addresses of the FDEs.
    lsdas: Vec<u64>,
    slots: HashMap<String, u64>,
}

/// The check the task asks for: one FDE per patch function, exactly its
/// range, rows that parse; and `readelf --debug-dump=frames` agrees on the
/// finished file.
fn check_cfi(dir: &Path, linked: &[u8], patch: &[u8]) -> Cfi {
    let functions = patch_functions(linked);
    let at = placement(patch);
    let (bytes, base, slots) =
        relocated_eh_frame(patch, &at).expect("the finished patch has .kpatch.eh_frame");
    let f = ElfFile64::<LE>::parse(patch).unwrap();
    let code_addr = |section: &str| {
        let s = f.section_by_name(section).unwrap();
        at[s.index().0]
    };
    let mut want: HashMap<(u64, u64), String> = functions
        .iter()
        .map(|(name, (sec, start, end))| {
            let b = code_addr(sec);
            ((b + start, end - start), name.clone())
        })
        .collect();
    let eh = EhFrame::new(&bytes, gimli::LittleEndian);
    let bases = BaseAddresses::default().set_eh_frame(base);
    let mut entries = eh.entries(&bases);
    let mut ctx = UnwindContext::new();
    let mut cfi = Cfi {
        personalities: Vec::new(),
        lsdas: Vec::new(),
        slots,
    };
    let mut fdes = 0;
    while let Some(entry) = entries.next().expect(".kpatch.eh_frame parses") {
        match entry {
            CieOrFde::Cie(cie) => cfi.personalities.extend(cie.personality()),
            CieOrFde::Fde(partial) => {
                let fde = partial.parse(EhFrame::cie_from_offset).unwrap();
                let key = (fde.initial_address(), fde.len());
                assert!(
                    want.remove(&key).is_some(),
                    "FDE {:#x}+{:#x} covers no patch function exactly (left: {want:?})",
                    key.0,
                    key.1
                );
                if let Some(lsda) = fde.lsda() {
                    cfi.lsdas.push(lsda.direct().expect("direct LSDA pointer"));
                }
                let mut rows = fde.rows(&eh, &bases, &mut ctx).unwrap();
                let mut n = 0;
                while let Some(row) = rows.next_row().unwrap() {
                    assert!(matches!(
                        row.cfa(),
                        gimli::CfaRule::RegisterAndOffset { .. }
                    ));
                    n += 1;
                }
                assert!(n > 0, "FDE without rows");
                fdes += 1;
            }
        }
    }
    assert!(want.is_empty(), "patch functions without an FDE: {want:?}");
    assert_eq!(fdes, functions.len());
    readelf_frames_agree(dir, patch, &functions);
    cfi
}

/// binutils reads frames only from a section named `.eh_frame`: a renamed
/// copy of the finished patch must list the same FDEs, as offsets in the
/// code section, without a complaint.
fn readelf_frames_agree(dir: &Path, patch: &[u8], functions: &HashMap<String, (String, u64, u64)>) {
    // readelf applies the relocations of an ET_REL file before it prints
    // frames, and knows no GOTPCREL there: the copy it reads says ET_DYN,
    // so that it shows the bytes as they are.
    let mut patch = patch.to_vec();
    patch[16..18].copy_from_slice(&elf::ET_DYN.to_le_bytes());
    std::fs::write(dir.join("finished.elf"), patch).unwrap();
    run(
        dir,
        "objcopy",
        &[
            "--rename-section",
            ".kpatch.eh_frame=.eh_frame",
            "finished.elf",
            "renamed.elf",
        ],
    );
    let out = std::process::Command::new("readelf")
        .args(["-wN", "--debug-dump=frames", "renamed.elf"])
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "readelf: {err}"
    );
    assert!(
        !text.contains("Warning") && !text.contains("Error"),
        "{text}"
    );
    let mut ranges: Vec<String> = text
        .lines()
        .filter(|l| l.contains(" FDE "))
        .map(|l| l.split("pc=").nth(1).unwrap().to_string())
        .collect();
    ranges.sort();
    let mut want: Vec<String> = functions
        .values()
        .map(|(_, s, e)| format!("{s:016x}..{e:016x}"))
        .collect();
    want.sort();
    assert_eq!(ranges, want, "{text}");
}

fn seed(cflags: &[&str], lib: bool) {
    let dir = tempfile::tempdir().unwrap();
    let sources = if lib {
        ("libfoo.c", "libbar.c")
    } else {
        ("foo.c", "bar.c")
    };
    let (linked, patch) = build(dir.path(), "gcc", sources, cflags);
    let cfi = check_cfi(dir.path(), &linked, &patch);
    assert!(cfi.personalities.is_empty() && cfi.lsdas.is_empty());
    assert!(cfi.slots.is_empty());
}

#[test]
fn seed_example_pie() {
    seed(&[], false);
    seed(&["-O2", "-g"], false);
}

#[test]
fn seed_example_no_pie() {
    seed(&["-fno-pie", "-no-pie"], false);
    seed(&["-O2", "-g", "-fno-pie", "-no-pie"], false);
}

#[test]
fn seed_example_shared_library() {
    seed(&["-fPIC", "-shared"], true);
    seed(&["-O2", "-g", "-fPIC", "-shared"], true);
}

/// Without unwind tables there is nothing to carry, and the rest of the
/// patch is as always.
#[test]
fn no_unwind_tables_no_kpatch_eh_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (_, patch) = build(
        dir.path(),
        "gcc",
        ("foo.c", "bar.c"),
        &["-fno-asynchronous-unwind-tables"],
    );
    let f = object::File::parse(&*patch).unwrap();
    assert!(f.section_by_name(".kpatch.eh_frame").is_none());
    assert!(f.section_by_name(".rela.kpatch.eh_frame").is_none());
    let eh = f
        .section_by_name(".eh_frame")
        .expect("crt files' .eh_frame");
    assert_eq!(eh.kind(), object::SectionKind::UninitializedData);
}

/// The address a symbol of the finished patch gets in `placement`.
fn placed(patch: &[u8], at: &[u64], name: &str) -> u64 {
    let f = ElfFile64::<LE>::parse(patch).unwrap();
    let s = f
        .symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("{name} in the patch"));
    at[s.section_index().unwrap().0] + s.address()
}

fn section_range(patch: &[u8], at: &[u64], name: &str) -> std::ops::Range<u64> {
    let f = object::File::parse(patch).unwrap();
    let s = f.section_by_name(name).unwrap();
    at[s.index().0]..at[s.index().0] + s.size()
}

/// try/catch in a C++ member function (PIE): the personality is reached
/// through the original's `DW.ref.__gxx_personality_v0`, the LSDA is the
/// patch's own copy in `.kpatch.rodata` (read-only, like the original).
#[test]
fn cxx_try_catch_pie() {
    for cflags in [&[][..], &["-O2", "-g"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let (linked, patch) = build(
            dir.path(),
            "g++",
            ("greeter_foo.cpp", "greeter_bar.cpp"),
            cflags,
        );
        let cfi = check_cfi(dir.path(), &linked, &patch);
        let at = placement(&patch);
        let dw_ref = placed(&patch, &at, "DW.ref.__gxx_personality_v0");
        assert_eq!(cfi.personalities, vec![Pointer::Indirect(dw_ref)]);
        let data = section_range(&patch, &at, ".kpatch.rodata");
        assert!(!cfi.lsdas.is_empty());
        for lsda in &cfi.lsdas {
            assert!(data.contains(lsda), "LSDA {lsda:#x} outside {data:x?}");
        }
    }
}

/// `-no-pie` C++ writes 32-bit absolute personality and LSDA pointers; the
/// patch gets PC-relative ones, the personality through a jump table slot
/// (`__gxx_personality_v0` lives in libstdc++, out of 32-bit reach).
#[test]
fn cxx_cleanup_no_pie_is_made_position_independent() {
    for cflags in [
        &["-fno-pie", "-no-pie"][..],
        &["-O2", "-fno-pie", "-no-pie"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (linked, patch) = build(
            dir.path(),
            "g++",
            ("cleanup_foo.cpp", "cleanup_bar.cpp"),
            cflags,
        );
        // The link really used absolute forms.
        let f = ElfFile64::<LE>::parse(&*linked).unwrap();
        let eh = f.section_by_name(".eh_frame").unwrap();
        assert!(
            eh.relocations().any(|(_, r)| matches!(
                r.flags(),
                object::RelocationFlags::Elf {
                    r_type: elf::R_X86_64_32
                }
            )),
            "{cflags:?}: no absolute pointer in the linked .eh_frame"
        );
        let cfi = check_cfi(dir.path(), &linked, &patch);
        let slot = cfi
            .slots
            .iter()
            .find(|(n, _)| n.starts_with("__gxx_personality_v0"));
        let (_, &slot) = slot.expect("personality reached through a slot");
        assert_eq!(cfi.personalities, vec![Pointer::Indirect(slot)]);
        let at = placement(&patch);
        let data = section_range(&patch, &at, ".kpatch.rodata");
        assert!(!cfi.lsdas.is_empty());
        for lsda in &cfi.lsdas {
            assert!(data.contains(lsda), "LSDA {lsda:#x} outside {data:x?}");
        }
    }
}

/// A C++ shared library: the same contract as PIE.
#[test]
fn cxx_try_catch_shared_library() {
    let dir = tempfile::tempdir().unwrap();
    let (linked, patch) = build(
        dir.path(),
        "g++",
        ("greeter_foo.cpp", "greeter_bar.cpp"),
        &["-fPIC", "-shared"],
    );
    let cfi = check_cfi(dir.path(), &linked, &patch);
    assert_eq!(cfi.personalities.len(), 1);
}
