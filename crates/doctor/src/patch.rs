//! A `.kpatch` file read into an owned model of its patch ELF: sections,
//! symbols and relocations, exactly as `docs/patch-object.md` section 3
//! describes them. No addresses are decided here.

use std::path::{Path, PathBuf};

use kpatch_file::{Header, KpatchFile};
use object::elf;
use object::read::elf::{FileHeader, Rela, SectionHeader, Sym};
use object::{LittleEndian as LE, SectionIndex};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct PatchSection {
    pub name: String,
    /// `SHT_NOBITS` sections have no bytes here but occupy `size` when loaded.
    pub nobits: bool,
    pub size: u64,
    pub align: u64,
    /// `sh_addr` as the file has it: 0 in our files; LibCare's
    /// `--undo-link` leaves the linked address (see `settle_symbols`).
    pub addr: u64,
    pub data: Vec<u8>,
}

impl PatchSection {
    /// Loaded into the patient (everything else is looked up in the target).
    pub fn is_patch(&self) -> bool {
        self.name.starts_with(".kpatch")
    }
}

/// Where a symbol is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Undefined,
    Absolute,
    Common,
    Section(usize),
}

#[derive(Debug, Clone)]
pub struct PatchSymbol {
    /// Name without any `@version` part.
    pub name: String,
    /// The version after `@`/`@@`, a hint for the lookup.
    pub version: Option<String>,
    pub place: Place,
    /// Section-relative (defined) or absolute value.
    pub value: u64,
    pub size: u64,
    /// `STT_*`.
    pub kind: u8,
    /// `STB_WEAK`: may stay undefined.
    pub weak: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct PatchReloc {
    /// Section the relocation applies to.
    pub section: usize,
    pub offset: u64,
    pub rtype: u32,
    pub symbol: usize,
    pub addend: i64,
}

#[derive(Debug, Clone)]
pub struct Patch {
    /// Where it came from (for messages).
    pub path: PathBuf,
    pub header: Header,
    /// The raw 688-byte header, copied into the patch region.
    pub header_bytes: Vec<u8>,
    /// Identity of the content: equal patches have equal digests.
    pub digest: u64,
    /// Indexed like the ELF section table.
    pub sections: Vec<PatchSection>,
    /// Indexed like `.symtab`.
    pub symbols: Vec<PatchSymbol>,
    pub relocs: Vec<PatchReloc>,
}

impl Patch {
    pub fn display(&self) -> String {
        self.path.display().to_string()
    }

    pub fn level(&self) -> u32 {
        self.header.user_level
    }

    /// Gives the patch another level (the level is part of its identity).
    pub fn set_level(&mut self, level: u32) {
        self.digest ^= level_salt(self.header.user_level) ^ level_salt(level);
        self.header.user_level = level;
        kpatch_file::set_user_level(&mut self.header_bytes, level);
    }

    pub fn section_name(&self, i: usize) -> &str {
        self.sections.get(i).map_or("?", |s| s.name.as_str())
    }
}

fn level_salt(level: u32) -> u64 {
    u64::from(level).rotate_left(32)
}

/// FNV-1a, enough to tell "the same patch again" from "another patch".
pub fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn load(path: &Path) -> Result<Patch> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &bytes)
}

pub fn parse(path: &Path, bytes: &[u8]) -> Result<Patch> {
    let kp = KpatchFile::parse(bytes).map_err(|source| Error::Kpatch {
        path: path.to_path_buf(),
        source,
    })?;
    let what = path.display().to_string();
    let bad = |detail: String| Error::Elf {
        what: what.clone(),
        detail,
    };
    let oerr = |e: object::Error| Error::Elf {
        what: what.clone(),
        detail: e.to_string(),
    };
    let data = kp.elf;
    let e = LE;
    let hdr = elf::FileHeader64::<LE>::parse(data).map_err(oerr)?;
    if hdr.e_machine(e) != elf::EM_X86_64 {
        return Err(bad(format!("machine {} is not x86-64", hdr.e_machine(e))));
    }
    let table = hdr.sections(e, data).map_err(oerr)?;
    let mut sections = Vec::with_capacity(table.len());
    for sh in table.iter() {
        let name = String::from_utf8_lossy(table.section_name(e, sh).map_err(oerr)?).into_owned();
        let nobits = sh.sh_type(e) == elf::SHT_NOBITS;
        let size = sh.sh_size(e);
        let bytes = if nobits || sh.sh_type(e) == elf::SHT_NULL {
            Vec::new()
        } else {
            sh.data(e, data)
                .map_err(|_| bad(format!("section {name} lies outside the file")))?
                .to_vec()
        };
        sections.push(PatchSection {
            name,
            nobits,
            size,
            align: sh.sh_addralign(e).max(1),
            addr: sh.sh_addr(e),
            data: bytes,
        });
    }
    let symtab = table.symbols(e, data, elf::SHT_SYMTAB).map_err(oerr)?;
    if symtab.is_empty() {
        return Err(bad("no .symtab".into()));
    }
    let mut symbols = Vec::with_capacity(symtab.len());
    for sym in symtab.iter() {
        let raw = String::from_utf8_lossy(symtab.symbol_name(e, sym).map_err(oerr)?).into_owned();
        let (name, version) = split_version(&raw);
        let shndx = sym.st_shndx(e);
        let place = match shndx {
            elf::SHN_UNDEF => Place::Undefined,
            elf::SHN_ABS => Place::Absolute,
            elf::SHN_COMMON => Place::Common,
            elf::SHN_XINDEX => Place::Section(
                symtab
                    .shndx(e, object::SymbolIndex(symbols.len()))
                    .ok_or_else(|| bad("extended section index missing".into()))?
                    as usize,
            ),
            n => Place::Section(n as usize),
        };
        symbols.push(PatchSymbol {
            name,
            version,
            place,
            value: sym.st_value(e),
            size: sym.st_size(e),
            kind: sym.st_type(),
            weak: sym.st_bind() == elf::STB_WEAK,
        });
    }
    settle_symbols(&what, &sections, &mut symbols)?;
    let mut relocs = Vec::new();
    for (i, sh) in table.iter().enumerate() {
        if sh.sh_type(e) == elf::SHT_REL {
            return Err(Error::Unsupported {
                patch: what.clone(),
                what: format!("REL (not RELA) section {}", sections[i].name),
            });
        }
        let Some((relas, _link)) = sh.rela(e, data).map_err(oerr)? else {
            continue;
        };
        let target = sh.sh_info(e) as usize;
        if table.section(SectionIndex(target)).is_err() {
            return Err(bad(format!(
                "{} applies to missing section {target}",
                sections[i].name
            )));
        }
        if !sections[target].is_patch() {
            // Relocations of the original binary's own sections: not ours to load.
            continue;
        }
        for r in relas {
            let symbol = r.r_sym(e, false) as usize;
            if symbol >= symbols.len() {
                return Err(bad(format!(
                    "{}: relocation refers to symbol {symbol} of {}",
                    sections[i].name,
                    symbols.len()
                )));
            }
            relocs.push(PatchReloc {
                section: target,
                offset: r.r_offset(e),
                rtype: r.r_type(e, false),
                symbol,
                addend: r.r_addend(e),
            });
        }
    }
    Ok(Patch {
        path: path.to_path_buf(),
        header: kp.header.clone(),
        header_bytes: bytes[..kpatch_file::HEADER_SIZE].to_vec(),
        // The level is part of the identity: the same code at a higher
        // level replaces the lower one.
        digest: digest(data) ^ level_salt(kp.header.user_level),
        sections,
        symbols,
        relocs,
    })
}

/// Makes every defined symbol's value an offset into its section, and
/// refuses a file where that cannot be told for certain.
///
/// Two layouts are understood. Ours: every `sh_addr` and every section
/// symbol is 0. LibCare's `--undo-link`: sections keep their linked address
/// and a section symbol's value is that address (LibCare's loader ignores
/// it and uses the section's place). In both, other symbols are already
/// section-relative. Anything else (a section symbol with another value, a
/// symbol lying past its section's end, as a file whose link was never
/// undone has) would put code or data somewhere else than its author meant,
/// so it is refused before anything is resolved.
fn settle_symbols(
    what: &str,
    sections: &[PatchSection],
    symbols: &mut [PatchSymbol],
) -> Result<()> {
    let refuse = |detail: String| Error::Layout {
        patch: what.to_string(),
        what: detail,
    };
    for s in symbols.iter_mut().skip(1) {
        let Place::Section(i) = s.place else {
            continue;
        };
        let Some(sec) = sections.get(i) else {
            return Err(refuse(format!(
                "symbol `{}` is defined in section {i}, which the file lacks",
                s.name
            )));
        };
        if s.kind == elf::STT_SECTION {
            if s.value != 0 && s.value != sec.addr {
                return Err(refuse(format!(
                    "the symbol of section {} has value {:#x}, neither 0 nor the section's address {:#x}",
                    sec.name, s.value, sec.addr
                )));
            }
            s.value = 0;
            continue;
        }
        // A thread-local's value is an offset into the TLS block, not its
        // section; `resolve` checks it against the target's block.
        if s.kind == elf::STT_TLS {
            continue;
        }
        if s.value.checked_add(s.size).is_none_or(|end| end > sec.size) {
            return Err(refuse(format!(
                "symbol `{}` at {:#x} ({} bytes) lies beyond the end of section {} ({} bytes): \
                 the file's addresses are not relative to their sections (was `kpatch_strip --undo-link` run?)",
                s.name, s.value, s.size, sec.name, sec.size
            )));
        }
    }
    Ok(())
}

/// `printf@@GLIBC_2.2.5` -> (`printf`, `GLIBC_2.2.5`).
pub fn split_version(raw: &str) -> (String, Option<String>) {
    match raw.split_once('@') {
        Some((n, v)) => (n.to_string(), Some(v.trim_start_matches('@').to_string())),
        None => (raw.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_split_off() {
        assert_eq!(
            split_version("printf@@GLIBC_2.2.5"),
            ("printf".into(), Some("GLIBC_2.2.5".into()))
        );
        assert_eq!(
            split_version("memcpy@GLIBC_2.14"),
            ("memcpy".into(), Some("GLIBC_2.14".into()))
        );
        assert_eq!(split_version("foo"), ("foo".into(), None));
    }

    #[test]
    fn refuses_files_that_are_not_kpatches() {
        let p = Path::new("x.kpatch");
        let e = parse(p, b"\x7fELF not a kpatch").unwrap_err();
        assert!(e.to_string().contains("not a kpatch file"), "{e}");
        let mut hdr = kpatch_file::build(
            b"garbage, not ELF",
            &kpatch_file::MakeOptions {
                build_id: "abcd".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let e = parse(p, &hdr).unwrap_err();
        assert!(e.to_string().contains("malformed ELF"), "{e}");
        hdr.truncate(700);
        let e = parse(p, &hdr).unwrap_err();
        assert!(e.to_string().contains("x.kpatch"), "{e}");
    }
}
