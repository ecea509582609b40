//! The relocations of a patch ELF: the one table that the build side
//! (`kpatch_strip --rel-fixup`, `--undo-link`) and the apply side (the
//! doctor's relocation) read, so that a type is added in one place.
//!
//! Type numbers are the x86-64 psABI's. Which types reach the doctor is
//! the contract of docs/patch-object.md, section 3; which ones LibCare's
//! loader applies is a fact of its public sources (it refuses any other and
//! only logs TPOFF32/TPOFF64), kept here so that our files stay loadable by
//! it.

/// What the contract says about one relocation type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloc {
    pub r_type: u32,
    pub name: &'static str,
    /// Bytes the relocation writes (0 for `NONE`).
    pub width: u8,
    /// Reads an address from a GOT slot: the doctor's jump table entry of
    /// the symbol serves as that slot.
    pub reads_slot: bool,
    /// May appear in a finished patch (after `--rel-fixup`).
    pub in_patch: bool,
    /// LibCare's libcare-ctl applies it.
    pub libcare_applies: bool,
}

pub const R_X86_64_NONE: u32 = 0;
pub const R_X86_64_64: u32 = 1;
pub const R_X86_64_PC32: u32 = 2;
pub const R_X86_64_GOT32: u32 = 3;
pub const R_X86_64_PLT32: u32 = 4;
pub const R_X86_64_GOTPCREL: u32 = 9;
pub const R_X86_64_32: u32 = 10;
pub const R_X86_64_32S: u32 = 11;
pub const R_X86_64_TPOFF64: u32 = 18;
pub const R_X86_64_TLSGD: u32 = 19;
pub const R_X86_64_TLSLD: u32 = 20;
pub const R_X86_64_DTPOFF32: u32 = 21;
pub const R_X86_64_GOTTPOFF: u32 = 22;
pub const R_X86_64_TPOFF32: u32 = 23;
pub const R_X86_64_PC64: u32 = 24;
pub const R_X86_64_GOTOFF64: u32 = 25;
pub const R_X86_64_GOTPC32: u32 = 26;
pub const R_X86_64_GOTPCRELX: u32 = 41;
pub const R_X86_64_REX_GOTPCRELX: u32 = 42;

const fn r(
    r_type: u32,
    name: &'static str,
    width: u8,
    reads_slot: bool,
    in_patch: bool,
    libcare_applies: bool,
) -> Reloc {
    Reloc {
        r_type,
        name,
        width,
        reads_slot,
        in_patch,
        libcare_applies,
    }
}

/// Every relocation type the tools know by name; `in_patch` marks those a
/// finished patch may carry.
pub const RELOCATIONS: &[Reloc] = &[
    r(R_X86_64_NONE, "R_X86_64_NONE", 0, false, true, true),
    r(R_X86_64_64, "R_X86_64_64", 8, false, true, true),
    r(R_X86_64_PC32, "R_X86_64_PC32", 4, false, true, true),
    r(R_X86_64_GOT32, "R_X86_64_GOT32", 4, false, false, false),
    // Turned into PC32 by --rel-fixup (the jump table stands in for the PLT).
    r(R_X86_64_PLT32, "R_X86_64_PLT32", 4, false, false, false),
    // Only against undefined symbols once fixed up.
    r(R_X86_64_GOTPCREL, "R_X86_64_GOTPCREL", 4, true, true, true),
    r(R_X86_64_32, "R_X86_64_32", 4, false, true, true),
    r(R_X86_64_32S, "R_X86_64_32S", 4, false, true, true),
    r(R_X86_64_TPOFF64, "R_X86_64_TPOFF64", 8, false, false, false),
    r(R_X86_64_TLSGD, "R_X86_64_TLSGD", 4, false, false, false),
    r(R_X86_64_TLSLD, "R_X86_64_TLSLD", 4, false, false, false),
    r(
        R_X86_64_DTPOFF32,
        "R_X86_64_DTPOFF32",
        4,
        false,
        false,
        false,
    ),
    // The addend names the original's GOT slot for the thread-local.
    r(R_X86_64_GOTTPOFF, "R_X86_64_GOTTPOFF", 4, false, true, true),
    // Left only where the original gives no offset to check it against.
    r(R_X86_64_TPOFF32, "R_X86_64_TPOFF32", 4, false, true, false),
    r(R_X86_64_PC64, "R_X86_64_PC64", 8, false, true, false),
    r(
        R_X86_64_GOTOFF64,
        "R_X86_64_GOTOFF64",
        8,
        false,
        false,
        false,
    ),
    r(R_X86_64_GOTPC32, "R_X86_64_GOTPC32", 4, false, false, false),
    r(
        R_X86_64_GOTPCRELX,
        "R_X86_64_GOTPCRELX",
        4,
        true,
        true,
        true,
    ),
    r(
        R_X86_64_REX_GOTPCRELX,
        "R_X86_64_REX_GOTPCRELX",
        4,
        true,
        true,
        true,
    ),
];

/// The table's entry for `r_type`, if the tools know it.
pub fn reloc(r_type: u32) -> Option<&'static Reloc> {
    RELOCATIONS.iter().find(|r| r.r_type == r_type)
}

/// `R_X86_64_PC32`, or `R_X86_64_<n>` for a type the table lacks.
pub fn reloc_name(r_type: u32) -> String {
    reloc(r_type).map_or_else(|| format!("R_X86_64_<{r_type}>"), |r| r.name.to_string())
}

/// Whether a finished patch may carry `r_type`.
pub fn in_patch(r_type: u32) -> bool {
    reloc(r_type).is_some_and(|r| r.in_patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_type_and_names_match_numbers() {
        for (i, a) in RELOCATIONS.iter().enumerate() {
            assert!(
                RELOCATIONS[i + 1..].iter().all(|b| b.r_type != a.r_type),
                "{} twice",
                a.name
            );
        }
        assert_eq!(reloc_name(R_X86_64_REX_GOTPCRELX), "R_X86_64_REX_GOTPCRELX");
        assert_eq!(reloc_name(99), "R_X86_64_<99>");
        // What LibCare's loader applies is a subset of what we may emit.
        assert!(RELOCATIONS.iter().all(|r| !r.libcare_applies || r.in_patch));
        assert!(!in_patch(R_X86_64_PLT32));
    }
}
