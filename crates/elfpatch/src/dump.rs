//! A stable text form of a patch ELF: sections, symbols and relocations,
//! one per line, with names rather than raw indices where that reads better.
//! Used by `kpatch_strip --dump` and by tests that compare structure.

use std::fmt::Write;

use object::elf;

use crate::error::Result;
use crate::image::{Image, LE, Sym, rela_sym, rela_type, reloc_name, sym_bind, sym_type};

fn type_name(t: u32) -> String {
    match t {
        elf::SHT_NULL => "NULL".into(),
        elf::SHT_PROGBITS => "PROGBITS".into(),
        elf::SHT_SYMTAB => "SYMTAB".into(),
        elf::SHT_STRTAB => "STRTAB".into(),
        elf::SHT_RELA => "RELA".into(),
        elf::SHT_NOBITS => "NOBITS".into(),
        elf::SHT_NOTE => "NOTE".into(),
        elf::SHT_DYNSYM => "DYNSYM".into(),
        _ => format!("TYPE{t:#x}"),
    }
}

fn flag_letters(f: u64) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (elf::SHF_WRITE, 'W'),
        (elf::SHF_ALLOC, 'A'),
        (elf::SHF_EXECINSTR, 'X'),
        (elf::SHF_MERGE, 'M'),
        (elf::SHF_STRINGS, 'S'),
        (elf::SHF_INFO_LINK, 'I'),
        (elf::SHF_TLS, 'T'),
    ] {
        if f & u64::from(bit) != 0 {
            s.push(c);
        }
    }
    if s.is_empty() { "-".into() } else { s }
}

fn sym_type_name(t: u8) -> &'static str {
    match t {
        elf::STT_NOTYPE => "NOTYPE",
        elf::STT_OBJECT => "OBJECT",
        elf::STT_FUNC => "FUNC",
        elf::STT_SECTION => "SECTION",
        elf::STT_FILE => "FILE",
        elf::STT_TLS => "TLS",
        _ => "OTHER",
    }
}

fn bind_name(b: u8) -> &'static str {
    match b {
        elf::STB_LOCAL => "LOCAL",
        elf::STB_GLOBAL => "GLOBAL",
        elf::STB_WEAK => "WEAK",
        _ => "OTHER",
    }
}

/// Dumps a patch ELF. Fails only if the file is not an ELF64 x86-64 image.
pub fn dump(data: &[u8]) -> Result<String> {
    let img = Image::parse(data.to_vec())?;
    let mut out = String::new();
    let section_label = |i: usize| -> String {
        match i {
            0 => "UND".into(),
            i if i < img.sections.len() => img.name(i).to_string(),
            i => format!("#{i}"),
        }
    };
    let e_type = match img.header.e_type.get(LE) {
        elf::ET_REL => "REL",
        elf::ET_EXEC => "EXEC",
        elf::ET_DYN => "DYN",
        _ => "OTHER",
    };
    let _ = writeln!(
        out,
        "elf {e_type} phnum {} shnum {}",
        img.header.e_phnum.get(LE),
        img.sections.len()
    );
    for i in 1..img.sections.len() {
        let sh = &img.sections[i];
        let file_bytes = if img.sh_type(i) == elf::SHT_NOBITS {
            0
        } else {
            img.size(i)
        };
        let _ = writeln!(
            out,
            "section [{i}] {} {} flags {} addr {:#x} size {:#x} file {:#x} align {}",
            img.name(i),
            type_name(img.sh_type(i)),
            flag_letters(sh.sh_flags.get(LE)),
            img.addr(i),
            img.size(i),
            file_bytes,
            sh.sh_addralign.get(LE)
        );
    }
    let Ok(symtab) = img.symtab() else {
        out.push_str("no symtab\n");
        return Ok(out);
    };
    let syms = img.symbols(symtab)?;
    for (n, s) in syms.iter().enumerate().skip(1) {
        let _ = writeln!(
            out,
            "symbol [{n}] {} {} {} {} value {:#x} size {:#x}",
            img.symbol_name(symtab, s),
            sym_type_name(sym_type(s)),
            bind_name(sym_bind(s)),
            match s.st_shndx.get(LE) {
                elf::SHN_ABS => "ABS".into(),
                elf::SHN_COMMON => "COMMON".into(),
                x => section_label(usize::from(x)),
            },
            s.st_value.get(LE),
            s.st_size.get(LE)
        );
    }
    for sec in 1..img.sections.len() {
        if img.sh_type(sec) != elf::SHT_RELA {
            continue;
        }
        let target = img.sections[sec].sh_info.get(LE) as usize;
        let _ = writeln!(
            out,
            "relocations {} -> {}",
            img.name(sec),
            section_label(target)
        );
        for r in img.relas(sec)? {
            let sym = syms.get(rela_sym(&r) as usize);
            let addend = r.r_addend.get(LE);
            let _ = writeln!(
                out,
                "  {:#x} {} {} {}{:#x}",
                r.r_offset.get(LE),
                reloc_name(rela_type(&r)),
                sym.map(|s| img.symbol_name(symtab, s))
                    .unwrap_or_else(|| format!("#{}", rela_sym(&r))),
                if addend < 0 { "-" } else { "+" },
                addend.unsigned_abs()
            );
        }
    }
    dump_info(&img, symtab, &syms, &mut out)?;
    Ok(out)
}

fn signed_hex(v: i64) -> String {
    format!("{}{:#x}", if v < 0 { "-" } else { "+" }, v.unsigned_abs())
}

/// `.kpatch.info` entries as the doctor will read them: the relocated
/// address fields by symbol, the lengths, and the name each entry points at
/// in `.kpatch.strtab`.
fn dump_info(img: &Image, symtab: usize, syms: &[Sym], out: &mut String) -> Result<()> {
    let Some(info) = (1..img.sections.len()).find(|&i| img.name(i) == ".kpatch.info") else {
        return Ok(());
    };
    let bytes = img.bytes(info)?;
    let mut relocs = std::collections::HashMap::new();
    for sec in (1..img.sections.len()).filter(|&i| {
        img.sh_type(i) == elf::SHT_RELA && img.sections[i].sh_info.get(LE) as usize == info
    }) {
        for r in img.relas(sec)? {
            let place = r.r_offset.get(LE).wrapping_sub(img.addr(info));
            relocs.insert(place, r);
        }
    }
    let strtab = (1..img.sections.len()).find(|&i| img.name(i) == ".kpatch.strtab");
    let field = |off: u64| -> String {
        match relocs
            .get(&off)
            .and_then(|r| syms.get(rela_sym(r) as usize).map(|s| (r, s)))
        {
            Some((r, s)) => format!(
                "{}{}",
                img.symbol_name(symtab, s),
                signed_hex(r.r_addend.get(LE))
            ),
            None => format!("{:#x}", u64_at(bytes, off as usize)),
        }
    };
    for (k, entry) in bytes.chunks_exact(kpatch_file::INFO_ENTRY_SIZE).enumerate() {
        let base = (k * kpatch_file::INFO_ENTRY_SIZE) as u64;
        let has_relocs =
            (0..kpatch_file::INFO_ENTRY_SIZE as u64).any(|o| relocs.contains_key(&(base + o)));
        if !has_relocs && entry.iter().all(|&b| b == 0) {
            break;
        }
        let name = relocs
            .get(&(base + kpatch_file::InfoEntry::SYMSTR_OFF as u64))
            .and_then(|r| {
                let sym = syms.get(rela_sym(r) as usize)?;
                let sec = strtab.filter(|&t| usize::from(sym.st_shndx.get(LE)) == t)?;
                let at =
                    sym.st_value.get(LE).wrapping_sub(img.addr(sec)) as i64 + r.r_addend.get(LE);
                Some(crate::image::cstr_at(img.bytes(sec).ok()?, at as usize))
            })
            .unwrap_or_else(|| "?".into());
        let u32_at = |o: usize| u32::from_le_bytes(entry[o..o + 4].try_into().expect("4 bytes"));
        let _ = writeln!(
            out,
            "info [{k}] {name}: daddr {} saddr {} dlen {:#x} slen {:#x}",
            field(base + kpatch_file::InfoEntry::DADDR_OFF as u64),
            field(base + kpatch_file::InfoEntry::SADDR_OFF as u64),
            u32_at(kpatch_file::InfoEntry::DLEN_OFF),
            u32_at(kpatch_file::InfoEntry::SLEN_OFF),
        );
    }
    Ok(())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map(|x| u64::from_le_bytes(x.try_into().expect("8 bytes")))
        .unwrap_or(0)
}
