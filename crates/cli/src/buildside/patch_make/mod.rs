//! `libcare-patch-make`: builds `.kpatch` files for a plain make project.
//!
//! It owns driving make twice through `libcare-cc`, applying and reverting
//! the source patches, and turning each patched binary into a `.kpatch`
//! with `kpatch_strip`, `strip` and `kpatch_make`. It must leave the source
//! tree as it found it, whatever step fails.

pub mod elf_probe;
pub mod postprocess;
pub mod project;
pub mod source_patches;
