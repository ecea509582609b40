//! The seed's "Manual Patch Creation" recipe, run with the real gcc and
//! binutils in each build the project supports, checked with an independent
//! reader against docs/patch-object.md section 3.

mod support;

use object::elf;
use support::*;

const FUNC: &str = "i_m_being_patched";

/// Builds the seed's foo/bar example with `cflags` (compile) and
/// `link_flags`, and returns the recipe's outputs.
fn seed_example(dir: &std::path::Path, cflags: &[&str], link_flags: &[&str], lib: bool) -> Built {
    let (a, b) = if lib {
        ("libfoo.c", "libbar.c")
    } else {
        ("foo.c", "bar.c")
    };
    let orig = compile_s(dir, &fixture(a), cflags, "foo.s");
    let patched = compile_s(dir, &fixture(b), cflags, "bar.s");
    std::fs::write(dir.join("foobar.s"), augment(&orig, &patched, FUNC)).unwrap();
    recipe(dir, link_flags, "foo.s", "foobar.s", "foo")
}

fn check_seed_build(cflags: &[&str], link_flags: &[&str], lib: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<&str> = cflags.to_vec();
    all.extend_from_slice(link_flags);
    let built = seed_example(dir.path(), cflags, &all, lib);
    let orig = std::fs::read(&built.orig).unwrap();
    let patch = std::fs::read(&built.patch).unwrap();
    assert_readelf_clean(&built.patch);
    let relocs = check_contract(&patch);
    assert_info_targets(&relocs, &orig, &patch, FUNC);
    assert_targets_preserved(&std::fs::read(&built.linked).unwrap(), &patch);
    // The new body calls printf: through the jump table, so PC32, never PLT32.
    let printf = relocs
        .iter()
        .find(|r| r.symbol.starts_with("printf"))
        .expect("printf relocation");
    assert_eq!(printf.r_type, elf::R_X86_64_PC32, "{printf:?}");
    assert_eq!(printf.symbol_section, None);
    // Both new strings are reached in .kpatch.data.
    assert!(
        relocs
            .iter()
            .filter(|r| r.section == ".kpatch.text" && r.symbol == ".kpatch.data")
            .count()
            >= 2,
        "{relocs:?}"
    );
    // kpatch_make's gate accepts it and the BuildID is the original's.
    elfpatch::check_patch_elf(&patch).unwrap();
    let id = elfpatch::build_id(&orig).expect("BuildID");
    let readelf = run(dir.path(), "readelf", &["-n", built.orig.to_str().unwrap()]);
    assert!(readelf.contains(&format!("Build ID: {id}")), "{readelf}");
}

#[test]
fn seed_example_pie_o0() {
    check_seed_build(&[], &[], false);
}

#[test]
fn seed_example_no_pie_o0() {
    check_seed_build(&["-fno-pie"], &["-no-pie"], false);
}

#[test]
fn seed_example_pie_o2_g() {
    check_seed_build(&["-O2", "-g"], &[], false);
}

#[test]
fn seed_example_no_pie_o2_g() {
    check_seed_build(&["-O2", "-g", "-fno-pie"], &["-no-pie"], false);
}

#[test]
fn seed_example_shared_library() {
    check_seed_build(&["-fPIC"], &["-shared"], true);
}

#[test]
fn seed_example_shared_library_o2_g() {
    check_seed_build(&["-O2", "-g", "-fPIC"], &["-shared"], true);
}

/// References to the original's data through the GOT, as
/// `kpatch_gensrc --force-gotpcrel` writes them, end up direct and
/// consistent with the instruction bytes in every link mode.
fn check_gotpcrel(link_flags: &[&str]) -> Vec<Reloc> {
    let dir = tempfile::tempdir().unwrap();
    for f in ["gotpcrel_orig.s", "gotpcrel_patched.s"] {
        std::fs::copy(fixture(f), dir.path().join(f)).unwrap();
    }
    let built = recipe(
        dir.path(),
        link_flags,
        "gotpcrel_orig.s",
        "gotpcrel_patched.s",
        "g",
    );
    let orig = std::fs::read(&built.orig).unwrap();
    let patch = std::fs::read(&built.patch).unwrap();
    assert_readelf_clean(&built.patch);
    let relocs = check_contract(&patch);
    assert_info_targets(&relocs, &orig, &patch, FUNC);
    assert_targets_preserved(&std::fs::read(&built.linked).unwrap(), &patch);
    let text = kpatch_text(&patch);
    for r in relocs.iter().filter(|r| r.section == ".kpatch.text") {
        let at = r.offset as usize;
        match r.r_type {
            // A RIP-relative operand: the instruction must be lea, never a
            // load that would dereference the variable as a GOT slot.
            elf::R_X86_64_PC32
                if r.symbol_section.is_some() && !r.symbol.starts_with(".kpatch") =>
            {
                assert_eq!(
                    text[at - 2],
                    0x8d,
                    "not a lea at {r:?}: {:02x?}",
                    &text[at - 3..at]
                );
            }
            // ld's own non-PIE relaxation: mov $imm32, %reg.
            elf::R_X86_64_32S => assert_eq!(text[at - 2], 0xc7, "{r:?}"),
            _ => {}
        }
    }
    // The static `hidden` is reached through .data (its section symbol)
    // at its original offset.
    let (sec, off) = place_in(&orig, "hidden").unwrap();
    assert_eq!(sec, ".data");
    let hidden = relocs
        .iter()
        .find(|r| r.section == ".kpatch.text" && r.symbol == ".data")
        .expect("relocation against .data for `hidden`");
    let bias = if hidden.r_type == elf::R_X86_64_PC32 {
        -4
    } else {
        0
    };
    assert_eq!(hidden.addend - bias, off as i64, "{hidden:?}");
    relocs
}

fn kpatch_text(patch: &[u8]) -> Vec<u8> {
    use object::{Object, ObjectSection};
    let f = object::File::parse(patch).unwrap();
    f.section_by_name(".kpatch.text")
        .unwrap()
        .data()
        .unwrap()
        .to_vec()
}

#[test]
fn gotpcrel_to_original_data_pie() {
    let relocs = check_gotpcrel(&[]);
    let counter = relocs.iter().find(|r| r.symbol == "counter").unwrap();
    assert_eq!(counter.r_type, elf::R_X86_64_PC32);
}

#[test]
fn gotpcrel_to_original_data_no_pie() {
    let relocs = check_gotpcrel(&["-no-pie"]);
    let counter = relocs.iter().find(|r| r.symbol == "counter").unwrap();
    assert_eq!(counter.r_type, elf::R_X86_64_32S);
}

/// In a shared library ld leaves `counter` (preemptible) as
/// REX_GOTPCRELX with a mov: rel-fixup must turn both type and opcode.
#[test]
fn gotpcrel_to_original_data_shared_is_relaxed_by_rel_fixup() {
    let relocs = check_gotpcrel(&["-shared"]);
    let counter = relocs.iter().find(|r| r.symbol == "counter").unwrap();
    assert_eq!(counter.r_type, elf::R_X86_64_PC32);
}
