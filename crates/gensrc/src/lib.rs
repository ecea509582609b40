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
//!
//! The way through, one module each: `lex` cuts lines into statements;
//! `section` follows the assembler's section state; `model` groups a
//! file into function groups (a function with its `.cold` part and the
//! jump tables and exception tables inside it), data objects and the rest;
//! `rename` pairs symbols gcc renumbers (`count.0`/`count.1`, clones);
//! `canon` defines "the same" modulo renaming and debug noise; `lines`
//! spots changes that are only `__LINE__` shifts; `inlined` tells which
//! functions changed through inlining; `differ` decides what
//! the patch carries and what it refuses; `emit` writes the output,
//! `gotpcrel` rewrites data references for `--force-gotpcrel`.
//!
//! Choices worth knowing:
//! - The patch part is appended after the whole original text (not after
//!   each function): `.file N` entries the copied `.loc`s need are all
//!   declared by then.
//! - Inside a copied group every text section maps to `.kpatch.text`
//!   (`.cold` parts to subsection 1, after all hot code), every writable
//!   data section to `.kpatch.data`, every read-only one (`.rodata*`,
//!   `.gcc_except_table`, no `w` flag) to `.kpatch.rodata`: a `-no-pie`
//!   LSDA holds 32-bit absolute addresses that `ld` refuses in writable
//!   data. New variables, `.bss`/`.comm`/`.lcomm`
//!   included, become initialized (zero-filled) `.kpatch.data`, so the
//!   apply side never has to allocate NOBITS space. New thread-local
//!   variables are refused: a running process's TLS blocks cannot grow.
//! - Every `.kpatch.*` section carries SHF_GNU_RETAIN (`R`): nothing in
//!   the program refers to them, and a `-Wl,--gc-sections` link would
//!   otherwise drop them all.
//! - A changed read-only, file-local variable (a `static const` table in
//!   a read-only section or `.data.rel.ro`, a function's static local
//!   included, and a read-only pointer table that names one) has no
//!   runtime state, so it is not refused: the patch carries the new
//!   version as `NAME.kpatch` in `.kpatch.rodata` and patches every
//!   function that reads it (unlinked as `--unlink-symbols` would).
//!   Writable or global variables are still refused.
//! - A `.cold` part that is nothing but traps (`__builtin_trap()`'s
//!   `ud2`) gets no `.kpatch.info` entry: the doctor would refuse its
//!   2 bytes as too short for a jump, and no thread can wait inside it.
//! - A function whose only differences are integer immediates that equal
//!   source lines moved by the edit (checked against the `.loc` lines of
//!   the function and of the whole file) is reported, not patched.
//!
//! Known limits: a callee inlined everywhere (no body of its own) is not
//! named in the report, only its lines; `%fs:` thread-local accesses keep
//! their direct form under `--force-gotpcrel`; an original `.cold` part
//! the patched function no longer has gets no `.kpatch.info` entry (it is
//! reached only from its old parent, which the patch replaces as a whole,
//! so it stays as it is; but the doctor's stack check then does not see a
//! thread inside it), while a `.cold` part new in the patched version
//! travels with its parent into `.kpatch.text` under an entry with no
//! original; new
//! data that points into a function that did not change is refused.
//!
//! Bench: `cargo bench -p gensrc` compiles generated units of three sizes;
//! `GENSRC_BENCH_ORIG=a.s GENSRC_BENCH_PATCHED=b.s cargo bench -p gensrc`
//! measures given files, e.g. the sqlite3 amalgamation (bundled in the
//! `libsqlite3-sys` crate's source, `sqlite3/sqlite3.c`) compiled with
//! `gcc -O2 -g -S` before and after a one-line edit.

mod canon;
mod dbgfilter;
mod differ;
mod emit;
mod error;
mod gotpcrel;
mod ident;
mod inlined;
mod lex;
mod lines;
mod model;
mod rename;
mod section;
mod toplevel;

pub use dbgfilter::dbg_filter;
pub use error::{Error, RefusedVariable};

/// Options, in the order they take effect.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Symbols whose changes are ignored (`--ignore-changes`): a changed
    /// variable is accepted and the patch keeps using the original object;
    /// a changed function is left unpatched.
    pub ignore_changes: Vec<String>,
    /// Functions patched even though their code did not change
    /// (`--must-adapt`), e.g. because what they rely on changed meaning.
    pub must_adapt: Vec<String>,
    /// Symbols the patch must not share with the original
    /// (`--unlink-symbols`): a variable gets a fresh copy in the patch
    /// (initialized from the patched source, so its changes are no longer
    /// refused), a function a private copy that the original never jumps to.
    pub unlink_symbols: Vec<String>,
    /// Emit the patch's functions and variables as global symbols.
    pub force_global: bool,
    /// Reach data outside the patch through GOT entries (`--force-gotpcrel`).
    pub force_gotpcrel: bool,
    /// Patch functions even when only `__LINE__`-style numbers changed.
    pub keep_line_changes: bool,
}

/// What a run decided, for people and for `--json`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Original functions whose code changed (parents of their groups).
    pub changed: Vec<String>,
    /// Where each changed function first differs, for a reviewer.
    pub first_differences: Vec<FirstDifference>,
    pub new_functions: Vec<String>,
    pub new_variables: Vec<String>,
    /// Changed variables accepted by `--ignore-changes`.
    pub ignored_variables: Vec<String>,
    /// Changed functions left alone by `--ignore-changes`.
    pub ignored_functions: Vec<String>,
    /// Unchanged functions patched by `--must-adapt`.
    pub adapted: Vec<String>,
    /// Symbols given their own copy by `--unlink-symbols`.
    pub unlinked: Vec<String>,
    /// Changes the patch cannot carry and leaves out (top-level code,
    /// aliases that point elsewhere now), with their patched lines.
    pub not_patched: Vec<String>,
    /// Changed functions whose new code all comes from other functions
    /// inlined into them.
    pub inlined: Vec<Inlined>,
    /// Functions not patched: only line numbers changed.
    pub line_only: Vec<String>,
    /// Changed read-only file-local variables the patch carries a new copy
    /// of, with the functions patched because they read them.
    pub read_only_copies: Vec<ReadOnlyCopy>,
}

/// A read-only, file-local variable whose initial value (or size) changed:
/// the patch holds the new version as `NAME.kpatch` and patches every
/// function that reads it, to read the copy.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReadOnlyCopy {
    pub variable: String,
    pub readers: Vec<String>,
}

/// The first statement that differs in a changed function.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FirstDifference {
    pub function: String,
    pub orig_line: u32,
    pub patched_line: u32,
}

/// A function that changed because changed code was inlined into it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Inlined {
    pub function: String,
    /// The functions the new code comes from, where the `.loc` lines tell
    /// (a helper inlined everywhere has no body of its own to name).
    pub callees: Vec<String>,
    /// Source lines of the new code.
    pub lines: Vec<u32>,
}

impl Report {
    /// The plain-text form, one line per kind, for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, items: &[String]| {
            if !items.is_empty() {
                out.push_str(label);
                out.push_str(": ");
                out.push_str(&items.join(", "));
                out.push('\n');
            }
        };
        let changed: Vec<String> = self
            .changed
            .iter()
            .map(
                |f| match self.first_differences.iter().find(|d| &d.function == f) {
                    Some(d) => format!("{f} (lines {}/{})", d.orig_line, d.patched_line),
                    None => f.clone(),
                },
            )
            .collect();
        line("changed functions", &changed);
        line("new functions", &self.new_functions);
        let inl: Vec<String> = self
            .inlined
            .iter()
            .map(|i| {
                if i.callees.is_empty() {
                    format!("{} (inlined code from lines {:?})", i.function, i.lines)
                } else {
                    format!("{} (inlined {})", i.function, i.callees.join(", "))
                }
            })
            .collect();
        line("changed because inlined", &inl);
        for c in &self.read_only_copies {
            let readers = if c.readers.is_empty() {
                "none".to_string()
            } else {
                c.readers.join(", ")
            };
            line(
                &format!("read-only variable {} changed", c.variable),
                &[format!(
                    "new copy in the patch; functions patched because they read it: {readers}"
                )],
            );
        }
        line("not patched, only line numbers changed", &self.line_only);
        line("new variables", &self.new_variables);
        line(
            "changed variables kept (--ignore-changes)",
            &self.ignored_variables,
        );
        line(
            "changed functions not patched (--ignore-changes)",
            &self.ignored_functions,
        );
        line("patched without changes (--must-adapt)", &self.adapted);
        line("own copies in the patch (--unlink-symbols)", &self.unlinked);
        line("left out, cannot be patched", &self.not_patched);
        if out.is_empty() {
            out.push_str("no changes\n");
        }
        out
    }
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
    let mut buf = Vec::with_capacity(orig.len() + orig.len() / 8);
    let report = diff_to(orig_name, orig, patched_name, patched, opts, &mut buf)?;
    let text = String::from_utf8(buf).expect("assembly text in, assembly text out");
    Ok(Outcome { text, report })
}

/// Like [`diff`], writing the augmented assembly to `out` as it goes (the
/// output is as large as the input; this keeps it out of memory). Nothing
/// is written when the diff is refused.
pub fn diff_to(
    orig_name: &str,
    orig: &str,
    patched_name: &str,
    patched: &str,
    opts: &Options,
    out: &mut dyn std::io::Write,
) -> Result<Report, Error> {
    // Most units of a project do not change: only check that the text
    // parses, there is nothing to compare.
    if orig == patched {
        lex::lex_each(orig_name, orig, |_| Ok(()))?;
        out.write_all(orig.as_bytes()).map_err(Error::Write)?;
        return Ok(Report::default());
    }
    // The two files are read independently: one thread each.
    let (om, pm) = std::thread::scope(|s| {
        let o = s.spawn(|| model::Model::build(orig_name, orig));
        let p = model::Model::build(patched_name, patched);
        (o.join().expect("model thread"), p)
    });
    let (om, pm) = (om?, pm?);
    let mut pairing = rename::pair(&om, &pm);
    for name in &opts.unlink_symbols {
        let o = pairing.to_orig.remove(name.as_str()).or_else(|| {
            pairing
                .to_patched
                .get(name.as_str())
                .copied()
                .and_then(|p| pairing.to_orig.remove(p))
        });
        match o {
            Some(o) => {
                pairing.to_patched.remove(o);
            }
            None => {
                return Err(Error::UnknownName {
                    option: "--unlink-symbols",
                    name: name.clone(),
                });
            }
        }
    }
    let mut data = canon::match_local_data(&om, &pm, &pairing);
    // A changed read-only local table is unlinked like --unlink-symbols
    // does: its readers then differ from their originals and move to the
    // copy.
    // Until nothing changes: a read-only table of pointers to a copied
    // table changes with it.
    let mut copies = Vec::new();
    loop {
        let more = differ::read_only_changes(&om, &pm, &pairing, &data, opts);
        if more.is_empty() {
            break;
        }
        for &(p, o) in &more {
            pairing.to_orig.remove(p);
            pairing.to_patched.remove(o);
        }
        data = canon::match_local_data(&om, &pm, &pairing);
        copies.extend(more);
    }
    let mut plan = differ::plan(&om, &pm, &pairing, &data, opts)?;
    plan.report.unlinked = opts.unlink_symbols.clone();
    for &(p, o) in &copies {
        plan.report.new_variables.retain(|v| v != p);
        plan.report.read_only_copies.push(ReadOnlyCopy {
            variable: o.to_string(),
            readers: differ::readers(&pm, &plan.changed, &om, p),
        });
    }
    emit::Emitter::new(&om, &pm, &pairing, &data, &plan, opts).emit_to(orig, out)?;
    Ok(plan.report)
}
