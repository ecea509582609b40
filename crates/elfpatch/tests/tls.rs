//! Thread-local variables in a patch: local-exec references (TPOFF32) are
//! checked against the original's TLS layout, initial-exec references to
//! another object's variable (GOTTPOFF) get the address of the original's
//! GOT slot in r_addend, as the seed describes.

mod support;

use object::LittleEndian as LE;
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, Rela, SectionHeader};
use support::*;

const FUNC: &str = "i_m_being_patched";

/// GOT slot the original's dynamic linker fills with `name`'s TP offset.
fn tpoff64_slot(orig: &[u8], name: &str) -> u64 {
    let f = ElfFile64::<LE>::parse(orig).unwrap();
    let e = LE;
    let sections = f.elf_header().sections(e, orig).unwrap();
    let dynsym = sections.symbols(e, orig, elf::SHT_DYNSYM).unwrap();
    for sh in sections.iter() {
        if sh.sh_type(e) != elf::SHT_RELA || sh.sh_flags(e) & u64::from(elf::SHF_ALLOC) == 0 {
            continue;
        }
        for r in sh.data_as_array::<elf::Rela64<LE>, _>(e, orig).unwrap() {
            if r.r_type(e, false) != elf::R_X86_64_TPOFF64 {
                continue;
            }
            let sym = dynsym
                .symbol(object::SymbolIndex(r.r_sym(e, false) as usize))
                .unwrap();
            if dynsym.symbol_name(e, sym).unwrap() == name.as_bytes() {
                return r.r_offset(e);
            }
        }
    }
    panic!("no TPOFF64 for {name}");
}

fn build_tls(dir: &std::path::Path, cflags: &[&str], link: &[&str], orig_src: &str) -> Built {
    run(
        dir,
        "gcc",
        &[
            "-shared",
            "-fPIC",
            "-o",
            "libtls.so",
            fixture("tls_lib.c").to_str().unwrap(),
        ],
    );
    let orig = compile_s(dir, &fixture(orig_src), cflags, "foo.s");
    let patched = compile_s(dir, &fixture("tls_bar.c"), cflags, "bar.s");
    std::fs::write(dir.join("foobar.s"), augment(&orig, &patched, FUNC)).unwrap();
    let mut flags = link.to_vec();
    flags.push("libtls.so");
    recipe(dir, &flags, "foo.s", "foobar.s", "foo")
}

fn check_tls(cflags: &[&str], link: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let built = build_tls(dir.path(), cflags, link, "tls_foo.c");
    let orig = std::fs::read(&built.orig).unwrap();
    let patch = std::fs::read(&built.patch).unwrap();
    assert_readelf_clean(&built.patch);
    let relocs = check_contract(&patch);
    assert_info_targets(&relocs, &orig, &patch, FUNC);
    assert_targets_preserved(&std::fs::read(&built.linked).unwrap(), &patch);
    let local = relocs
        .iter()
        .find(|r| r.symbol == "tls_counter")
        .expect("tls_counter relocation");
    // Checked equal to the original's offset: the code keeps the linker's
    // value and nothing is left for the doctor (nor LibCare's loader).
    assert_eq!(local.r_type, elf::R_X86_64_NONE, "{local:?}");
    let ext = relocs
        .iter()
        .find(|r| r.symbol == "ext_tls")
        .expect("ext_tls relocation");
    assert_eq!(ext.r_type, elf::R_X86_64_GOTTPOFF, "{ext:?}");
    assert_eq!(ext.addend as u64, tpoff64_slot(&orig, "ext_tls"), "{ext:?}");
    // TLS symbols are section-relative too: tls_bss is the only variable
    // of .tbss, though the fourth byte (or more) of the TLS block.
    let bss = relocs
        .iter()
        .find(|r| r.symbol == "tls_bss")
        .expect("tls_bss relocation");
    assert_eq!(bss.r_type, elf::R_X86_64_NONE, "{bss:?}");
    assert_eq!(bss.symbol_section.as_deref(), Some(".tbss"), "{bss:?}");
    assert_eq!(bss.symbol_value, 0, "{bss:?}");
    assert_eq!(local.symbol_section.as_deref(), Some(".tdata"), "{local:?}");
    assert_eq!(local.symbol_value, 0, "{local:?}");
}

#[test]
fn tls_in_pie_executable() {
    check_tls(&[], &[]);
}

#[test]
fn tls_in_non_pie_executable() {
    check_tls(&["-fno-pie"], &["-no-pie"]);
}

/// The original keeps its TLS variable at a different thread-pointer
/// offset than the patched build: refused, naming the variable.
#[test]
fn tls_offset_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = std::fs::read_to_string(fixture("tls_foo.c")).unwrap();
    let moved = src.replace(
        "__thread int tls_counter = 3;",
        // TLS offsets count back from the end of the block: a variable
        // after tls_counter moves it.
        "__thread int tls_counter = 3;\n__thread int tls_after = 1;",
    );
    std::fs::write(d.join("tls_moved.c"), moved).unwrap();
    run(
        d,
        "gcc",
        &[
            "-shared",
            "-fPIC",
            "-o",
            "libtls.so",
            fixture("tls_lib.c").to_str().unwrap(),
        ],
    );
    let orig = compile_s(d, &fixture("tls_foo.c"), &[], "foo.s");
    let patched = compile_s(d, &fixture("tls_bar.c"), &[], "bar.s");
    std::fs::write(d.join("foobar.s"), augment(&orig, &patched, FUNC)).unwrap();
    run(d, "gcc", &["-o", "moved", "tls_moved.c", "libtls.so"]);
    run(
        d,
        "gcc",
        &["-o", "foobar", "foobar.s", "-Wl,-q", "libtls.so"],
    );
    let mut patch = elfpatch::strip(&std::fs::read(d.join("foobar")).unwrap()).unwrap();
    let before = patch.clone();
    let err = elfpatch::rel_fixup(&std::fs::read(d.join("moved")).unwrap(), &mut patch)
        .unwrap_err()
        .to_string();
    assert!(err.contains("TLS symbol tls_counter"), "{err}");
    assert_eq!(patch, before, "patch modified on error");
}

/// General-dynamic TLS (a shared library's own thread-locals) is beyond
/// what the doctor supports: refused by name instead of producing a patch
/// that would fail at apply time.
#[test]
fn general_dynamic_tls_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(
        d,
        "gcc",
        &[
            "-shared",
            "-fPIC",
            "-o",
            "libtls.so",
            fixture("tls_lib.c").to_str().unwrap(),
        ],
    );
    let orig = compile_s(d, &fixture("tls_foo.c"), &["-fPIC"], "foo.s");
    let patched = compile_s(d, &fixture("tls_bar.c"), &["-fPIC"], "bar.s");
    std::fs::write(d.join("foobar.s"), augment(&orig, &patched, FUNC)).unwrap();
    run(
        d,
        "gcc",
        &["-shared", "-o", "libfoo.so", "foo.s", "libtls.so"],
    );
    run(
        d,
        "gcc",
        &[
            "-shared",
            "-o",
            "libfoobar.so",
            "foobar.s",
            "-Wl,-q",
            "libtls.so",
        ],
    );
    let mut patch = elfpatch::strip(&std::fs::read(d.join("libfoobar.so")).unwrap()).unwrap();
    let err = elfpatch::rel_fixup(&std::fs::read(d.join("libfoo.so")).unwrap(), &mut patch)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("R_X86_64_TLSGD") && err.contains("not supported"),
        "{err}"
    );
    assert!(err.contains(".kpatch.text+0x"), "{err}");
}
