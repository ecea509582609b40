//! `--strip` alone: indices, names, sizes, flags and alignment of every
//! section survive, only the kept sections carry bytes, the bytes are the
//! linked ones, and binutils accepts the result. Plus a golden dump of a
//! finished patch, so that any change in what reaches the doctor shows up
//! as a readable diff.

mod support;

use object::read::elf::{ElfFile64, FileHeader, SectionHeader};
use object::{LittleEndian as LE, elf};
use support::*;

fn linked_and_stripped(link: &[&str]) -> (tempfile::TempDir, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(fixture("gotpcrel_patched.s"), d.join("p.s")).unwrap();
    let mut args = vec!["-o", "foobar", "p.s", "-Wl,-q"];
    args.extend_from_slice(link);
    run(d, "gcc", &args);
    let linked = std::fs::read(d.join("foobar")).unwrap();
    let stripped = elfpatch::strip(&linked).unwrap();
    std::fs::write(d.join("foobar.stripped"), &stripped).unwrap();
    (dir, linked, stripped)
}

#[test]
fn strip_keeps_the_section_table_and_only_kpatch_bytes() {
    // `-static` brings glibc's own `.tdata` with its `.rela.tdata` between
    // `.tdata` and `.tbss`, which `strip` refused while it stayed a NOBITS
    // section ("TLS sections are not adjacent").
    for link in [
        &[][..],
        &["-no-pie"][..],
        &["-shared"][..],
        &["-static"][..],
    ] {
        let (dir, linked, stripped) = linked_and_stripped(link);
        let e = LE;
        let a = ElfFile64::<LE>::parse(&*linked).unwrap();
        let b = ElfFile64::<LE>::parse(&*stripped).unwrap();
        let sa = a.elf_header().sections(e, &*linked).unwrap();
        let sb = b.elf_header().sections(e, &*stripped).unwrap();
        assert_eq!(sa.len(), sb.len());
        assert_eq!(b.elf_header().e_phnum(e), 0);
        assert!(
            stripped.len() < linked.len() / 2,
            "{} vs {}",
            stripped.len(),
            linked.len()
        );
        for (x, y) in sa.iter().zip(sb.iter()).skip(1) {
            let name = String::from_utf8_lossy(sa.section_name(e, x).unwrap()).into_owned();
            let new_name = sb.section_name(e, y).unwrap();
            // The patch code's CFI takes over `.eh_frame`'s slot
            // (tests/unwind_info.rs checks its contents).
            if new_name == elfpatch::KPATCH_EH_FRAME.as_bytes()
                || new_name == elfpatch::KPATCH_RELA_EH_FRAME.as_bytes()
            {
                assert!(name == ".eh_frame" || name == ".rela.eh_frame", "{name}");
                assert!(y.sh_size(e) < x.sh_size(e), "{name}");
                continue;
            }
            assert_eq!(new_name, name.as_bytes());
            if name == ".shstrtab" {
                continue; // the two new names are appended
            }
            // `ld -q`'s relocations of sections outside the patch are
            // emptied out of the section order.
            if name.starts_with(".rel")
                && !elfpatch::keeps_bytes(&name)
                && x.sh_flags(e) & u64::from(elf::SHF_ALLOC) == 0
            {
                assert_eq!(y.sh_type(e), elf::SHT_NULL, "{name}");
                assert_eq!(y.sh_size(e), 0, "{name}");
                assert_eq!(y.sh_flags(e), 0, "{name}");
                continue;
            }
            if name == ".kpatch.info" {
                // The end-of-list marker LibCare's reader wants.
                let (a, b) = (x.data(e, &*linked).unwrap(), y.data(e, &*stripped).unwrap());
                assert_eq!(b.len(), a.len() + 24, "{name}");
                assert_eq!(&b[..a.len()], a, "{name}");
                assert!(b[a.len()..].iter().all(|&z| z == 0), "{name}");
                continue;
            }
            assert_eq!(x.sh_size(e), y.sh_size(e), "{name}");
            assert_eq!(x.sh_flags(e), y.sh_flags(e), "{name}");
            assert_eq!(x.sh_addralign(e), y.sh_addralign(e), "{name}");
            assert_eq!(x.sh_addr(e), y.sh_addr(e), "{name}");
            if elfpatch::keeps_bytes(&name) {
                assert_eq!(x.sh_type(e), y.sh_type(e), "{name}");
                assert_eq!(
                    x.data(e, &*linked).unwrap(),
                    y.data(e, &*stripped).unwrap(),
                    "{name}"
                );
            } else {
                assert_eq!(y.sh_type(e), elf::SHT_NOBITS, "{name}");
            }
        }
        assert_readelf_clean(&dir.path().join("foobar.stripped"));
        // binutils accepts it as input.
        let d = dir.path();
        run(
            d,
            "strip",
            &["--strip-unneeded", "-o", "s2", "foobar.stripped"],
        );
        run(d, "objcopy", &["foobar.stripped", "o2"]);
    }
}

/// Sections with bytes, all symbols and the patch's relocations of the
/// finished gotpcrel fixture (PIE), against a checked-in golden text.
/// Regenerate with `UPDATE_GOLDEN=1 cargo test -p elfpatch --test strip_layout`.
#[test]
fn golden_dump_of_finished_patch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["gotpcrel_orig.s", "gotpcrel_patched.s"] {
        std::fs::copy(fixture(f), d.join(f)).unwrap();
    }
    let built = recipe(d, &[], "gotpcrel_orig.s", "gotpcrel_patched.s", "g");
    let dump = elfpatch::dump(&std::fs::read(&built.patch).unwrap()).unwrap();
    let text: String = dump
        .lines()
        .filter(|l| !l.contains(" NOBITS "))
        .map(|l| format!("{l}\n"))
        .collect();
    let golden = fixture("gotpcrel_pie.dump");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(text, want, "dump differs from {}", golden.display());
}
