//! The ELF objects loaded in the patient: where each file is mapped, its load
//! bias, BuildID, section headers and symbol tables.
//!
//! Files are opened through `/proc/PID/map_files`, so what we read is what is
//! mapped even if the file on disk was replaced since.

use std::path::PathBuf;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, Rela, SectionHeader, Sym};
use object::{LittleEndian as LE, Object, ObjectSection, SymbolIndex};

use crate::error::{Error, Result};
use crate::maps::Mapping;

/// One ELF file mapped in the patient.
pub struct LoadedObject {
    /// Path as the kernel reports it (`/usr/lib/.../libc.so.6`).
    pub name: String,
    /// Lowest and highest address of its mappings.
    pub start: u64,
    pub end: u64,
    /// Address = bias + ELF virtual address.
    pub bias: u64,
    /// Lowercase hex, empty if the file has none.
    pub build_id: String,
    /// The main program (contains the entry point from the auxiliary vector).
    pub is_main: bool,
    /// Position in the dynamic linker's search order (its link map): the
    /// main program, preloaded libraries, then the needed ones. `None` for
    /// objects the link map does not list (mapped by other means).
    pub link_index: Option<usize>,
    data: Vec<u8>,
}

/// A symbol found in a loaded object, at its run-time address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub addr: u64,
    pub size: u64,
    /// `STT_*`.
    pub kind: u8,
    /// `st_value` as in the file (TLS offset for `STT_TLS`).
    pub value: u64,
}

fn elf_err(what: &str) -> impl FnOnce(object::Error) -> Error + '_ {
    move |e| Error::Elf {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

impl LoadedObject {
    /// Builds an object from its file bytes and its mappings (all of one file).
    pub fn new(name: String, data: Vec<u8>, mappings: &[&Mapping]) -> Result<Self> {
        let file = ElfFile64::<LE>::parse(&*data).map_err(elf_err(&name))?;
        let build_id = file
            .build_id()
            .map_err(elf_err(&name))?
            .map(hex)
            .unwrap_or_default();
        let first = mappings
            .iter()
            .min_by_key(|m| m.offset)
            .expect("an object has at least one mapping");
        let e = LE;
        let mut bias = None;
        for ph in file.elf_program_headers() {
            if ph.p_type(e) != elf::PT_LOAD {
                continue;
            }
            let off = ph.p_offset(e);
            if off >= first.offset && off < first.offset + (first.end - first.start) {
                bias = Some((first.start + (off - first.offset)).wrapping_sub(ph.p_vaddr(e)));
                break;
            }
        }
        let bias = bias.ok_or_else(|| Error::Elf {
            what: name.clone(),
            detail: format!(
                "no PT_LOAD segment matches its mapping at {:#x} (offset {:#x})",
                first.start, first.offset
            ),
        })?;
        let start = mappings.iter().map(|m| m.start).min().unwrap_or(0);
        let end = mappings.iter().map(|m| m.end).max().unwrap_or(0);
        Ok(LoadedObject {
            name,
            start,
            end,
            bias,
            build_id,
            is_main: false,
            link_index: None,
            data,
        })
    }

    fn elf(&self) -> ElfFile64<'_, LE> {
        ElfFile64::<LE>::parse(&*self.data).expect("parsed once in new()")
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Short name for messages: the file name.
    pub fn short_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }

    /// Run-time address and size of the section called `name`.
    pub fn section(&self, name: &str) -> Option<(u64, u64)> {
        let f = self.elf();
        let s = f.section_by_name(name)?;
        Some((self.bias.wrapping_add(s.address()), s.size()))
    }

    /// The exported definition of `name` (dynamic symbol table, as the dynamic
    /// linker would see it). `version` picks among several versions of one
    /// name; without it, the default version wins.
    pub fn lookup_exported(&self, name: &str, version: Option<&str>) -> Option<Found> {
        let f = self.elf();
        let e = LE;
        let table = f.elf_dynamic_symbol_table();
        let versions = f
            .elf_section_table()
            .versions(e, &*self.data)
            .ok()
            .flatten();
        let mut fallback = None;
        for (i, sym) in table.enumerate() {
            if sym.st_shndx(e) == elf::SHN_UNDEF {
                continue;
            }
            let bind = sym.st_bind();
            if bind != elf::STB_GLOBAL && bind != elf::STB_WEAK && bind != elf::STB_GNU_UNIQUE {
                continue;
            }
            if sym.st_visibility() == elf::STV_HIDDEN || sym.st_visibility() == elf::STV_INTERNAL {
                continue;
            }
            if table.symbol_name(e, sym).ok() != Some(name.as_bytes()) {
                continue;
            }
            let found = self.found(sym);
            let Some(vt) = versions.as_ref() else {
                return Some(found);
            };
            let vi = vt.version_index(e, SymbolIndex(i.0));
            let vname = vt
                .version(vi)
                .ok()
                .flatten()
                .map(|v| String::from_utf8_lossy(v.name()).into_owned());
            match (version, vname.as_deref()) {
                (Some(want), Some(have)) if want == have => return Some(found),
                _ if !vi.is_hidden() => {
                    if version.is_none() {
                        return Some(found);
                    }
                    fallback = Some(found);
                }
                _ => {
                    if fallback.is_none() && version.is_none() {
                        fallback = Some(found);
                    }
                }
            }
        }
        fallback
    }

    /// Any definition of `name` in the full symbol table (locals included).
    pub fn lookup_any(&self, name: &str) -> Option<Found> {
        let f = self.elf();
        let e = LE;
        let table = f.elf_symbol_table();
        table
            .iter()
            .find(|s| {
                s.st_shndx(e) != elf::SHN_UNDEF
                    && table.symbol_name(e, s).ok() == Some(name.as_bytes())
            })
            .map(|s| self.found(s))
    }

    fn found(&self, sym: &elf::Sym64<LE>) -> Found {
        let e = LE;
        let value = sym.st_value(e);
        let kind = sym.st_type();
        let addr = if kind == elf::STT_TLS || sym.st_shndx(e) == elf::SHN_ABS {
            value
        } else {
            self.bias.wrapping_add(value)
        };
        Found {
            addr,
            size: sym.st_size(e),
            kind,
            value,
        }
    }

    /// The function (from `.symtab`, else `.dynsym`) containing `addr`.
    pub fn function_at(&self, addr: u64) -> Option<String> {
        let f = self.elf();
        let e = LE;
        let rel = addr.wrapping_sub(self.bias);
        for table in [f.elf_symbol_table(), f.elf_dynamic_symbol_table()] {
            for s in table.iter() {
                if s.st_type() == elf::STT_FUNC
                    && s.st_shndx(e) != elf::SHN_UNDEF
                    && rel >= s.st_value(e)
                    && rel < s.st_value(e) + s.st_size(e).max(1)
                {
                    return table
                        .symbol_name(e, s)
                        .ok()
                        .map(|n| String::from_utf8_lossy(n).into_owned());
                }
            }
        }
        None
    }

    /// Dynamic relocations of this object that import `name` into a GOT slot
    /// (`GLOB_DAT`, `JUMP_SLOT`, `64`): run-time slot addresses.
    pub fn import_slots(&self, name: &str) -> Vec<u64> {
        let f = self.elf();
        let e = LE;
        let mut out = Vec::new();
        let sections = f.elf_section_table();
        for sh in sections.iter() {
            let Ok(Some((relas, link))) = sh.rela(e, &*self.data) else {
                continue;
            };
            let Ok(symtab) = sections.symbol_table_by_index(e, &*self.data, link) else {
                continue;
            };
            if sh.sh_flags(e) & u64::from(elf::SHF_ALLOC) == 0 {
                continue;
            }
            for r in relas {
                let t = r.r_type(e, false);
                if t != elf::R_X86_64_GLOB_DAT
                    && t != elf::R_X86_64_JUMP_SLOT
                    && t != elf::R_X86_64_64
                {
                    continue;
                }
                let si = r.r_sym(e, false) as usize;
                let Ok(sym) = symtab.symbol(SymbolIndex(si)) else {
                    continue;
                };
                if symtab.symbol_name(e, sym).ok() == Some(name.as_bytes()) {
                    out.push(self.bias.wrapping_add(r.r_offset(e)));
                }
            }
        }
        out
    }

    /// The PT_TLS segment: (vaddr, memsz, align), if the object has thread-locals.
    pub fn tls_segment(&self) -> Option<(u64, u64, u64)> {
        let f = self.elf();
        let e = LE;
        f.elf_program_headers()
            .iter()
            .find(|ph| ph.p_type(e) == elf::PT_TLS)
            .map(|ph| (ph.p_vaddr(e), ph.p_memsz(e), ph.p_align(e)))
    }

    pub fn elf_type(&self) -> u16 {
        self.elf().elf_header().e_type(LE)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every ELF object mapped in `pid`, in address order.
pub fn loaded_objects(pid: i32, maps: &[Mapping]) -> Result<Vec<LoadedObject>> {
    let entry = auxv_entry(pid);
    let mut groups: Vec<(String, Vec<&Mapping>)> = Vec::new();
    for m in maps.iter().filter(|m| m.file_backed()) {
        match groups.last_mut() {
            Some((p, g)) if *p == m.path && g.last().is_some_and(|l| l.inode == m.inode) => {
                g.push(m)
            }
            _ => groups.push((m.path.clone(), vec![m])),
        }
    }
    let mut out = Vec::new();
    for (path, group) in groups {
        let Some(data) = read_mapped_file(pid, group[0]) else {
            continue;
        };
        if data.len() < 4 || &data[..4] != b"\x7fELF" {
            continue;
        }
        let name = path.trim_end_matches(" (deleted)").to_string();
        match LoadedObject::new(name, data, &group) {
            Ok(mut o) => {
                o.is_main = entry.is_some_and(|a| a >= o.start && a < o.end);
                out.push(o);
            }
            Err(e) => tracing::debug!("skipping {path}: {e}"),
        }
    }
    if let Some(order) = link_map_order(pid, &out) {
        for (i, oi) in order.into_iter().enumerate() {
            out[oi].link_index = Some(i);
        }
    }
    Ok(out)
}

fn read_u64(pid: i32, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    crate::patient::read_memory(pid, addr, &mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

/// Indices of `objects` in the order of the dynamic linker's link map
/// (`DT_DEBUG` of the main program -> `r_debug.r_map` -> `l_next`...), which
/// is the order symbol lookup follows: an `LD_PRELOAD` library comes before
/// libc, as it does for the process itself.
fn link_map_order(pid: i32, objects: &[LoadedObject]) -> Option<Vec<usize>> {
    let main = objects.iter().find(|o| o.is_main)?;
    let (dynamic, size) = main.section(".dynamic")?;
    let mut raw = vec![0u8; size as usize];
    crate::patient::read_memory(pid, dynamic, &mut raw).ok()?;
    let r_debug = raw.chunks_exact(16).find_map(|e| {
        let tag = u64::from_le_bytes(e[..8].try_into().expect("8"));
        (tag == u64::from(elf::DT_DEBUG)).then(|| u64::from_le_bytes(e[8..].try_into().expect("8")))
    })?;
    if r_debug == 0 {
        return None;
    }
    // struct r_debug { int r_version; struct link_map *r_map; ... }
    let mut lm = read_u64(pid, r_debug + 8)?;
    let mut order = Vec::new();
    // struct link_map { l_addr; l_name; l_ld; l_next; l_prev; }
    for _ in 0..4096 {
        if lm == 0 {
            break;
        }
        let l_ld = read_u64(pid, lm + 16)?;
        if let Some(i) = objects.iter().position(|o| l_ld >= o.start && l_ld < o.end)
            && !order.contains(&i)
        {
            order.push(i);
        }
        lm = read_u64(pid, lm + 24)?;
    }
    Some(order)
}

fn read_mapped_file(pid: i32, m: &Mapping) -> Option<Vec<u8>> {
    let via = PathBuf::from(m.map_files_path(pid));
    let f = std::fs::File::open(&via)
        .or_else(|_| std::fs::File::open(m.path.trim_end_matches(" (deleted)")))
        .ok()?;
    read_elf_sparse(&f)
}

/// Reads the parts of an ELF file the doctor uses (headers, symbol and
/// version tables, dynamic section, notes, relocations, unwind tables) into
/// a buffer the size of the file, leaving code, read-only data and debug
/// info unread. The rest of the buffer stays zero pages the process never
/// touches, so a 2 MiB libc costs a few hundred KiB of reading.
pub fn read_elf_sparse(f: &std::fs::File) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata().ok()?.len() as usize;
    if len < 64 {
        return None;
    }
    let mut data = vec![0u8; len];
    let fill = |data: &mut [u8], off: u64, size: u64| -> Option<()> {
        let (off, size) = (off as usize, size as usize);
        let end = off.checked_add(size).filter(|&e| e <= data.len())?;
        f.read_exact_at(&mut data[off..end], off as u64).ok()
    };
    fill(&mut data, 0, 64)?;
    if &data[..4] != b"\x7fELF" {
        return None;
    }
    let hdr = elf::FileHeader64::<LE>::parse(&*data).ok()?;
    let e = LE;
    let (phoff, phsize) = (
        hdr.e_phoff(e),
        u64::from(hdr.e_phnum(e)) * u64::from(hdr.e_phentsize(e)),
    );
    let (shoff, shsize) = (
        hdr.e_shoff(e),
        u64::from(hdr.e_shnum(e)) * u64::from(hdr.e_shentsize(e)),
    );
    fill(&mut data, phoff, phsize)?;
    fill(&mut data, shoff, shsize)?;
    let hdr = elf::FileHeader64::<LE>::parse(&*data).ok()?;
    // Section names first: the choice below goes by name.
    let names = {
        let shdrs = hdr.section_headers(e, &*data).ok()?;
        let sh = shdrs.get(hdr.shstrndx(e, &*data).ok()? as usize)?;
        (sh.sh_offset(e), sh.sh_size(e))
    };
    fill(&mut data, names.0, names.1)?;
    let hdr = elf::FileHeader64::<LE>::parse(&*data).ok()?;
    let ranges: Vec<(u64, u64)> = {
        let table = hdr.sections(e, &*data).ok()?;
        let mut v: Vec<(u64, u64)> = table
            .iter()
            .filter(|sh| {
                let t = sh.sh_type(e);
                let flags = sh.sh_flags(e);
                let wanted_type = matches!(
                    t,
                    elf::SHT_SYMTAB
                        | elf::SHT_DYNSYM
                        | elf::SHT_STRTAB
                        | elf::SHT_DYNAMIC
                        | elf::SHT_NOTE
                        | elf::SHT_RELA
                        | elf::SHT_GNU_VERSYM
                        | elf::SHT_GNU_VERDEF
                        | elf::SHT_GNU_VERNEED
                        | elf::SHT_HASH
                        | elf::SHT_GNU_HASH
                        | elf::SHT_SYMTAB_SHNDX
                );
                let name = table.section_name(e, sh).unwrap_or_default();
                let unwind = name == b".eh_frame" || name == b".eh_frame_hdr";
                let interp = name == b".interp";
                t != elf::SHT_NOBITS
                    && (wanted_type || unwind || interp)
                    && (flags & u64::from(elf::SHF_EXECINSTR)) == 0
            })
            .map(|sh| (sh.sh_offset(e), sh.sh_size(e)))
            .collect();
        // PT_NOTE and PT_DYNAMIC segments, for files without section headers.
        v.extend(
            hdr.program_headers(e, &*data)
                .ok()?
                .iter()
                .filter(|ph| {
                    matches!(
                        ph.p_type(e),
                        elf::PT_NOTE | elf::PT_DYNAMIC | elf::PT_INTERP
                    )
                })
                .map(|ph| (ph.p_offset(e), ph.p_filesz(e))),
        );
        v
    };
    for (off, size) in ranges {
        fill(&mut data, off, size)?;
    }
    Some(data)
}

/// `AT_ENTRY` from `/proc/PID/auxv`.
pub fn auxv_entry(pid: i32) -> Option<u64> {
    let raw = std::fs::read(format!("/proc/{pid}/auxv")).ok()?;
    raw.chunks_exact(16).find_map(|c| {
        let key = u64::from_le_bytes(c[..8].try_into().ok()?);
        (key == libc::AT_ENTRY).then(|| u64::from_le_bytes(c[8..].try_into().expect("8")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sparse read keeps every byte of the sections the doctor (and the
    /// unwinder) reads, and leaves code unread.
    #[test]
    fn sparse_read_keeps_tables_and_skips_code() {
        for path in ["/lib/x86_64-linux-gnu/libc.so.6", "/proc/self/exe"] {
            let full = std::fs::read(path).unwrap();
            let sparse = read_elf_sparse(&std::fs::File::open(path).unwrap()).unwrap();
            assert_eq!(full.len(), sparse.len());
            let a = ElfFile64::<LE>::parse(&*full).unwrap();
            let b = ElfFile64::<LE>::parse(&*sparse).unwrap();
            assert_eq!(a.build_id().unwrap(), b.build_id().unwrap(), "{path}");
            for name in [
                ".eh_frame",
                ".eh_frame_hdr",
                ".dynsym",
                ".dynstr",
                ".gnu.version",
                ".gnu.version_d",
                ".dynamic",
                ".rela.dyn",
                ".symtab",
                ".strtab",
            ] {
                let (Some(x), Some(y)) = (a.section_by_name(name), b.section_by_name(name)) else {
                    continue;
                };
                assert_eq!(x.data().unwrap(), y.data().unwrap(), "{path} {name}");
            }
            let text = b.section_by_name(".text").unwrap().data().unwrap();
            assert!(text.iter().all(|&c| c == 0), "{path}: .text was read");
        }
    }
}
