//! Statements that belong to no function and no variable: symbol aliases
//! (`.set`, `.equ`) and code written at file level with `asm("...")`.
//!
//! New aliases are carried into the patch (g++ names constructors and
//! destructors through `.set`); top-level code and changed aliases cannot
//! be patched and are reported instead of silently dropped.

use std::collections::HashMap;

use crate::lex::Kind;
use crate::model::{Model, after_first_operand, first_operand};
use crate::section::SecKind;

pub struct TopLevel<'a> {
    /// (statement, alias, target).
    pub aliases: Vec<(usize, &'a str, &'a str)>,
    /// Instructions outside every function group.
    pub code: Vec<usize>,
}

pub fn scan<'a>(m: &Model<'a>) -> TopLevel<'a> {
    let mut out = TopLevel {
        aliases: Vec::new(),
        code: Vec::new(),
    };
    let mut g = 0;
    let mut o = 0;
    let n = m.sec_of.len();
    let mut i = 0;
    while i < n {
        if let Some(grp) = m.groups.get(g) {
            if grp.end < i {
                g += 1;
                continue;
            }
            if grp.start <= i {
                i = grp.end + 1;
                continue;
            }
        }
        if let Some(obj) = m.objects.get(o) {
            if obj.end <= i {
                o += 1;
                continue;
            }
            if obj.label_stmt <= i {
                i = obj.end;
                continue;
            }
        }
        if m.sections.get(m.sec_of[i]).kind != SecKind::Debug {
            match m.stmt(i).kind {
                Kind::Directive {
                    name: ".set" | ".equ" | ".equiv",
                    args,
                } if !crate::lex::is_local_label(first_operand(args)) => {
                    // Local aliases are followed wherever they are used.
                    out.aliases
                        .push((i, first_operand(args), after_first_operand(args)));
                }
                Kind::Instruction { .. } => out.code.push(i),
                _ => {}
            }
        }
        i += 1;
    }
    out
}

/// Instruction texts of top-level code, with how often each occurs.
pub fn code_texts<'a>(m: &Model<'a>, t: &TopLevel<'a>) -> HashMap<String, usize> {
    let mut h = HashMap::new();
    for &i in &t.code {
        if let Kind::Instruction { mnemonic, operands } = m.stmt(i).kind {
            *h.entry(format!("{mnemonic} {operands}")).or_default() += 1;
        }
    }
    h
}
