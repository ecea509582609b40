//! Wrong inputs are refused with a reason that names what is wrong, and
//! the input handed in for in-place editing is left as it was.

mod support;

use std::path::Path;

use elfpatch::{Error, FixupError};
use support::*;

/// A temp dir holding the gotpcrel fixture's original and linked patch
/// binaries (PIE), plus `foo.nq`: the patch linked without `-Wl,-q`.
fn built() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["gotpcrel_orig.s", "gotpcrel_patched.s"] {
        std::fs::copy(fixture(f), d.join(f)).unwrap();
    }
    run(d, "gcc", &["-o", "foo", "gotpcrel_orig.s"]);
    run(d, "gcc", &["-o", "foobar", "gotpcrel_patched.s", "-Wl,-q"]);
    run(d, "gcc", &["-o", "foo.nq", "gotpcrel_patched.s"]);
    dir
}

fn read(d: &Path, f: &str) -> Vec<u8> {
    std::fs::read(d.join(f)).unwrap()
}

#[test]
fn strip_refuses_non_elf() {
    let e = elfpatch::strip(b"#!/bin/sh\necho hi\n").unwrap_err();
    assert!(matches!(e, Error::NotElf(_)), "{e}");
    assert!(e.to_string().contains("not an ELF file"), "{e}");
    assert!(matches!(elfpatch::strip(b""), Err(Error::NotElf(_))));
}

#[test]
fn strip_refuses_other_classes_and_machines() {
    let dir = built();
    let good = read(dir.path(), "foobar");
    let mut elf32 = good.clone();
    elf32[4] = 1; // ELFCLASS32
    let e = elfpatch::strip(&elf32).unwrap_err();
    assert!(
        e.to_string().contains("not an x86-64 little-endian ELF64"),
        "{e}"
    );
    let mut arm = good.clone();
    arm[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    assert!(matches!(
        elfpatch::strip(&arm),
        Err(Error::WrongKind { machine: 183, .. })
    ));
    let e = elfpatch::strip(&good[..40]).unwrap_err();
    assert!(matches!(e, Error::Malformed(_)), "{e}");
}

#[test]
fn strip_refuses_binary_without_kpatch_sections() {
    let dir = built();
    let e = elfpatch::strip(&read(dir.path(), "foo")).unwrap_err();
    assert!(matches!(e, Error::NoKpatchSections), "{e}");
    assert!(e.to_string().contains("no .kpatch.* sections"), "{e}");
}

#[test]
fn strip_says_when_the_link_lacked_q() {
    let dir = built();
    let e = elfpatch::strip(&read(dir.path(), "foo.nq")).unwrap_err();
    assert!(matches!(e, Error::NoKpatchRelocations), "{e}");
    assert!(e.to_string().contains("linked without -Wl,-q"), "{e}");
}

#[test]
fn rel_fixup_names_the_input_at_fault_and_leaves_patch_alone() {
    let dir = built();
    let d = dir.path();
    let mut patch = elfpatch::strip(&read(d, "foobar")).unwrap();
    let before = patch.clone();
    let e = elfpatch::rel_fixup(b"not elf", &mut patch).unwrap_err();
    assert!(matches!(e, FixupError::Original(Error::NotElf(_))), "{e}");
    let mut junk = b"junk".to_vec();
    let e = elfpatch::rel_fixup(&read(d, "foo"), &mut junk).unwrap_err();
    assert!(matches!(e, FixupError::Patch(Error::NotElf(_))), "{e}");
    let mut plain = read(d, "foo");
    let e = elfpatch::rel_fixup(&read(d, "foo"), &mut plain).unwrap_err();
    assert!(
        matches!(e, FixupError::Patch(Error::NoKpatchSections)),
        "{e}"
    );
    assert_eq!(patch, before);
}

#[test]
fn undo_link_refuses_non_patch_and_leaves_it_alone() {
    let dir = built();
    let mut foo = read(dir.path(), "foo");
    let before = foo.clone();
    assert!(matches!(
        elfpatch::undo_link(&mut foo, None),
        Err(Error::NoKpatchSections)
    ));
    assert_eq!(foo, before);
}

#[test]
fn kpatch_make_gate_wants_a_finished_patch() {
    let dir = built();
    let d = dir.path();
    let linked = read(d, "foobar");
    let e = elfpatch::check_patch_elf(&linked).unwrap_err();
    assert!(matches!(e, Error::NotStripped { .. }), "{e}");
    let stripped = elfpatch::strip(&linked).unwrap();
    let e = elfpatch::check_patch_elf(&stripped).unwrap_err();
    assert!(matches!(e, Error::StillLinked { .. }), "{e}");
    assert!(e.to_string().contains("--undo-link"), "{e}");
    let mut done = stripped.clone();
    elfpatch::rel_fixup(&read(d, "foo"), &mut done).unwrap();
    // Fixing up twice changes nothing.
    let mut twice = done.clone();
    elfpatch::rel_fixup(&read(d, "foo"), &mut twice).unwrap();
    assert_eq!(twice, done);
    elfpatch::undo_link(&mut done, Some(&read(d, "foo"))).unwrap();
    elfpatch::check_patch_elf(&done).unwrap();
    // Undoing twice changes nothing.
    let again = {
        let mut x = done.clone();
        elfpatch::undo_link(&mut x, Some(&read(d, "foo"))).unwrap();
        x
    };
    assert_eq!(again, done);
}

/// Builds an original from an edited copy of gotpcrel_orig.s and runs
/// rel-fixup of the real patch against it.
fn fixup_against(edit: impl Fn(&str) -> String) -> String {
    let dir = built();
    let d = dir.path();
    let src = std::fs::read_to_string(fixture("gotpcrel_orig.s")).unwrap();
    std::fs::write(d.join("other.s"), edit(&src)).unwrap();
    run(d, "gcc", &["-o", "other", "other.s"]);
    let mut patch = elfpatch::strip(&read(d, "foobar")).unwrap();
    let before = patch.clone();
    let e = elfpatch::rel_fixup(&read(d, "other"), &mut patch).unwrap_err();
    assert_eq!(patch, before, "patch modified on error");
    e.to_string()
}

/// The seed's sanity check: a variable the patch uses sits elsewhere in
/// the original (same section size, different order).
#[test]
fn sanity_check_refuses_moved_variable() {
    let e = fixup_against(|s| {
        // Swap the two .long values' labels: counter after hidden.
        s.replace("counter:\n\t.long\t5\n", "TMP_COUNTER\n")
            .replace(
                "hidden:\n\t.long\t7\n",
                "hidden:\n\t.long\t7\ncounter:\n\t.long\t5\n",
            )
            .replace("TMP_COUNTER\n", "")
    });
    assert!(e.contains("symbol counter"), "{e}");
    assert!(e.contains(".data+0x14") && e.contains(".data+0x10"), "{e}");
}

/// The patched function itself moved in .text.
#[test]
fn sanity_check_refuses_moved_function() {
    let e = fixup_against(|s| {
        let (head, rest) = s.split_once("\t.globl\ti_m_being_patched\n").unwrap();
        let (func, tail) = rest.split_once("\t.globl\tcounter\n").unwrap();
        let (data, main) = tail.split_once("\t.text\n\t.globl\tmain\n").unwrap();
        let (main, end) = main.split_once(".LFE1:\n\t.size\tmain, .-main\n").unwrap();
        format!(
            "{head}\t.globl\tmain\n{main}.LFE1:\n\t.size\tmain, .-main\n\t.globl\ti_m_being_patched\n{func}\t.globl\tcounter\n{data}{end}"
        )
    });
    assert!(e.contains("symbol i_m_being_patched"), "{e}");
}

#[test]
fn sanity_check_refuses_resized_section() {
    let e =
        fixup_against(|s| s.replace("hidden:\n\t.long\t7\n", "hidden:\n\t.long\t7\n\t.long\t8\n"));
    assert!(e.contains("section .data"), "{e}");
    assert!(e.contains("0x18") && e.contains("0x1c"), "{e}");
}

/// Same place, different size: the original's `counter` is another object.
#[test]
fn sanity_check_refuses_resized_variable() {
    let e = fixup_against(|s| s.replace("\t.size\tcounter, 4\n", "\t.size\tcounter, 2\n"));
    assert!(
        e.contains("symbol counter") && e.contains("(size 0x2)"),
        "{e}"
    );
}

/// A call from the patch to an IFUNC defined in the binary itself must not
/// land on the resolver: it goes to the `.plt` stub through which the
/// original calls it (its slot filled by `R_X86_64_IRELATIVE`). An IFUNC
/// the original never calls has no stub and is refused by name
/// (tests/static_ifunc.rs).
#[test]
fn local_ifunc_call_goes_through_the_originals_plt_stub() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let orig = compile_s(d, &fixture("ifunc_foo.c"), &[], "foo.s");
    let patched = compile_s(d, &fixture("ifunc_bar.c"), &[], "bar.s");
    std::fs::write(
        d.join("foobar.s"),
        augment(&orig, &patched, "i_m_being_patched"),
    )
    .unwrap();
    run(d, "gcc", &["-o", "foo", "foo.s"]);
    run(d, "gcc", &["-o", "foobar", "foobar.s", "-Wl,-q"]);
    let mut patch = elfpatch::strip(&read(d, "foobar")).unwrap();
    elfpatch::rel_fixup(&read(d, "foo"), &mut patch).unwrap();
    let dump = elfpatch::dump(&patch).unwrap();
    assert!(dump.contains("R_X86_64_PC32 .plt"), "{dump}");
    assert!(
        !dump
            .lines()
            .any(|l| l.starts_with("  0x") && l.contains(" chosen")),
        "{dump}"
    );
}
