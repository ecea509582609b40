//! Shared pieces of the elfpatch integration tests: running the real
//! toolchain, a tiny stand-in for kpatch_gensrc that handles exactly the
//! seed's example (one changed function, new string literals), and a reader
//! that checks a patch ELF against docs/patch-object.md section 3.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, Rela, SectionHeader, Sym};
use object::{LittleEndian as LE, Object, ObjectSection, ObjectSymbol};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs a command in `dir`, panicking with its stderr when it fails.
pub fn run(dir: &Path, prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gcc -S` of a C file into `dir/out`.
pub fn compile_s(dir: &Path, src: &Path, flags: &[&str], out: &str) -> String {
    let mut args: Vec<&str> = flags.to_vec();
    let src = src.to_str().unwrap();
    args.extend(["-S", src, "-o", out]);
    run(dir, "gcc", &args);
    std::fs::read_to_string(dir.join(out)).unwrap()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Renames `.L*` labels and `func` in one line of assembly.
fn rename_line(line: &str, func: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_ident(chars[i]) && (i == 0 || !is_ident(chars[i - 1])) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word == func || (word.starts_with(".L") && word.len() > 2) {
                out.push_str(&word);
                out.push_str(".kpatch");
            } else {
                out.push_str(&word);
            }
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn first_word(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

fn is_size_of(line: &str, func: &str) -> bool {
    first_word(line) == ".size" && line.contains(&format!("{func},"))
}

/// Builds augmented assembly from the original and patched `gcc -S`
/// outputs for one changed function, in the layout of
/// docs/patch-object.md section 1. A test stand-in for kpatch_gensrc.
pub fn augment(orig: &str, patched: &str, func: &str) -> String {
    let lines: Vec<&str> = patched.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("{func}:"))
        .expect("function label in patched");
    let end = start
        + lines[start..]
            .iter()
            .position(|l| is_size_of(l, func))
            .expect(".size in patched");
    let body: Vec<String> = lines[start..=end]
        .iter()
        .filter(|l| !matches!(first_word(l), ".loc" | ".file" | ".size"))
        .map(|l| rename_line(l, func))
        .collect();
    // String literals the new body uses, renamed like the body.
    let mut data = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if t.starts_with(".LC") && t.ends_with(':') {
            let label = &t[..t.len() - 1];
            if !body.iter().any(|b| b.contains(&format!("{label}.kpatch"))) {
                continue;
            }
            data.push(rename_line(t, func));
            for d in &lines[i + 1..] {
                if matches!(first_word(d), ".string" | ".ascii") {
                    data.push(d.to_string());
                } else {
                    break;
                }
            }
        }
    }
    let k = format!("{func}.kpatch");
    let mut out = String::new();
    let mut done = false;
    for l in orig.lines() {
        out.push_str(l);
        out.push('\n');
        if !done && is_size_of(l, func) {
            done = true;
            out.push_str(&format!("{func}.Lfe:\n"));
            out.push_str("\t.pushsection .kpatch.text,\"ax\",@progbits\n");
            out.push_str(&format!("\t.globl {k}\n\t.type {k}, @function\n"));
            for b in &body {
                out.push_str(b);
                out.push('\n');
            }
            out.push_str(&format!("\t.size {k}, .-{k}\n{k}_end:\n\t.popsection\n"));
            out.push_str("\t.pushsection .kpatch.strtab,\"a\",@progbits\nkpatch_strtab1:\n");
            out.push_str(&format!("\t.string \"{k}\"\n\t.popsection\n"));
            out.push_str("\t.pushsection .kpatch.info,\"aw\",@progbits\n");
            out.push_str(&format!(
                "\t.quad {func}\n\t.quad {k}\n\t.long {func}.Lfe - {func}\n\t.long {k}_end - {k}\n\t.quad kpatch_strtab1\n\t.quad 0\n\t.long 0\n\t.long 0\n\t.popsection\n"
            ));
            out.push_str("\t.pushsection .kpatch.data,\"aw\",@progbits\n");
            for d in &data {
                out.push_str(d);
                out.push('\n');
            }
            out.push_str("\t.popsection\n");
        }
    }
    assert!(done, "{func} not found in the original");
    out
}

/// One build of the recipe: the original binary and the finished patch ELF.
pub struct Built {
    pub orig: PathBuf,
    pub linked: PathBuf,
    pub patch: PathBuf,
}

/// Links `orig.s` and `foobar.s` (already in `dir`) with `link_flags`, and
/// runs the recipe through the library, with binutils strip in the middle.
pub fn recipe(dir: &Path, link_flags: &[&str], orig_s: &str, aug_s: &str, out: &str) -> Built {
    recipe_cc(dir, "gcc", link_flags, orig_s, aug_s, out)
}

/// [`recipe`] with another compiler driver for the links (`g++`).
pub fn recipe_cc(
    dir: &Path,
    cc: &str,
    link_flags: &[&str],
    orig_s: &str,
    aug_s: &str,
    out: &str,
) -> Built {
    let orig = dir.join(format!("{out}.orig"));
    let linked = dir.join(format!("{out}.linked"));
    let patch = dir.join(format!("{out}.patch"));
    let mut a = vec!["-o", orig.to_str().unwrap(), orig_s];
    a.extend_from_slice(link_flags);
    run(dir, cc, &a);
    let mut a = vec!["-o", linked.to_str().unwrap(), aug_s, "-Wl,-q"];
    a.extend_from_slice(link_flags);
    run(dir, cc, &a);

    let stripped = elfpatch::strip(&std::fs::read(&linked).unwrap()).unwrap();
    std::fs::write(&patch, &stripped).unwrap();
    assert_readelf_clean(&patch);
    let mut bytes = std::fs::read(&patch).unwrap();
    elfpatch::rel_fixup(&std::fs::read(&orig).unwrap(), &mut bytes).unwrap();
    std::fs::write(&patch, &bytes).unwrap();
    run(dir, "strip", &["--strip-unneeded", patch.to_str().unwrap()]);
    let mut bytes = std::fs::read(&patch).unwrap();
    elfpatch::undo_link(&mut bytes, Some(&std::fs::read(&orig).unwrap())).unwrap();
    std::fs::write(&patch, &bytes).unwrap();
    Built {
        orig,
        linked,
        patch,
    }
}

/// `readelf -a` must accept the file without a warning or error.
pub fn assert_readelf_clean(path: &Path) {
    let out = Command::new("readelf")
        .args(["-a", "-W", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "readelf failed: {stderr}");
    assert!(
        stderr.trim().is_empty() && !stdout.contains("Warning") && !stdout.contains("Error"),
        "readelf complains about {}:\n{stderr}",
        path.display()
    );
}

/// Where a symbol sits: section name and offset in it.
pub fn place_in(data: &[u8], name: &str) -> Option<(String, u64)> {
    let f = ElfFile64::<LE>::parse(data).unwrap();
    let s = f.symbols().find(|s| s.name() == Ok(name))?;
    let sec = f.section_by_index(s.section_index()?).ok()?;
    Some((sec.name().unwrap().to_string(), s.address() - sec.address()))
}

/// A relocation of the patch, resolved to names.
#[derive(Debug, Clone)]
pub struct Reloc {
    pub section: String,
    pub offset: u64,
    pub r_type: u32,
    pub symbol: String,
    pub symbol_section: Option<String>,
    pub symbol_value: u64,
    pub addend: i64,
}

/// Checks the contract of docs/patch-object.md section 3 with the object
/// crate's reader (independent of elfpatch's own) and returns the
/// relocations of `.rela.kpatch.*`.
pub fn check_contract(data: &[u8]) -> Vec<Reloc> {
    let f = ElfFile64::<LE>::parse(data).expect("patch ELF parses");
    let e = LE;
    let hdr = f.elf_header();
    assert_eq!(hdr.e_machine(e), elf::EM_X86_64);
    let sections = hdr.sections(e, data).unwrap();
    let name_of = |i: usize| -> String {
        let sh = sections.section(object::SectionIndex(i)).unwrap();
        String::from_utf8_lossy(sections.section_name(e, sh).unwrap()).into_owned()
    };
    let mut kpatch = 0;
    for (i, sh) in sections.iter().enumerate().skip(1) {
        let name = name_of(i);
        // The patch's own sections are placed by the loader; the others
        // may carry the original's address (for LibCare's loader).
        if name.starts_with(".kpatch") || sh.sh_flags(e) & u64::from(elf::SHF_ALLOC) == 0 {
            assert_eq!(sh.sh_addr(e), 0, "{name} has an address");
        }
        let has_bytes = sh.sh_type(e) != elf::SHT_NOBITS && sh.sh_size(e) != 0;
        let may = name.starts_with(".kpatch.")
            || name.starts_with(".rela.kpatch.")
            || [".symtab", ".strtab", ".shstrtab"].contains(&name.as_str());
        assert!(!has_bytes || may, "{name} carries bytes");
        if name.starts_with(".kpatch.") {
            kpatch += 1;
        }
    }
    assert!(kpatch >= 3, "kpatch sections missing");
    let symtab = sections.symbols(e, data, elf::SHT_SYMTAB).unwrap();
    let mut relocs = Vec::new();
    for (i, sh) in sections.iter().enumerate() {
        if sh.sh_type(e) != elf::SHT_RELA {
            continue;
        }
        let name = name_of(i);
        assert!(
            name.starts_with(".rela.kpatch."),
            "stray RELA section {name}"
        );
        let target = sh.sh_info(e) as usize;
        let target_sh = sections.section(object::SectionIndex(target)).unwrap();
        for r in sh.data_as_array::<elf::Rela64<LE>, _>(e, data).unwrap() {
            let r_type = r.r_type(e, false);
            let sym_idx = r.r_sym(e, false);
            let sym = symtab
                .symbol(object::SymbolIndex(sym_idx as usize))
                .unwrap();
            let symbol_section = (sym.st_shndx(e) != 0 && sym.st_shndx(e) < elf::SHN_LORESERVE)
                .then(|| name_of(usize::from(sym.st_shndx(e))));
            let symbol = if sym.st_type() == elf::STT_SECTION {
                symbol_section.clone().unwrap()
            } else {
                String::from_utf8_lossy(symtab.symbol_name(e, sym).unwrap()).into_owned()
            };
            let rel = Reloc {
                section: name_of(target),
                offset: r.r_offset(e),
                r_type,
                symbol,
                symbol_section,
                symbol_value: sym.st_value(e),
                addend: r.r_addend(e),
            };
            // NONE only where --rel-fixup checked a thread-pointer offset
            // against the original and left the linker's value in place.
            let tls_checked = r_type == elf::R_X86_64_NONE && sym.st_type() == elf::STT_TLS;
            assert!(
                kpatch_file::reloc::in_patch(r_type)
                    && (r_type != elf::R_X86_64_NONE || tls_checked),
                "disallowed relocation {rel:?}"
            );
            if matches!(
                r_type,
                elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX
            ) {
                assert!(
                    rel.symbol_section.is_none(),
                    "GOT form left on a defined symbol {rel:?}"
                );
            }
            assert!(
                rel.offset + 4 <= target_sh.sh_size(e),
                "r_offset outside its section: {rel:?}"
            );
            relocs.push(rel);
        }
    }
    relocs
}

/// The `.kpatch.info` relocations must name the original function (or its
/// section plus its offset there) and the new one.
pub fn assert_info_targets(relocs: &[Reloc], orig: &[u8], patch: &[u8], func: &str) {
    let info: Vec<&Reloc> = relocs
        .iter()
        .filter(|r| r.section == ".kpatch.info")
        .collect();
    let daddr = info
        .iter()
        .find(|r| r.offset == 0)
        .expect("daddr relocation");
    let saddr = info
        .iter()
        .find(|r| r.offset == 8)
        .expect("saddr relocation");
    let (orig_sec, orig_off) = place_in(orig, func).expect("function in original");
    let section = daddr.symbol_section.clone().expect("daddr symbol defined");
    assert_eq!(section, orig_sec, "{daddr:?}");
    let off = daddr.symbol_value as i64 + daddr.addend;
    assert_eq!(
        off as u64, orig_off,
        "daddr does not point at {func}: {daddr:?}"
    );
    assert!(
        daddr.symbol == func || daddr.symbol == orig_sec,
        "{daddr:?}"
    );
    let k = format!("{func}.kpatch");
    assert_eq!(saddr.symbol, k);
    // On disk: zeros where relocations write, lengths in place.
    let info = section_bytes(patch, ".kpatch.info");
    for r in &info_relocs(relocs) {
        assert!(
            info[r.offset as usize..r.offset as usize + 8]
                .iter()
                .all(|&b| b == 0),
            "{r:?}"
        );
    }
    let dlen = u32::from_le_bytes(info[16..20].try_into().unwrap());
    let slen = u32::from_le_bytes(info[20..24].try_into().unwrap());
    assert_eq!(u64::from(dlen), symbol_size(orig, func), "dlen");
    assert_eq!(u64::from(slen), symbol_size(patch, &k), "slen");
    assert_eq!(saddr.symbol_section.as_deref(), Some(".kpatch.text"));
    assert_eq!(place_in(patch, &k), Some((".kpatch.text".into(), 0)));
}

fn info_relocs(relocs: &[Reloc]) -> Vec<&Reloc> {
    relocs
        .iter()
        .filter(|r| r.section == ".kpatch.info")
        .collect()
}

pub fn section_bytes(data: &[u8], name: &str) -> Vec<u8> {
    let f = object::File::parse(data).unwrap();
    f.section_by_name(name).unwrap().data().unwrap().to_vec()
}

pub fn symbol_size(data: &[u8], name: &str) -> u64 {
    let f = ElfFile64::<LE>::parse(data).unwrap();
    f.symbols().find(|s| s.name() == Ok(name)).unwrap().size()
}

/// Every relocation of the finished patch against a defined symbol must
/// still point where the linker pointed it in the linked binary: with the
/// symbol's section placed at its linked address, S + A of the patch's
/// relocation equals what the linked bytes encode. This catches wrong
/// addend rebasing (local symbols) and wrong r_offset/st_value arithmetic
/// (undo-link).
pub fn assert_targets_preserved(linked: &[u8], patch: &[u8]) {
    let f = ElfFile64::<LE>::parse(linked).unwrap();
    let section = |name: &str| {
        let s = f
            .section_by_name(name)
            .unwrap_or_else(|| panic!("{name} in linked"));
        (s.address(), s.file_range().map(|(o, _)| o))
    };
    // Relocation types the linker itself left at each place.
    let mut linked_types = std::collections::HashMap::new();
    for s in f.sections() {
        for (off, r) in s.relocations() {
            if let object::RelocationFlags::Elf { r_type } = r.flags() {
                linked_types.insert(off, r_type);
            }
        }
    }
    let mut checked = 0;
    for r in check_contract(patch) {
        let Some(sym_sec) = &r.symbol_section else {
            continue;
        };
        if r.section == elfpatch::KPATCH_EH_FRAME {
            continue; // its records moved; tests/unwind_info.rs checks them
        }
        let (target_addr, Some(target_off)) = section(&r.section) else {
            continue;
        };
        let p = target_addr + r.offset;
        let linked_type = linked_types.get(&p).copied();
        if !matches!(
            linked_type,
            Some(elf::R_X86_64_PC32 | elf::R_X86_64_32 | elf::R_X86_64_32S | elf::R_X86_64_64)
        ) {
            continue; // relaxed from a GOT form by us, or not ours to check
        }
        let at = (target_off + r.offset) as usize;
        let s_plus_a = (section(sym_sec).0 + r.symbol_value).wrapping_add(r.addend as u64);
        let encoded = match r.r_type {
            elf::R_X86_64_PC32 => {
                let d = i32::from_le_bytes(linked[at..at + 4].try_into().unwrap());
                p.wrapping_add(d as i64 as u64)
            }
            elf::R_X86_64_32S => {
                i32::from_le_bytes(linked[at..at + 4].try_into().unwrap()) as i64 as u64
            }
            elf::R_X86_64_32 => {
                u64::from(u32::from_le_bytes(linked[at..at + 4].try_into().unwrap()))
            }
            elf::R_X86_64_64 => {
                let v = u64::from_le_bytes(linked[at..at + 8].try_into().unwrap());
                if v == 0 {
                    continue; // left for the dynamic linker (-shared)
                }
                v
            }
            _ => continue,
        };
        assert_eq!(
            encoded, s_plus_a,
            "relocation no longer points where ld pointed it: {r:?}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} relocations checked");
}
