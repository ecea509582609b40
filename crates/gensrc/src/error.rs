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

/// How many refused variables a message names: an instrumented or
/// generated file can change hundreds at once, and a line that lists them
/// all hides the first, which is the one to look at.
const NAMED_AT_MOST: usize = 3;

fn list(v: &[RefusedVariable]) -> String {
    let mut text = v
        .iter()
        .take(NAMED_AT_MOST)
        .map(|r| {
            format!(
                "variable `{}` changed ({}): original line {}, patched line {}",
                r.name, r.what, r.orig_line, r.patched_line
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    if v.len() > NAMED_AT_MOST {
        text.push_str(&format!(
            "; and {} more changed variable(s)",
            v.len() - NAMED_AT_MOST
        ));
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_refusal_names_a_few_variables_and_counts_the_rest() {
        let v: Vec<RefusedVariable> = (0..40)
            .map(|i| RefusedVariable {
                name: format!("__gcov0.f{i}"),
                what: "size".into(),
                orig_line: i,
                patched_line: i,
            })
            .collect();
        let msg = Error::VariablesChanged(v).to_string();
        assert!(
            msg.contains("__gcov0.f0") && msg.contains("__gcov0.f2"),
            "{msg}"
        );
        assert!(!msg.contains("__gcov0.f3`"), "{msg}");
        assert!(msg.contains("and 37 more"), "{msg}");
    }
}
