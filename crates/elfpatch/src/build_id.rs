//! The GNU BuildID that names a target object: lowercase hex of the
//! `NT_GNU_BUILD_ID` note, found through sections or, for a binary without
//! section headers, program headers.

use object::Object;
use object::read::elf::ElfFile64;

/// BuildID of an ELF64 little-endian image, or `None` when it is not such a
/// file or has no BuildID note.
pub fn build_id(data: &[u8]) -> Option<String> {
    let file = ElfFile64::<object::LittleEndian>::parse(data).ok()?;
    let id = file.build_id().ok()??;
    if id.is_empty() {
        return None;
    }
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}
