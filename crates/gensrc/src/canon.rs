//! Canonical forms: what two blocks must share to count as "the same".
//!
//! Data objects compare by section, alignment and content; references to
//! other local constants compare by what those constants hold. Function
//! groups compare instruction by instruction with their own local labels
//! numbered by first use, debug-only labels and `.loc`/`.file` left out,
//! and named symbols seen through the [`Pairing`].

use std::collections::HashMap;

use crate::ident;
use crate::lex::{self, Kind};
use crate::model::Model;
use crate::rename::Pairing;
use crate::section::SecKind;

/// Which side of the diff a canonical form is computed for.
pub enum Side<'r, 'p, 'o> {
    /// The original; local constants read as the first constant with the
    /// same content (gcc sometimes emits one string twice).
    Orig { data: Option<&'r DataMatch<'p, 'o>> },
    Patched {
        pairing: &'r Pairing<'p, 'o>,
        data: &'r DataMatch<'p, 'o>,
    },
}

impl Side<'_, '_, '_> {
    /// How a reference to `name` (not a label of the block itself) reads.
    fn reference(&self, m: &Model<'_>, name: &str, out: &mut String) {
        if let Some(expr) = m.local_alias.get(name) {
            // Compare what the alias stands for, not its number.
            out.push('(');
            push_mapped(out, expr, |r, out| self.reference(m, r, out));
            out.push(')');
            return;
        }
        match self {
            Side::Orig { data } => match data.and_then(|d| d.orig_rep.get(name)) {
                Some(rep) => out.push_str(rep),
                None => out.push_str(name),
            },
            Side::Patched { pairing, data } => {
                if lex::is_local_label(name) {
                    if m.local_data.contains_key(name) {
                        match data.to_orig.get(name) {
                            Some(o) => out.push_str(o),
                            None => {
                                out.push('?');
                                out.push_str(name);
                            }
                        }
                    } else {
                        out.push_str(name);
                    }
                } else if let Some(o) = pairing.to_orig.get(name) {
                    out.push_str(o);
                } else if m.symbols.get(name).is_some_and(|s| s.is_defined()) {
                    out.push('?');
                    out.push_str(name);
                } else {
                    out.push_str(name);
                }
            }
        }
    }
}

/// Appends `text` with whitespace runs collapsed and references rewritten.
fn push_mapped(out: &mut String, text: &str, mut each: impl FnMut(&str, &mut String)) {
    let mut copied = 0;
    let push_ws = |out: &mut String, s: &str| {
        let mut in_ws = false;
        for ch in s.chars() {
            if ch == ' ' || ch == '\t' {
                if !in_ws {
                    out.push(' ');
                }
                in_ws = true;
            } else {
                out.push(ch);
                in_ws = false;
            }
        }
    };
    ident::for_each(text, |a, b| {
        push_ws(out, &text[copied..a]);
        each(&text[a..b], out);
        copied = b;
    });
    push_ws(out, &text[copied..]);
}

/// Canonical content of data object `idx`: section, alignment, directives.
pub fn data_object(m: &Model<'_>, idx: usize, side: &Side<'_, '_, '_>) -> String {
    let o = &m.objects[idx];
    let mut out = String::new();
    out.push_str(m.sections.get(o.section).name);
    out.push('\n');
    if let Some((n, a)) = o.align {
        out.push_str(n);
        out.push(' ');
        out.push_str(a);
    }
    out.push('\n');
    for st in m.lexed.range(o.label_stmt + 1..o.end) {
        if let Kind::Directive { name, args } = st.kind {
            out.push_str(name);
            out.push(' ');
            push_mapped(&mut out, args, |r, out| side.reference(m, r, out));
            out.push('\n');
        }
    }
    out
}

/// Patched local constants (`.LC3`) that hold what an original one holds.
#[derive(Debug, Default)]
pub struct DataMatch<'p, 'o> {
    pub to_orig: HashMap<&'p str, &'o str>,
    /// Original constant -> first original constant with its content.
    pub orig_rep: HashMap<&'o str, &'o str>,
}

pub fn match_local_data<'p, 'o>(
    orig: &Model<'o>,
    patched: &Model<'p>,
    pairing: &Pairing<'p, 'o>,
) -> DataMatch<'p, 'o> {
    let mut by_content: HashMap<String, &'o str> = HashMap::new();
    let mut olabels: Vec<(&'o str, usize)> =
        orig.local_data.iter().map(|(k, v)| (*k, *v)).collect();
    olabels.sort_by_key(|&(_, i)| i);
    let mut res = DataMatch::default();
    for (label, idx) in olabels {
        let rep = *by_content
            .entry(data_object(orig, idx, &Side::Orig { data: None }))
            .or_insert(label);
        if rep != label {
            res.orig_rep.insert(label, rep);
        }
    }
    let mut labels: Vec<(&'p str, usize)> =
        patched.local_data.iter().map(|(k, v)| (*k, *v)).collect();
    labels.sort_by_key(|&(_, i)| i);
    // Constants referring to other constants need those matched first; a
    // few rounds settle every chain gcc emits (tables of strings).
    let mut done: HashMap<&'p str, bool> = HashMap::new();
    for _round in 0..4 {
        let mut progress = false;
        for &(label, idx) in &labels {
            if done.contains_key(label) {
                continue;
            }
            let deps_ready = refs_of(patched, idx).iter().all(|r| {
                !patched.local_data.contains_key(r.as_str())
                    || done.contains_key(r.as_str())
                    || r == label
            });
            if !deps_ready {
                continue;
            }
            let side = Side::Patched {
                pairing,
                data: &res,
            };
            let key = data_object(patched, idx, &side);
            let hit = by_content.get(&key).copied();
            if let Some(o) = hit {
                res.to_orig.insert(label, o);
            }
            done.insert(label, hit.is_some());
            progress = true;
        }
        if !progress {
            break;
        }
    }
    res
}

fn refs_of(m: &Model<'_>, idx: usize) -> Vec<String> {
    let o = &m.objects[idx];
    let mut v = Vec::new();
    for st in m.lexed.range(o.label_stmt + 1..o.end) {
        if let Kind::Directive { args, .. } = st.kind {
            ident::for_each(args, |a, b| {
                let s = &args[a..b];
                if lex::is_local_label(s) {
                    v.push(s.to_string());
                }
            });
        }
    }
    v
}

/// One canonical statement of a function group, with its source line.
pub struct CanonLine {
    pub line: u32,
    /// Source file and line of the last `.loc` before it in the group
    /// (line 0: none).
    pub src_file: u32,
    pub src_line: u32,
    pub text: String,
}

/// Directives that never make code different.
pub fn is_debug_directive(name: &str) -> bool {
    matches!(name, ".loc" | ".loc_mark_labels" | ".file" | ".ident")
}

pub fn is_section_directive(name: &str) -> bool {
    matches!(
        name,
        ".text"
            | ".data"
            | ".bss"
            | ".section"
            | ".pushsection"
            | ".popsection"
            | ".previous"
            | ".subsection"
    )
}

/// Local labels defined in group `gi` that code of the group refers to.
pub fn used_local_labels<'a>(m: &Model<'a>, gi: usize) -> HashMap<&'a str, ()> {
    let g = &m.groups[gi];
    let mut used = HashMap::new();
    for st in m.lexed.range(g.start..=g.end) {
        let text = match st.kind {
            Kind::Instruction { operands, .. } => operands,
            Kind::Directive { name, args } if !is_debug_directive(name) => args,
            _ => continue,
        };
        ident::for_each(text, |a, b| {
            let s = &text[a..b];
            if lex::is_local_label(s) {
                used.insert(s, ());
            }
        });
    }
    used
}

/// The canonical statements of function group `gi`.
pub fn group(m: &Model<'_>, gi: usize, side: &Side<'_, '_, '_>) -> Vec<CanonLine> {
    let g = &m.groups[gi];
    let used = used_local_labels(m, gi);
    let mut defined: HashMap<&str, ()> = HashMap::new();
    for st in m.lexed.range(g.start..=g.end) {
        if let Kind::Label(l) = st.kind
            && lex::is_local_label(l)
        {
            defined.insert(l, ());
        }
    }
    let mut numbers: HashMap<&str, usize> = HashMap::new();
    let mut sections: Vec<u32> = Vec::new();
    let mut last_sec = u32::MAX;
    let mut out = Vec::new();
    let (mut src_file, mut src_line) = (0, 0);
    for i in g.start..=g.end {
        let st = m.lexed.get(i);
        if let Kind::Directive { name: ".loc", args } = st.kind {
            let mut it = args
                .split_whitespace()
                .map(|t| t.parse::<u32>().unwrap_or(0));
            src_file = it.next().unwrap_or(0);
            src_line = it.next().unwrap_or(0);
        }
        let sec = m.sec_of[i];
        let kind = m.sections.get(sec).kind;
        if kind == SecKind::Debug || kind == SecKind::Other {
            continue;
        }
        let mut text = String::new();
        if sec != last_sec {
            let n = sections.iter().position(|&s| s == sec).unwrap_or_else(|| {
                sections.push(sec);
                sections.len() - 1
            });
            text.push_str(&format!("@section {kind:?} {n}\n"));
            last_sec = sec;
        }
        let mut map_ref = |r: &str, out: &mut String| {
            if let Some((&key, _)) = defined.get_key_value(r) {
                let k = numbers.len();
                let n = *numbers.entry(key).or_insert(k);
                out.push_str(&format!("%L{n}"));
            } else {
                side.reference(m, r, out);
            }
        };
        match st.kind {
            Kind::Label(l) => {
                if lex::is_local_label(l) {
                    if !used.contains_key(l) {
                        continue;
                    }
                    map_ref(l, &mut text);
                } else {
                    side.reference(m, l, &mut text);
                }
                text.push(':');
            }
            Kind::Directive { name, args } => {
                if is_debug_directive(name) || is_section_directive(name) {
                    if text.is_empty() {
                        continue;
                    }
                } else {
                    text.push_str(name);
                    text.push(' ');
                    push_mapped(&mut text, args, &mut map_ref);
                }
            }
            Kind::Instruction { mnemonic, operands } => {
                text.push_str(mnemonic);
                text.push(' ');
                push_mapped(&mut text, operands, &mut map_ref);
            }
        }
        out.push(CanonLine {
            line: st.line,
            src_file,
            src_line,
            text,
        });
    }
    out
}

/// First differing pair of lines, or `None` when the groups are the same.
pub fn first_difference(a: &[CanonLine], b: &[CanonLine]) -> Option<(u32, u32)> {
    let n = a.len().min(b.len());
    for i in 0..n {
        if a[i].text != b[i].text {
            return Some((a[i].line, b[i].line));
        }
    }
    if a.len() != b.len() {
        let la = a.get(n).or(a.last()).map_or(0, |l| l.line);
        let lb = b.get(n).or(b.last()).map_or(0, |l| l.line);
        return Some((la, lb));
    }
    None
}
