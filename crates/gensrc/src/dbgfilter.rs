//! `--dbg-filter`: one input, printed without its debug information.
//!
//! Drops `.loc`, `.loc_mark_labels`, numbered `.file` directives and every
//! statement that lands in a `.debug_*` section, so that two filtered files
//! differ only where code or data differ (a reviewer can `diff` them), and
//! the result still assembles to the same code and data.

use crate::error::Error;
use crate::lex::Kind;
use crate::model::Model;
use crate::section::SecKind;

pub fn dbg_filter(name: &str, text: &str) -> Result<String, Error> {
    let m = Model::build(name, text)?;
    let mut out = String::with_capacity(text.len() / 2);
    let mut si = 0;
    let stmts = &m.lexed.stmts;
    let mut last_emitted_sec: Option<u32> = None;
    for (li, line) in m.lexed.lines.iter().enumerate() {
        let lineno = li as u32 + 1;
        let first = si;
        while si < stmts.len() && stmts[si].line == lineno {
            si += 1;
        }
        if first == si {
            // Comment or blank line.
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let st = &stmts[first];
        let sec = m.sec_of[si - 1];
        let in_debug = m.sections.get(sec).kind == SecKind::Debug;
        let drop = in_debug
            || match st.kind {
                Kind::Directive { name, args } => {
                    matches!(name, ".loc" | ".loc_mark_labels")
                        || name == ".file"
                            && args.trim_start().starts_with(|c: char| c.is_ascii_digit())
                }
                _ => false,
            };
        if drop {
            continue;
        }
        let is_switch = matches!(st.kind, Kind::Directive { name, .. }
            if matches!(name, ".popsection" | ".previous"));
        let came_from_debug = last_emitted_sec
            .is_none_or(|s| s != m.sec_of[first.saturating_sub(1)])
            && first > 0
            && m.sections.get(m.sec_of[first - 1]).kind == SecKind::Debug;
        if is_switch && came_from_debug {
            // The matching switch into debug info was dropped: say where we
            // are going instead of where we came back from.
            out.push_str("\t.section\t");
            out.push_str(m.sections.get(sec).name);
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
        last_emitted_sec = Some(sec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_lines_go_code_stays() {
        let src = "\t.file\t\"a.c\"\n\t.text\n\t.file 1 \"a.c\"\nf:\n\t.loc 1 3 1 view -0\n\tret\n\t.section\t.debug_info,\"\",@progbits\n\t.long 5\n\t.text\n\tnop\n";
        let out = dbg_filter("a.s", src).unwrap();
        assert_eq!(
            out,
            "\t.file\t\"a.c\"\n\t.text\nf:\n\tret\n\t.text\n\tnop\n"
        );
    }
}
