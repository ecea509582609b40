//! A parsed, editable view of one ELF64 x86-64 little-endian file: the raw
//! bytes plus copies of the file and section headers. Edits change the copies
//! and are written back explicitly, so section indices never move.

use object::LittleEndian;
use object::elf::{self, FileHeader64, Rela64, SectionHeader64, Sym64};
use object::pod;

use crate::error::{Error, Result};

pub(crate) const LE: LittleEndian = LittleEndian;
pub(crate) type Shdr = SectionHeader64<LittleEndian>;
pub(crate) type Sym = Sym64<LittleEndian>;
pub(crate) type Rela = Rela64<LittleEndian>;
pub(crate) type Ehdr = FileHeader64<LittleEndian>;

pub(crate) const EHDR_SIZE: usize = size_of::<Ehdr>();
pub(crate) const SHDR_SIZE: usize = size_of::<Shdr>();
pub(crate) const SYM_SIZE: usize = size_of::<Sym>();
pub(crate) const RELA_SIZE: usize = size_of::<Rela>();

/// Prefix of every section the doctor loads into the patient.
pub const KPATCH_PREFIX: &str = ".kpatch.";
/// Prefix of the relocation sections that describe the patch.
pub const KPATCH_RELA_PREFIX: &str = ".rela.kpatch.";

pub(crate) struct Image {
    pub data: Vec<u8>,
    pub header: Ehdr,
    pub sections: Vec<Shdr>,
    pub names: Vec<String>,
    /// Index of the section name table.
    pub shstrndx: usize,
}

fn malformed(what: impl Into<String>) -> Error {
    Error::Malformed(what.into())
}

fn range(data_len: usize, off: u64, size: u64, what: &str) -> Result<std::ops::Range<usize>> {
    let end = off
        .checked_add(size)
        .filter(|&e| e <= data_len as u64)
        .ok_or_else(|| {
            malformed(format!(
                "{what} at {off:#x}+{size:#x} runs past the end of the file ({data_len:#x} bytes)"
            ))
        })?;
    Ok(off as usize..end as usize)
}

/// Checks the identification bytes only: cheap, and gives the right error
/// for the common wrong inputs (text files, 32-bit or foreign objects).
pub(crate) fn check_ident(data: &[u8]) -> Result<()> {
    if data.len() < 4 || data[..4] != elf::ELFMAG {
        let mut m = [0u8; 4];
        let n = data.len().min(4);
        m[..n].copy_from_slice(&data[..n]);
        return Err(Error::NotElf(m));
    }
    if data.len() < EHDR_SIZE {
        return Err(malformed(format!(
            "{} bytes, shorter than an ELF64 header",
            data.len()
        )));
    }
    let machine = u16::from_le_bytes([data[18], data[19]]);
    let (class, enc) = (data[4], data[5]);
    if class != elf::ELFCLASS64 || enc != elf::ELFDATA2LSB || machine != elf::EM_X86_64 {
        return Err(Error::WrongKind {
            class,
            data: enc,
            machine,
        });
    }
    Ok(())
}

impl Image {
    pub fn parse(data: Vec<u8>) -> Result<Image> {
        check_ident(&data)?;
        let (header, _) = pod::from_bytes::<Ehdr>(&data).map_err(|_| malformed("short header"))?;
        let header = *header;
        let shoff = header.e_shoff.get(LE);
        if shoff == 0 {
            return Err(malformed("no section header table"));
        }
        if usize::from(header.e_shentsize.get(LE)) != SHDR_SIZE {
            return Err(malformed(format!(
                "section header size {} (expected {SHDR_SIZE})",
                header.e_shentsize.get(LE)
            )));
        }
        let first = range(data.len(), shoff, SHDR_SIZE as u64, "section header table")?;
        let (sh0, _) = pod::from_bytes::<Shdr>(&data[first]).map_err(|_| malformed("shdr 0"))?;
        let mut shnum = u64::from(header.e_shnum.get(LE));
        if shnum == 0 {
            shnum = sh0.sh_size.get(LE);
        }
        let mut shstrndx = u32::from(header.e_shstrndx.get(LE));
        if shstrndx == u32::from(elf::SHN_XINDEX) {
            shstrndx = sh0.sh_link.get(LE);
        }
        let table = range(
            data.len(),
            shoff,
            shnum * SHDR_SIZE as u64,
            "section header table",
        )?;
        let (sections, _) = pod::slice_from_bytes::<Shdr>(&data[table], shnum as usize)
            .map_err(|_| malformed("section header table"))?;
        let sections = sections.to_vec();
        let shstr = sections
            .get(shstrndx as usize)
            .ok_or_else(|| malformed(format!("e_shstrndx {shstrndx} out of range")))?;
        let shstr_bytes = &data[range(
            data.len(),
            shstr.sh_offset.get(LE),
            shstr.sh_size.get(LE),
            "section name table",
        )?];
        let names = sections
            .iter()
            .map(|s| cstr_at(shstr_bytes, s.sh_name.get(LE) as usize))
            .collect();
        Ok(Image {
            data,
            header,
            sections,
            names,
            shstrndx: shstrndx as usize,
        })
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    pub fn sh_type(&self, i: usize) -> u32 {
        self.sections[i].sh_type.get(LE)
    }

    pub fn addr(&self, i: usize) -> u64 {
        self.sections[i].sh_addr.get(LE)
    }

    pub fn size(&self, i: usize) -> u64 {
        self.sections[i].sh_size.get(LE)
    }

    pub fn flags(&self, i: usize) -> u64 {
        self.sections[i].sh_flags.get(LE)
    }

    /// The file bytes of a section; empty for NOBITS.
    pub fn bytes(&self, i: usize) -> Result<&[u8]> {
        Ok(&self.data[self.byte_range(i)?])
    }

    pub fn bytes_mut(&mut self, i: usize) -> Result<&mut [u8]> {
        let r = self.byte_range(i)?;
        Ok(&mut self.data[r])
    }

    fn byte_range(&self, i: usize) -> Result<std::ops::Range<usize>> {
        let s = &self.sections[i];
        if s.sh_type.get(LE) == elf::SHT_NOBITS {
            return Ok(0..0);
        }
        range(
            self.data.len(),
            s.sh_offset.get(LE),
            s.sh_size.get(LE),
            &format!("section {}", self.names[i]),
        )
    }

    /// Gives section `i` new contents: appended to the file bytes (the
    /// old ones stay, unreferenced, until a relayout drops them).
    pub fn set_contents(&mut self, i: usize, bytes: &[u8]) {
        let off = self.data.len().next_multiple_of(8);
        self.data.resize(off, 0);
        self.data.extend_from_slice(bytes);
        self.sections[i].sh_offset.set(LE, off as u64);
        self.sections[i].sh_size.set(LE, bytes.len() as u64);
    }

    /// Renames sections (index, new name), appending the names to the
    /// section name table, so that no index or other name moves.
    pub fn rename(&mut self, renames: &[(usize, &str)]) -> Result<()> {
        let mut table = self.bytes(self.shstrndx)?.to_vec();
        for &(i, name) in renames {
            let at = table.len();
            table.extend_from_slice(name.as_bytes());
            table.push(0);
            self.sections[i].sh_name.set(LE, at as u32);
            self.names[i] = name.to_string();
        }
        let shstrndx = self.shstrndx;
        self.set_contents(shstrndx, &table);
        Ok(())
    }

    pub fn section_by_name(&self, name: &str) -> Option<usize> {
        (1..self.sections.len()).find(|&i| self.names[i] == name)
    }

    pub fn has_kpatch_sections(&self) -> bool {
        self.names.iter().any(|n| n.starts_with(KPATCH_PREFIX))
    }

    /// Indices of the `.rela.kpatch.*` sections.
    pub fn kpatch_relas(&self) -> Vec<usize> {
        (0..self.sections.len())
            .filter(|&i| {
                self.sh_type(i) == elf::SHT_RELA && self.names[i].starts_with(KPATCH_RELA_PREFIX)
            })
            .collect()
    }

    /// Refuses files that are no patch-containing binary (no `.kpatch.*`) or
    /// that were linked without `-q` (no `.rela.kpatch.*`).
    pub fn require_patch_sections(&self) -> Result<()> {
        if !self.has_kpatch_sections() {
            return Err(Error::NoKpatchSections);
        }
        if self.kpatch_relas().is_empty() {
            return Err(Error::NoKpatchRelocations);
        }
        Ok(())
    }

    pub fn symtab(&self) -> Result<usize> {
        (0..self.sections.len())
            .find(|&i| self.sh_type(i) == elf::SHT_SYMTAB)
            .ok_or(Error::NoSymtab)
    }

    pub fn symbols(&self, symtab: usize) -> Result<Vec<Sym>> {
        let bytes = self.bytes(symtab)?;
        let n = bytes.len() / SYM_SIZE;
        let (syms, _) = pod::slice_from_bytes::<Sym>(bytes, n)
            .map_err(|_| malformed(format!("symbol table {}", self.names[symtab])))?;
        Ok(syms.to_vec())
    }

    pub fn put_symbols(&mut self, symtab: usize, syms: &[Sym]) -> Result<()> {
        let dst = self.bytes_mut(symtab)?;
        dst[..syms.len() * SYM_SIZE].copy_from_slice(pod::bytes_of_slice(syms));
        Ok(())
    }

    pub fn relas(&self, sec: usize) -> Result<Vec<Rela>> {
        let bytes = self.bytes(sec)?;
        let n = bytes.len() / RELA_SIZE;
        let (r, _) = pod::slice_from_bytes::<Rela>(bytes, n)
            .map_err(|_| malformed(format!("relocation section {}", self.names[sec])))?;
        Ok(r.to_vec())
    }

    pub fn put_relas(&mut self, sec: usize, relas: &[Rela]) -> Result<()> {
        let dst = self.bytes_mut(sec)?;
        dst[..relas.len() * RELA_SIZE].copy_from_slice(pod::bytes_of_slice(relas));
        Ok(())
    }

    /// Name of a symbol from the string table the symbol table links to.
    pub fn symbol_name(&self, symtab: usize, sym: &Sym) -> String {
        let strtab = self.sections[symtab].sh_link.get(LE) as usize;
        if sym.st_info & 0xf == elf::STT_SECTION {
            let shndx = usize::from(sym.st_shndx.get(LE));
            if let Some(n) = self.names.get(shndx) {
                return n.clone();
            }
        }
        match self
            .sections
            .get(strtab)
            .and_then(|_| self.bytes(strtab).ok())
        {
            Some(b) => cstr_at(b, sym.st_name.get(LE) as usize),
            None => String::new(),
        }
    }

    /// Writes the (edited) ELF header and section header copies back into
    /// the file bytes.
    pub fn write_section_headers(&mut self) {
        self.data[..EHDR_SIZE].copy_from_slice(pod::bytes_of(&self.header));
        let off = self.header.e_shoff.get(LE) as usize;
        let bytes = pod::bytes_of_slice(&self.sections);
        self.data[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

pub(crate) fn cstr_at(bytes: &[u8], off: usize) -> String {
    let tail = bytes.get(off..).unwrap_or(&[]);
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

/// Symbol helpers over the raw struct, named for what we ask of them.
pub(crate) fn sym_type(s: &Sym) -> u8 {
    s.st_info & 0xf
}

pub(crate) fn sym_bind(s: &Sym) -> u8 {
    s.st_info >> 4
}

/// Section index a symbol is defined in, if it is a real section (not
/// UNDEF, ABS, COMMON or an escape value).
pub(crate) fn sym_section(s: &Sym) -> Option<usize> {
    let shndx = s.st_shndx.get(LE);
    (shndx != elf::SHN_UNDEF && shndx < elf::SHN_LORESERVE).then_some(usize::from(shndx))
}

pub(crate) fn rela_sym(r: &Rela) -> u32 {
    r.r_sym(LE, false)
}

pub(crate) fn rela_type(r: &Rela) -> u32 {
    r.r_type(LE, false)
}

pub(crate) fn set_rela(r: &mut Rela, sym: u32, r_type: u32) {
    r.set_r_info(LE, false, sym, r_type);
}

/// Readable name of an x86-64 relocation type.
pub use kpatch_file::reloc::reloc_name;
