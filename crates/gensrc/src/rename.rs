//! Pairs the named symbols of the patched file with those of the original.
//!
//! gcc numbers static locals (`count.0`), switch tables (`CSWTCH.12`),
//! `__func__.3` and IPA clones (`f.constprop.0`) with a counter that runs
//! over the whole translation unit, so one edit renumbers names in code
//! that did not change. Names are compared by their shape (every `.N`
//! component replaced by `.#`); symbols with one shape are paired in order
//! of definition, first among those used by the same function, then among
//! the rest.

use std::collections::HashMap;

use crate::ident;
use crate::lex::{self, Kind};
use crate::model::Model;

/// `count.12` -> `count.#`; names without numbered parts are returned as is.
pub fn shape(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.contains('.') {
        return name.into();
    }
    let mut out = String::with_capacity(name.len());
    for (i, part) in name.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if i > 0 && !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(part);
        }
    }
    out.into()
}

/// Patched name -> original name for every paired symbol.
#[derive(Debug, Default)]
pub struct Pairing<'p, 'o> {
    pub to_orig: HashMap<&'p str, &'o str>,
    pub to_patched: HashMap<&'o str, &'p str>,
}

/// For each renumbered data symbol, the shape of the first function using it.
fn owners<'a>(m: &Model<'a>) -> HashMap<&'a str, String> {
    let mut out: HashMap<&'a str, String> = HashMap::new();
    for g in &m.groups {
        let gshape = shape(g.name()).into_owned();
        for st in m.lexed.range(g.start..=g.end) {
            let text = match st.kind {
                Kind::Instruction { operands, .. } => operands,
                Kind::Directive { name, args } if name != ".loc" && name != ".file" => args,
                _ => continue,
            };
            ident::for_each(text, |a, b| {
                let s = &text[a..b];
                if lex::is_local_label(s) || out.contains_key(s) {
                    return;
                }
                if let Some(info) = m.symbols.get_key_value(s)
                    && info.1.func_group.is_none()
                    && info.1.is_defined()
                {
                    out.insert(*info.0, gshape.clone());
                }
            });
        }
    }
    out
}

/// Defined named symbols in order of their first line, with their pairing key.
fn keyed<'a>(m: &Model<'a>) -> Vec<(&'a str, String, String)> {
    let owners = owners(m);
    let mut syms: Vec<(&'a str, u32)> = m
        .symbols
        .iter()
        .filter(|(n, s)| s.is_defined() && !lex::is_local_label(n))
        .map(|(n, s)| (*n, s.line))
        .collect();
    syms.sort_by_key(|&(n, l)| (l, n));
    syms.into_iter()
        .map(|(n, _)| {
            let sh = shape(n).into_owned();
            let owner = owners.get(n).cloned().unwrap_or_default();
            (n, sh, owner)
        })
        .collect()
}

pub fn pair<'p, 'o>(orig: &Model<'o>, patched: &Model<'p>) -> Pairing<'p, 'o> {
    let o = keyed(orig);
    let p = keyed(patched);
    let mut res = Pairing::default();

    // Pass 1: same shape and same owner; pass 2: same shape.
    for pass in 0..2 {
        let key = |sh: &str, ow: &str| {
            if pass == 0 {
                format!("{sh}\u{0}{ow}")
            } else {
                sh.to_string()
            }
        };
        let mut queues: HashMap<String, std::collections::VecDeque<&'o str>> = HashMap::new();
        for (n, sh, ow) in &o {
            if !res.to_patched.contains_key(n) {
                queues.entry(key(sh, ow)).or_default().push_back(n);
            }
        }
        for (n, sh, ow) in &p {
            if res.to_orig.contains_key(n) {
                continue;
            }
            // Exact names never pair with anything else.
            let exact = !sh.contains('#');
            if let Some(q) = queues.get_mut(&key(sh, ow)) {
                let pick = if exact {
                    q.iter().position(|x| x == n)
                } else {
                    Some(0)
                };
                if let Some(i) = pick
                    && let Some(on) = q.remove(i)
                {
                    res.to_orig.insert(n, on);
                    res.to_patched.insert(on, n);
                }
            }
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(shape("count.12"), "count.#");
        assert_eq!(shape("f.constprop.0.isra.3"), "f.constprop.#.isra.#");
        assert_eq!(shape("main"), "main");
        assert_eq!(shape("f.cold"), "f.cold");
    }

    fn model(text: &str) -> Model<'_> {
        Model::build("t.s", text).unwrap()
    }

    fn func(name: &str, var: &str) -> String {
        format!(
            "\t.type {name}, @function\n{name}:\n\tmovl {var}(%rip), %eax\n\tret\n\t.size {name}, .-{name}\n"
        )
    }

    #[test]
    fn static_locals_pair_by_owner_not_by_number() {
        // Original: f uses count.0, g uses count.1. Patched: a new h with its
        // own count comes first and takes number 0.
        let o = format!(
            "{}{}\t.local count.0\n\t.comm count.0,4,4\n\t.local count.1\n\t.comm count.1,4,4\n",
            func("f", "count.0"),
            func("g", "count.1")
        );
        let p = format!(
            "{}{}{}\t.local count.0\n\t.comm count.0,4,4\n\t.local count.1\n\t.comm count.1,4,4\n\t.local count.2\n\t.comm count.2,4,4\n",
            func("h", "count.0"),
            func("f", "count.1"),
            func("g", "count.2")
        );
        let (om, pm) = (model(&o), model(&p));
        let r = pair(&om, &pm);
        assert_eq!(r.to_orig.get("count.1"), Some(&"count.0"));
        assert_eq!(r.to_orig.get("count.2"), Some(&"count.1"));
        assert_eq!(r.to_orig.get("count.0"), None);
        assert_eq!(r.to_orig.get("f"), Some(&"f"));
        assert_eq!(r.to_orig.get("h"), None);
    }
}
