//! gensrc: the assembly differ behind `kpatch_gensrc`.
//!
//! It owns the reading of GNU as text (gcc/g++ `-S` output for x86-64) and
//! the writing of the augmented assembly of `docs/patch-object.md` §1: the
//! original text kept as is, changed and new code and data added in
//! `.kpatch.*` sections with one `.kpatch.info` entry per function. It is
//! pure (text in, text out): it never touches ELF, files or processes, and
//! it never changes a byte of the original code or data, so that the
//! linked result lays out every original section exactly as the running
//! binary does.

mod canon;
mod dbgfilter;
mod differ;
mod emit;
mod error;
mod gotpcrel;
mod ident;
mod lex;
mod model;
mod rename;
mod section;

pub use dbgfilter::dbg_filter;
pub use error::Error;

/// Options, in the order they take effect.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Variables whose changes are accepted: the patch keeps using the
    /// original object (`--ignore-changes`).
    pub ignore_changes: Vec<String>,
    /// Emit the patch's functions and variables as global symbols.
    pub force_global: bool,
    /// Reach data outside the patch through GOT entries (`--force-gotpcrel`).
    pub force_gotpcrel: bool,
}

/// What a run decided, for people and for `--json`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Original functions whose code changed (parents of their groups).
    pub changed: Vec<String>,
    pub new_functions: Vec<String>,
    pub new_variables: Vec<String>,
    /// Changed variables accepted by `--ignore-changes`.
    pub ignored_variables: Vec<String>,
}

/// The augmented assembly and the report.
pub struct Outcome {
    pub text: String,
    pub report: Report,
}

/// Diffs `orig` against `patched` (each with the name used in messages).
pub fn diff(
    orig_name: &str,
    orig: &str,
    patched_name: &str,
    patched: &str,
    opts: &Options,
) -> Result<Outcome, Error> {
    let om = model::Model::build(orig_name, orig)?;
    let pm = model::Model::build(patched_name, patched)?;
    let pairing = rename::pair(&om, &pm);
    let data = canon::match_local_data(&om, &pm, &pairing);
    let plan = differ::plan(&om, &pm, &pairing, &data, opts)?;
    let text = emit::Emitter::new(&om, &pm, &pairing, &data, &plan, opts).emit(orig)?;
    Ok(Outcome {
        text,
        report: plan.report,
    })
}
