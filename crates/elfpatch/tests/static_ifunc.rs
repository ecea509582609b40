//! A static executable: its libc's IFUNCs (`strlen`) are local symbols,
//! called only through `.plt` stubs that jump through slots filled by
//! `R_X86_64_IRELATIVE`. A patch call to one goes to the original's stub.

mod support;

use support::*;

const ORIG: &str = "#include <string.h>\n\
    __attribute__((noipa)) unsigned long len(const char *s) { return strlen(s); }\n\
    int main(int argc, char **argv) { return (int)len(argv[argc - 1]); }\n";
const PATCHED: &str = "#include <string.h>\n\
    __attribute__((noipa)) unsigned long len(const char *s) { return strlen(s) * 10; }\n\
    int main(int argc, char **argv) { return (int)len(argv[argc - 1]); }\n";

#[test]
fn static_ifunc_call_goes_through_the_originals_plt_stub() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("orig.c"), ORIG).unwrap();
    std::fs::write(d.join("patched.c"), PATCHED).unwrap();
    let orig = compile_s(d, &d.join("orig.c"), &["-O2"], "orig.s");
    let patched = compile_s(d, &d.join("patched.c"), &["-O2"], "patched.s");
    std::fs::write(d.join("aug.s"), augment(&orig, &patched, "len")).unwrap();
    let built = recipe(d, &["-static"], "orig.s", "aug.s", "s");

    let dump = elfpatch::dump(&std::fs::read(&built.patch).unwrap()).unwrap();
    let call = dump
        .lines()
        .find(|l| l.contains("R_X86_64_PC32 .plt"))
        .unwrap_or_else(|| panic!("no call through .plt in:\n{dump}"));
    let addend = i64::from_str_radix(
        call.rsplit(' ')
            .next()
            .unwrap()
            .trim_start_matches('+')
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    // The call's target (field + 4 + addend) is a `jmp *slot(%rip)` of
    // the original's `.plt`, and strlen's resolver fills that slot.
    let orig_bin = std::fs::read(&built.orig).unwrap();
    let plt = section_bytes(&orig_bin, ".plt");
    let at = (addend + 4) as usize;
    assert_eq!(&plt[at..at + 2], &[0xff, 0x25], "{call}");
    let objdump = run(
        d,
        "objdump",
        &["-d", "-j", ".plt", built.orig.to_str().unwrap()],
    );
    let relocs = run(d, "readelf", &["-rW", built.orig.to_str().unwrap()]);
    let syms = run(d, "readelf", &["-sW", built.orig.to_str().unwrap()]);
    let resolver = syms
        .lines()
        .find(|l| l.contains(" IFUNC ") && l.ends_with(" strlen"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("strlen IFUNC in the original");
    let resolver = resolver.trim_start_matches('0');
    assert!(
        relocs
            .lines()
            .any(|l| l.contains("R_X86_64_IRELATIVE") && l.trim_end().ends_with(resolver)),
        "no IRELATIVE for strlen's resolver {resolver}:\n{relocs}\n{objdump}"
    );
}

/// An IFUNC the original never links (`memrchr`) has no stub to go
/// through, and linking it into the patched build moves the original's
/// code: the sanity check refuses that, naming the section.
#[test]
fn static_patch_needing_libc_code_the_original_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let patched_src = PATCHED
        .replace(
            "#include <string.h>",
            "#define _GNU_SOURCE\n#include <string.h>",
        )
        .replace("strlen(s) * 10", "(unsigned long)(char *)memrchr(s, 0, 8)");
    std::fs::write(
        d.join("orig.c"),
        ORIG.replace("#include", "#define _GNU_SOURCE\n#include"),
    )
    .unwrap();
    std::fs::write(d.join("patched.c"), patched_src).unwrap();
    let orig = compile_s(d, &d.join("orig.c"), &["-O2"], "orig.s");
    let patched = compile_s(d, &d.join("patched.c"), &["-O2"], "patched.s");
    std::fs::write(d.join("aug.s"), augment(&orig, &patched, "len")).unwrap();
    run(d, "gcc", &["-static", "-o", "o", "orig.s"]);
    run(d, "gcc", &["-static", "-o", "k", "aug.s", "-Wl,-q"]);
    let mut patch = elfpatch::strip(&std::fs::read(d.join("k")).unwrap()).unwrap();
    let e = elfpatch::rel_fixup(&std::fs::read(d.join("o")).unwrap(), &mut patch)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("section .text") && e.contains("in the patched build"),
        "{e}"
    );
}
