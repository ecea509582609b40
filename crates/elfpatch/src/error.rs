//! Every way an ELF edit can be refused. Messages name the section, symbol
//! and offsets at fault; the binaries add the file name in front.

/// Why an ELF could not be read or edited.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- the file is not what we work on ----
    #[error("not an ELF file (bad magic {0:02x?})")]
    NotElf([u8; 4]),
    #[error(
        "not an x86-64 little-endian ELF64 file (class {class}, data {data}, machine {machine})"
    )]
    WrongKind { class: u8, data: u8, machine: u16 },
    #[error("malformed ELF: {0}")]
    Malformed(String),
    #[error(
        "no .kpatch.* sections: not a patch-containing binary (was the source built through kpatch_gensrc?)"
    )]
    NoKpatchSections,
    #[error(
        "no .rela.kpatch.* relocation sections: the binary was linked without -Wl,-q (--emit-relocs)"
    )]
    NoKpatchRelocations,
    #[error("no .symtab section: the binary was stripped before kpatch_strip")]
    NoSymtab,
    #[error("section {section} still has address {addr:#x}: run kpatch_strip --undo-link first")]
    StillLinked { section: String, addr: u64 },
    #[error("section {section} still carries {size} file bytes: run kpatch_strip --strip first")]
    NotStripped { section: String, size: u64 },

    // ---- the patch does not fit the original ----
    #[error(
        "symbol {symbol}: original has it at {orig_section}+{orig_offset:#x} (size {orig_size:#x}), patch at {patch_section}+{patch_offset:#x} (size {patch_size:#x}): the patched build changed original code or data"
    )]
    SymbolMismatch {
        symbol: String,
        orig_section: String,
        orig_offset: u64,
        orig_size: u64,
        patch_section: String,
        patch_offset: u64,
        patch_size: u64,
    },
    #[error(
        "section {section} referenced by the patch is {patch_size:#x} bytes in the patched build but {orig_size:#x} in the original"
    )]
    SectionSizeMismatch {
        section: String,
        orig_size: u64,
        patch_size: u64,
    },
    #[error("section {section} referenced by the patch does not exist in the original")]
    SectionMissing { section: String },
    #[error(
        "TLS symbol {symbol}: thread-pointer offset {orig_tpoff} in the original, {patch_tpoff} in the patch"
    )]
    TlsMismatch {
        symbol: String,
        orig_tpoff: i64,
        patch_tpoff: i64,
    },
    #[error("TLS symbol {symbol}: the original has no GOT entry filled by R_X86_64_TPOFF64 for it")]
    TlsGotEntryMissing { symbol: String },

    // ---- relocations we cannot turn into the contract's form ----
    #[error(
        "{section}+{offset:#x}: cannot relax {r_type} against {symbol}: instruction bytes {bytes:02x?} are neither mov, lea, call nor jmp"
    )]
    Unrelaxable {
        section: String,
        offset: u64,
        r_type: &'static str,
        symbol: String,
        bytes: Vec<u8>,
    },
    #[error("{section}+{offset:#x}: relocation type {r_type} against {symbol} is not supported")]
    UnsupportedRelocation {
        section: String,
        offset: u64,
        r_type: String,
        symbol: String,
    },
    #[error(".eh_frame+{offset:#x}: {what}")]
    UnwindInfo { offset: usize, what: String },
    #[error("section {section} has no section symbol to rebase a local-symbol relocation on")]
    NoSectionSymbol { section: String },
}

pub type Result<T> = std::result::Result<T, Error>;
