//! `kpatch_strip --strip`: keep only what the doctor loads.
//!
//! Sections named `.kpatch.*`, their `.rela.kpatch.*`, and the symbol and
//! name tables keep their bytes; every other section becomes `SHT_NOBITS`
//! with name, size, flags, alignment and address kept (the later steps and
//! the doctor still need to know where it was), except `ld -q`'s relocation
//! tables of those sections, which become `SHT_NULL` (see `is_dead_rela`).
//! Indices never move. File
//! offsets are re-laid compactly and program headers are dropped: the patch
//! is loaded by section, never by segment, and no stale segment may point
//! past the end of the smaller file. Before that, the FDEs of the patch code
//! move into `.kpatch.eh_frame` (see `patch_cfi`), in `.eh_frame`'s slot.

use object::elf;

use crate::error::Result;
use crate::image::{EHDR_SIZE, Image, KPATCH_PREFIX, KPATCH_RELA_PREFIX, LE, SHDR_SIZE};
use crate::patch_cfi;

/// Whether a section keeps its bytes through `--strip`.
pub fn keeps_bytes(name: &str) -> bool {
    name.starts_with(KPATCH_PREFIX)
        || name.starts_with(KPATCH_RELA_PREFIX)
        || matches!(name, ".symtab" | ".strtab" | ".shstrtab")
}

fn align_up(v: u64, align: u64) -> u64 {
    if align <= 1 {
        v
    } else {
        v.div_ceil(align) * align
    }
}

/// Strips a linked patch-containing binary. Input untouched; returns the new
/// file image.
pub fn strip(input: &[u8]) -> Result<Vec<u8>> {
    let mut img = Image::parse(input.to_vec())?;
    img.require_patch_sections()?;
    img.symtab()?;
    patch_cfi::keep_patch_cfi(&mut img)?;
    terminate_info(&mut img)?;
    relayout(&img)
}

/// How many zero bytes end `.kpatch.info`: the part of an entry (daddr,
/// saddr, dlen, slen) that LibCare's reader checks for the end of the
/// list. Its libcare-ctl reads the entries of an applied patch back from
/// the patient until it meets them, so without them it runs past the last
/// entry into whatever follows; its own `--strip` appends the same.
pub const INFO_TERMINATOR: usize = 24;

/// Appends the terminator to `.kpatch.info` unless the section already
/// ends inside an entry (a file stripped before).
fn terminate_info(img: &mut Image) -> Result<()> {
    let Some(info) = img.section_by_name(".kpatch.info") else {
        return Ok(());
    };
    let mut bytes = img.bytes(info)?.to_vec();
    if bytes.len() % kpatch_file::INFO_ENTRY_SIZE != 0 {
        return Ok(());
    }
    bytes.resize(bytes.len() + INFO_TERMINATOR, 0);
    img.set_contents(info, &bytes);
    Ok(())
}

/// Where a section's bytes must start in the file: LibCare's loader maps
/// the whole `.kpatch` file at a page boundary and uses each section where
/// it lies, behind the 688-byte header, so the alignment has to hold for
/// the offset plus the header, not the offset alone.
fn place(after: u64, align: u64) -> u64 {
    let header = kpatch_file::HEADER_SIZE as u64;
    align_up(after + header, align.min(4096)) - header
}

/// Whether some section that should have no bytes has them again (binutils
/// `strip` recreates a `.rela.X` section it sees as `SHT_RELA` (by name)
/// with zeroed `R_X86_64_NONE` entries, and adds program headers back), or a
/// kept section lies where `place` would not put it.
pub(crate) fn needs_relayout(img: &Image) -> bool {
    img.header.e_phnum.get(LE) != 0
        || (1..img.sections.len()).any(|i| {
            let keep = keeps_bytes(img.name(i));
            let has_bytes = img.sh_type(i) != elf::SHT_NOBITS;
            let off = img.sections[i].sh_offset.get(LE);
            let align = img.sections[i].sh_addralign.get(LE);
            (!keep && has_bytes && !is_dead_rela(img, i))
                || (keep && has_bytes && img.size(i) != 0 && place(off, align) != off)
        })
}

/// Whether a section is the link-time relocation table (`ld -q`) of a
/// section that is not part of the patch. Nothing ever reads it again, and
/// as a NOBITS section it is harmful: binutils rebuild the segments of a
/// file without program headers from the section order, and a `.rela.tdata`
/// between `.tdata` and `.tbss` (glibc's own TLS in a static executable)
/// breaks the TLS segment ("TLS sections are not adjacent"). Such sections
/// become `SHT_NULL`, empty, flagless; `strip` then drops them.
fn is_dead_rela(img: &Image, i: usize) -> bool {
    let rela_type = matches!(img.sh_type(i), elf::SHT_RELA | elf::SHT_REL);
    let non_alloc_rela = img.flags(i) & u64::from(elf::SHF_ALLOC) == 0
        && img.flags(i) & u64::from(elf::SHF_INFO_LINK) != 0
        && img.name(i).starts_with(".rel");
    img.sh_type(i) == elf::SHT_NULL
        || (!keeps_bytes(img.name(i))
            && img.flags(i) & u64::from(elf::SHF_ALLOC) == 0
            && (rela_type || non_alloc_rela))
}

/// Builds the stripped file image: kept sections' bytes laid out compactly
/// in index order, all others NOBITS, section header table last, no program
/// headers.
pub(crate) fn relayout(img: &Image) -> Result<Vec<u8>> {
    let mut out = vec![0u8; EHDR_SIZE];
    let mut sections = img.sections.clone();
    // Section 0 is the null entry (or holds extended counts): copied as is.
    for (i, sh) in sections.iter_mut().enumerate().skip(1) {
        let keep = keeps_bytes(img.name(i));
        if keep && img.sh_type(i) != elf::SHT_NOBITS {
            let bytes = img.bytes(i)?;
            let off = place(out.len() as u64, sh.sh_addralign.get(LE));
            out.resize(off as usize, 0);
            out.extend_from_slice(bytes);
            sh.sh_offset.set(LE, off);
        } else {
            sh.sh_offset.set(LE, out.len() as u64);
            if is_dead_rela(img, i) {
                sh.sh_type.set(LE, elf::SHT_NULL);
                sh.sh_flags.set(LE, 0);
                sh.sh_size.set(LE, 0);
                sh.sh_addr.set(LE, 0);
                sh.sh_addralign.set(LE, 0);
                sh.sh_link.set(LE, 0);
                sh.sh_info.set(LE, 0);
                sh.sh_entsize.set(LE, 0);
            } else if !keep {
                sh.sh_type.set(LE, elf::SHT_NOBITS);
                // Links and entry sizes describe contents that are gone;
                // flags stay (docs/patch-object.md keeps them).
                sh.sh_link.set(LE, 0);
                sh.sh_info.set(LE, 0);
                sh.sh_entsize.set(LE, 0);
            }
        }
    }
    let shoff = align_up(out.len() as u64, 8);
    out.resize(shoff as usize, 0);
    out.extend_from_slice(object::pod::bytes_of_slice(&sections));
    debug_assert_eq!(out.len(), shoff as usize + sections.len() * SHDR_SIZE);

    let mut header = img.header;
    header.e_shoff.set(LE, shoff);
    header.e_phoff.set(LE, 0);
    header.e_phnum.set(LE, 0);
    header.e_phentsize.set(LE, 0);
    out[..EHDR_SIZE].copy_from_slice(object::pod::bytes_of(&header));
    Ok(out)
}
