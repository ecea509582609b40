//! The one error type of the crate: every variant names the input, the
//! block and the line(s) a person has to look at.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- input text ----
    #[error("{file}:{line}: {msg}")]
    Parse {
        file: String,
        line: u32,
        msg: String,
    },

    // ---- refusals: the change cannot be expressed as a live patch ----
    #[error("{}; {VARIABLE_HINT}", list(.0))]
    VariablesChanged(Vec<RefusedVariable>),
    #[error("`{block}` cannot be patched ({what}): {}, patched line {patched_line}", orig_at(*.orig_line))]
    Unsupported {
        block: String,
        what: String,
        orig_line: u32,
        patched_line: u32,
    },
    #[error("{option}: no symbol `{name}` in both inputs")]
    UnknownName { option: &'static str, name: String },
    #[error("writing the output: {0}")]
    Write(#[source] std::io::Error),
    #[error("--dbg-filter takes exactly one input, got {0}")]
    DbgFilterInputs(usize),
}

/// One variable whose change cannot be patched.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RefusedVariable {
    pub name: String,
    pub what: String,
    pub orig_line: u32,
    pub patched_line: u32,
}

fn list(v: &[RefusedVariable]) -> String {
    v.iter()
        .map(|r| {
            format!(
                "variable `{}` changed ({}): original line {}, patched line {}",
                r.name, r.what, r.orig_line, r.patched_line
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// "original line N", or that there is none (0: the block is new).
fn orig_at(line: u32) -> String {
    if line == 0 {
        "no original".to_string()
    } else {
        format!("original line {line}")
    }
}

pub const VARIABLE_HINT: &str = "a live patch cannot change data that already exists in the \
    running process; keep the old variable and add a new one, or list the name with \
    --ignore-changes if the change is known to be safe";
