//! Functions that changed only because changed code was inlined into
//! them, told apart by the source lines (`.loc`) their new code comes from.

use std::collections::HashSet;

use crate::Inlined;
use crate::lines::LineMoves;
use crate::model::Model;

/// Where each patched function starts in the source: (file, line, name),
/// sorted, from the first `.loc` of every group.
pub fn declarations<'p>(patched: &Model<'p>) -> Vec<(u32, u32, &'p str)> {
    let mut v = Vec::new();
    for g in &patched.groups {
        let first_loc = patched
            .lexed
            .range(g.start..=g.end)
            .find_map(|st| match st.kind {
                crate::lex::Kind::Directive { name: ".loc", args } => {
                    let mut it = args
                        .split_whitespace()
                        .map(|t| t.parse::<u32>().unwrap_or(0));
                    Some((it.next().unwrap_or(0), it.next().unwrap_or(0)))
                }
                _ => None,
            });
        if let Some((f, l)) = first_loc {
            v.push((f, l, g.name()));
        }
    }
    v.sort();
    v
}

/// Every `.loc` (file, line) of group `gi`.
fn loc_lines(m: &Model<'_>, gi: usize) -> HashSet<(u32, u32)> {
    let g = &m.groups[gi];
    m.lexed
        .range(g.start..=g.end)
        .filter_map(|st| match st.kind {
            crate::lex::Kind::Directive { name: ".loc", args } => {
                let mut it = args
                    .split_whitespace()
                    .map(|t| t.parse::<u32>().unwrap_or(0));
                Some((it.next().unwrap_or(0), it.next().unwrap_or(0)))
            }
            _ => None,
        })
        .collect()
}

/// A changed function whose code now refers to source lines that lie
/// outside its own extent (from its first line to the next function's):
/// it changed because changed code was inlined into it.
pub struct InlineCheck<'a, 'p, 'o> {
    pub orig: &'a Model<'o>,
    pub patched: &'a Model<'p>,
    pub decls: Vec<(u32, u32, &'p str)>,
    pub moves: &'a LineMoves,
    pub changed: &'a HashSet<&'p str>,
}

impl<'p> InlineCheck<'_, 'p, '_> {
    pub fn check(&self, pgi: usize, ogi: usize) -> Option<Inlined> {
        let me = self.patched.groups[pgi].name();
        let before: HashSet<(u32, u32)> = loc_lines(self.orig, ogi)
            .into_iter()
            .map(|(f, l)| (f, self.moves.map_line(f, l)))
            .collect();
        let mut added: Vec<(u32, u32)> = loc_lines(self.patched, pgi)
            .into_iter()
            .filter(|fl| fl.1 != 0 && !before.contains(fl))
            .collect();
        added.sort_unstable();
        let extent_of = |f: u32, line: u32| -> Option<(usize, &'p str)> {
            let i = self
                .decls
                .partition_point(|&(df, dl, _)| (df, dl) <= (f, line));
            let (df, _, name) = *self.decls.get(i.checked_sub(1)?)?;
            (df == f).then_some((i - 1, name))
        };
        let mut callees: Vec<String> = Vec::new();
        for &(f, l) in &added {
            if let Some((_, owner)) = extent_of(f, l) {
                if owner == me || crate::rename::shape(owner) == crate::rename::shape(me) {
                    return None;
                }
                if self.changed.contains(owner) && !callees.iter().any(|c| c == owner) {
                    callees.push(owner.to_string());
                }
            }
        }
        if added.is_empty() {
            // No new source lines: the change sits on lines the function
            // already used. Name changed functions whose lines it inlines.
            let mut lines = Vec::new();
            for (f, l) in loc_lines(self.patched, pgi) {
                if let Some((_, owner)) = extent_of(f, l)
                    && owner != me
                    && self.changed.contains(owner)
                {
                    lines.push(l);
                    if !callees.iter().any(|c| c == owner) {
                        callees.push(owner.to_string());
                    }
                }
            }
            if callees.is_empty() {
                return None;
            }
            lines.sort_unstable();
            return Some(Inlined {
                function: me.to_string(),
                callees,
                lines,
            });
        }
        Some(Inlined {
            function: me.to_string(),
            callees,
            lines: added.iter().map(|&(_, l)| l).collect(),
        })
    }
}
