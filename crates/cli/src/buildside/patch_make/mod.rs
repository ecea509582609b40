//! `libcare-patch-make`: builds `.kpatch` files for a project built with
//! make or ninja.
//!
//! It owns driving the build twice through `libcare-cc`, applying and
//! reverting the source patches, and turning each changed installed binary
//! into a `.kpatch` with `kpatch_strip`, `strip` and `kpatch_make`. It must
//! leave the source tree as it found it, whatever step fails.

pub mod binaries;
pub mod build;
pub mod elf_probe;
pub mod postprocess;
pub mod project;
pub mod source_patches;
