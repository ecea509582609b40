//! `--dbg-filter`: one input, printed without its debug information.
//!
//! Drops `.loc`, `.loc_mark_labels`, numbered `.file` directives and every
//! statement that lands in a `.debug_*` section, so that two filtered files
//! differ only where code or data differ (a reviewer can `diff` them), and
//! the result still assembles to the same code and data.

use crate::error::Error;
use crate::lex::{self, Kind};
use crate::section::{Effect, SecKind, Sections, Tracker};

pub fn dbg_filter(name: &str, text: &str) -> Result<String, Error> {
    // Per line: keep it, drop it, or replace it by an explicit switch.
    #[derive(Clone, Copy, PartialEq)]
    enum Fate {
        Keep,
        Drop,
        SwitchTo(u32),
    }
    let mut sections = Sections::default();
    let mut tracker = Tracker::new(&mut sections);
    let mut fates: Vec<Fate> = Vec::new();
    lex::lex_each(name, text, |st| {
        let before = tracker.current;
        let mut fate = Fate::Keep;
        if let Kind::Directive { name: d, args } = st.kind {
            let eff = tracker
                .apply(&mut sections, d, args)
                .map_err(|msg| Error::Parse {
                    file: name.to_string(),
                    line: st.line,
                    msg,
                })?;
            let leaves_debug = eff == Effect::Switched
                && sections.get(before).kind == SecKind::Debug
                && sections.get(tracker.current).kind != SecKind::Debug;
            if leaves_debug && matches!(d, ".popsection" | ".previous") {
                // The switch into debug info is dropped: say where we go.
                fate = Fate::SwitchTo(tracker.current);
            } else if matches!(d, ".loc" | ".loc_mark_labels")
                || d == ".file" && args.trim_start().starts_with(|c: char| c.is_ascii_digit())
            {
                fate = Fate::Drop;
            }
        }
        if fate == Fate::Keep && sections.get(tracker.current).kind == SecKind::Debug {
            fate = Fate::Drop;
        }
        let idx = st.line as usize - 1;
        if fates.len() <= idx {
            fates.resize(idx + 1, Fate::Keep);
        }
        // The first statement of a line decides for the whole line.
        if fates[idx] == Fate::Keep {
            fates[idx] = fate;
        }
        Ok(())
    })?;
    let mut out = String::with_capacity(text.len() / 2);
    for (i, line) in text.lines().enumerate() {
        match fates.get(i).copied().unwrap_or(Fate::Keep) {
            Fate::Keep => {
                out.push_str(line);
                out.push('\n');
            }
            Fate::Drop => {}
            Fate::SwitchTo(s) => {
                out.push_str("\t.section\t");
                out.push_str(sections.get(s).name);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_lines_go_code_stays() {
        let src = "\t.file\t\"a.c\"\n\t.text\n\t.file 1 \"a.c\"\nf:\n\t.loc 1 3 1 view -0\n\tret\n\t.section\t.debug_info,\"\",@progbits\n\t.long 5\n\t.text\n\tnop\n\t.pushsection .debug_line\n\t.byte 1\n\t.popsection\n\tret\n";
        let out = dbg_filter("a.s", src).unwrap();
        assert_eq!(
            out,
            "\t.file\t\"a.c\"\n\t.text\nf:\n\tret\n\t.text\n\tnop\n\t.section\t.text\n\tret\n"
        );
    }
}
