//! `libcare-cc`: the gcc/g++ drop-in used by both build stages.
//!
//! It owns reading a compiler command line and deciding which commands a
//! stage runs. It must never drop or reorder a flag it does not understand,
//! and it must never change what the original stage produces: those objects
//! have to be the ones users run.

pub mod command_line;
pub mod plan;
pub mod record;
pub mod toolchain;
