//! elfpatch: in-place editing of the patch ELF on the build side.
//!
//! It owns the steps between `ld -q` and `kpatch_make`: `--strip` (keep only
//! `.kpatch.*` bytes, and the patch code's own unwind info as
//! `.kpatch.eh_frame`), `--rel-fixup` (turn the linker's relocations into the
//! forms the doctor resolves, and check the patch against the original
//! binary), `--undo-link` (make addresses section-relative), BuildID lookup,
//! and a stable text dump of a patch ELF. It reads with the `object` crate and
//! edits raw structs in place so that section indices never change. It never
//! touches a process (no ptrace) and never parses assembly.
//! The contract it produces is docs/patch-object.md, section 3.

mod build_id;
mod check;
mod dump;
mod eh_frame;
mod error;
mod got_relax;
mod image;
mod info;
mod original;
mod output;
mod patch_cfi;
mod rel_fixup;
mod strip;
mod tls;
mod undo_link;

pub use build_id::build_id;
pub use check::{check_elf, check_patch_elf};
pub use dump::dump;
pub use error::{Error, Result};
pub use image::{KPATCH_PREFIX, KPATCH_RELA_PREFIX, reloc_name};
pub use info::{PatchedFunction, patched_functions};
pub use output::write_file_atomically;
pub use patch_cfi::{KPATCH_EH_FRAME, KPATCH_RELA_EH_FRAME};
pub use rel_fixup::{FixupError, rel_fixup};
pub use strip::{keeps_bytes, strip};
pub use undo_link::undo_link;
