//! Decides what the patch carries: changed and new function groups, new
//! variables; refuses changes to variables that already exist, except
//! read-only file-local ones, which the patch copies ([`read_only_changes`]).

use std::collections::HashSet;

use crate::canon::{self, DataMatch, Side};
use crate::error::{Error, RefusedVariable};
use crate::inlined::{self, InlineCheck};
use crate::lines::{self, LineMoves, loc_pairs, loc_seq};
use crate::model::Model;
use crate::rename::Pairing;
use crate::toplevel;
use crate::{Options, Report};

#[derive(Debug, Default)]
pub struct Plan<'p, 'o> {
    /// (patched group, original group) whose code differs.
    pub changed: Vec<(usize, usize)>,
    /// Patched groups with no original.
    pub new_groups: Vec<usize>,
    /// Named data symbols of the patched file with no original.
    pub new_vars: Vec<&'p str>,
    /// Original functions that get an end label (`NAME.Lfe`).
    pub lfe: HashSet<&'o str>,
    /// Patched alias statements (`.set NEW, target`) the patch carries.
    pub new_aliases: Vec<usize>,
    pub report: Report,
}

impl Plan<'_, '_> {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.new_groups.is_empty()
            && self.new_vars.is_empty()
            && self.new_aliases.is_empty()
    }
}

pub fn plan<'p, 'o>(
    orig: &Model<'o>,
    patched: &Model<'p>,
    pairing: &Pairing<'p, 'o>,
    data: &DataMatch<'p, 'o>,
    opts: &Options,
) -> Result<Plan<'p, 'o>, Error> {
    let mut plan = Plan::default();
    let side = Side::Patched { pairing, data };
    let oside = Side::Orig { data: Some(data) };
    let mut pending = Vec::new();
    let mut differing = Vec::new();
    // (file, original line, patched line) at aligned statements.
    let mut moves: Vec<(u32, u32, u32)> = Vec::new();

    for (pgi, pg) in patched.groups.iter().enumerate() {
        let pname = pg.name();
        let Some(&oname) = pairing.to_orig.get(pname) else {
            plan.new_groups.push(pgi);
            for f in &pg.funcs {
                plan.report.new_functions.push(f.name.to_string());
            }
            continue;
        };
        let Some(ogi) = orig.group_by_name(oname) else {
            return Err(Error::Unsupported {
                block: pname.to_string(),
                what: "a variable in the original became a function".into(),
                orig_line: orig.symbols[oname].line,
                patched_line: patched.line(pg.start),
            });
        };
        let a = canon::group(orig, ogi, &oside);
        let b = canon::group(patched, pgi, &side);
        if a.len() == b.len() {
            for (x, y) in a.iter().zip(&b) {
                if x.src_line != 0 && y.src_line != 0 && x.src_file == y.src_file {
                    moves.push((x.src_file, x.src_line, y.src_line));
                }
            }
        }
        let local = loc_pairs(orig, ogi, patched, pgi);
        for &(f, x, y) in &local {
            moves.push((f, x, y));
        }
        if canon::first_difference(&a, &b).is_some() {
            // Canonical forms are rebuilt below rather than kept: when a
            // header change touches every function, keeping them all would
            // hold a second copy of both files.
            differing.push((pgi, ogi, local));
        }
    }

    let moves = LineMoves::new(moves);

    for (pgi, ogi, local) in differing {
        let a = canon::group(orig, ogi, &oside);
        let b = canon::group(patched, pgi, &side);
        let pg = &patched.groups[pgi];
        let oname = orig.groups[ogi].name();
        let local: HashSet<(u32, u32)> = local.iter().map(|&(_, x, y)| (x, y)).collect();
        // Only lines inside the function (with what it inlines) count: a
        // `__LINE__` of this function names one of them, while a real
        // constant rarely happens to.
        let seq = loc_seq(orig, ogi);
        let lo = seq
            .iter()
            .map(|&(_, l)| l)
            .filter(|&l| l != 0)
            .min()
            .unwrap_or(0);
        let hi = seq.iter().map(|&(_, l)| l).max().unwrap_or(0);
        let moved = |p: u64, q: u64| {
            u32::try_from(p)
                .ok()
                .zip(u32::try_from(q).ok())
                .is_some_and(|pq| local.contains(&pq))
                || (p >= u64::from(lo) && p <= u64::from(hi) && moves.between(p, q))
        };
        if opts
            .ignore_changes
            .iter()
            .any(|n| n == oname || n == pg.name())
        {
            plan.report.ignored_functions.push(oname.to_string());
            continue;
        }
        if !opts.keep_line_changes && lines::only_line_numbers(&a, &b, &moved).is_some() {
            plan.report.line_only.push(oname.to_string());
            continue;
        }
        pending.push((pgi, ogi, pg.name()));
        plan.changed.push((pgi, ogi));
        for f in &orig.groups[ogi].funcs {
            plan.lfe.insert(f.name);
        }
        for f in &pg.funcs {
            if let Some(&o) = pairing.to_orig.get(f.name)
                && let Some(og) = orig.group_by_name(o)
            {
                for of in &orig.groups[og].funcs {
                    plan.lfe.insert(of.name);
                }
            }
        }
        plan.report.changed.push(oname.to_string());
        if let Some((orig_line, patched_line)) = canon::first_difference(&a, &b) {
            plan.report.first_differences.push(crate::FirstDifference {
                function: oname.to_string(),
                orig_line,
                patched_line,
            });
        }
    }

    for name in &opts.must_adapt {
        let pgi = patched
            .group_by_name(name)
            .or_else(|| {
                pairing
                    .to_patched
                    .get(name.as_str())
                    .and_then(|p| patched.group_by_name(p))
            })
            .ok_or_else(|| Error::UnknownName {
                option: "--must-adapt",
                name: name.clone(),
            })?;
        let pg = &patched.groups[pgi];
        let Some(ogi) = pairing
            .to_orig
            .get(pg.name())
            .and_then(|o| orig.group_by_name(o))
        else {
            return Err(Error::UnknownName {
                option: "--must-adapt",
                name: name.clone(),
            });
        };
        if plan.changed.iter().any(|&(p, _)| p == pgi) {
            continue;
        }
        plan.changed.push((pgi, ogi));
        for f in orig.groups[ogi].funcs.iter() {
            plan.lfe.insert(f.name);
        }
        plan.report
            .adapted
            .push(orig.groups[ogi].name().to_string());
    }

    if !pending.is_empty() {
        let changed: HashSet<&'p str> = pending.iter().map(|p| p.2).collect();
        let check = InlineCheck {
            orig,
            patched,
            decls: inlined::declarations(patched),
            moves: &moves,
            changed: &changed,
        };
        for &(pgi, ogi, _) in &pending {
            if let Some(inl) = check.check(pgi, ogi) {
                plan.report.inlined.push(inl);
            }
        }
    }

    let mut vars: Vec<(&'p str, u32)> = patched
        .symbols
        .iter()
        .filter(|(_, s)| !s.is_function() && (s.object.is_some() || s.comm.is_some()))
        .map(|(n, s)| (*n, s.line))
        .collect();
    vars.sort_by_key(|&(n, l)| (l, n));
    let mut refused = Vec::new();
    for (pname, pline) in vars {
        let Some(&oname) = pairing.to_orig.get(pname) else {
            plan.new_vars.push(pname);
            plan.report.new_variables.push(pname.to_string());
            continue;
        };
        let osym = &orig.symbols[oname];
        if osym.is_function() {
            return Err(Error::Unsupported {
                block: pname.to_string(),
                what: "a function in the original became a variable".into(),
                orig_line: osym.line,
                patched_line: pline,
            });
        }
        let what = variable_difference(orig, oname, patched, pname, &oside, &side);
        if let Some((what, lines)) = what {
            let (orig_line, patched_line) = lines.unwrap_or((osym.line, pline));
            if opts.ignore_changes.iter().any(|n| n == oname || n == pname) {
                plan.report.ignored_variables.push(oname.to_string());
                continue;
            }
            refused.push(RefusedVariable {
                name: oname.to_string(),
                what,
                orig_line,
                patched_line,
            });
        }
    }
    if !refused.is_empty() {
        return Err(Error::VariablesChanged(refused));
    }
    toplevel_changes(orig, patched, pairing, &mut plan);
    Ok(plan)
}

/// What differs between two definitions of one variable, if anything, and
/// the lines that show it when they are more precise than the declarations.
type Difference = Option<(String, Option<(u32, u32)>)>;

fn variable_difference(
    orig: &Model<'_>,
    oname: &str,
    patched: &Model<'_>,
    pname: &str,
    oside: &Side<'_, '_, '_>,
    side: &Side<'_, '_, '_>,
) -> Difference {
    let o = &orig.symbols[oname];
    let p = &patched.symbols[pname];
    if o.global != p.global || o.weak != p.weak {
        return Some(("binding".into(), None));
    }
    if o.type_ != p.type_ {
        return Some(("type".into(), None));
    }
    if o.size.map(str::trim) != p.size.map(str::trim) {
        return Some((
            format!(
                "size {} -> {}",
                o.size.unwrap_or("?"),
                p.size.unwrap_or("?")
            ),
            None,
        ));
    }
    match (o.object, p.object, o.comm, p.comm) {
        (Some(oi), Some(pi), _, _) => {
            let os = orig.sections.get(orig.objects[oi].section).name;
            let ps = patched.sections.get(patched.objects[pi].section).name;
            if os != ps {
                return Some((format!("section {os} -> {ps}"), None));
            }
            let a = canon::data_object(orig, oi, oside);
            let b = canon::data_object(patched, pi, side);
            if a == b {
                return None;
            }
            // Lines 0 and 1 of the canonical form are section and alignment,
            // then one line per data directive after the label.
            let (ol, pl) = (orig.objects[oi].label_stmt, patched.objects[pi].label_stmt);
            let k = a.lines().zip(b.lines()).position(|(x, y)| x != y);
            let lines = match k {
                Some(k) if k >= 2 => (orig.line(ol + k - 1), patched.line(pl + k - 1)),
                _ => (orig.line(ol), patched.line(pl)),
            };
            let what = if k.is_some_and(|k| k < 2) {
                "alignment"
            } else {
                "initial value"
            };
            Some((what.into(), Some(lines)))
        }
        (None, None, Some((oc, oline, ol)), Some((pc, pline, pl))) => {
            (oc.replace(' ', "") != pc.replace(' ', "") || ol != pl).then(|| {
                (
                    format!("common size/alignment {oc} -> {pc}"),
                    Some((oline, pline)),
                )
            })
        }
        _ => Some(("definition kind (.comm vs. initialized data)".into(), None)),
    }
}

/// New aliases go into the patch; changed aliases and new top-level code
/// are reported as left out.
fn toplevel_changes<'p, 'o>(
    orig: &Model<'o>,
    patched: &Model<'p>,
    pairing: &Pairing<'p, 'o>,
    plan: &mut Plan<'p, 'o>,
) {
    let ot = toplevel::scan(orig);
    let pt = toplevel::scan(patched);
    let otargets: std::collections::HashMap<&str, &str> =
        ot.aliases.iter().map(|&(_, n, t)| (n, t)).collect();
    for &(i, name, target) in &pt.aliases {
        match otargets.get(name) {
            None if !orig.symbols.get(name).is_some_and(|s| s.is_defined()) => {
                plan.new_aliases.push(i);
            }
            None => {}
            Some(&ot) => {
                let t = pairing.to_orig.get(target).copied().unwrap_or(target);
                if t != ot {
                    plan.report.not_patched.push(format!(
                        "line {}: alias {name} now points to {target}",
                        patched.line(i)
                    ));
                }
            }
        }
    }
    let mut have = toplevel::code_texts(orig, &ot);
    for &i in &pt.code {
        if let crate::lex::Kind::Instruction { mnemonic, operands } = patched.stmt(i).kind {
            match have.get_mut(&format!("{mnemonic} {operands}")) {
                Some(n) if *n > 0 => *n -= 1,
                _ => plan.report.not_patched.push(format!(
                    "line {}: top-level code `{mnemonic} {operands}`",
                    patched.line(i)
                )),
            }
        }
    }
}

/// Changed variables that need not be refused: read-only (a read-only
/// section, not thread-local) and file-local (no other object can name
/// them) in both versions. Such an object has no runtime state, so the
/// patch carries the new version under a new name and every function that
/// reads it moves to the copy. Returns (patched name, original name).
pub fn read_only_changes<'p, 'o>(
    orig: &Model<'o>,
    patched: &Model<'p>,
    pairing: &Pairing<'p, 'o>,
    data: &DataMatch<'p, 'o>,
    opts: &Options,
) -> Vec<(&'p str, &'o str)> {
    let side = Side::Patched { pairing, data };
    let oside = Side::Orig { data: Some(data) };
    let read_only_local = |m: &Model<'_>, name: &str| {
        m.symbols.get(name).is_some_and(|s| {
            !s.global
                && !s.weak
                && s.comm.is_none()
                && s.object
                    .is_some_and(|o| is_immutable(m.sections.get(m.objects[o].section)))
        })
    };
    let mut v: Vec<(&'p str, &'o str, u32)> = pairing
        .to_orig
        .iter()
        .filter(|&(&p, &o)| {
            !opts.ignore_changes.iter().any(|n| n == o || n == p)
                && read_only_local(orig, o)
                && read_only_local(patched, p)
                && variable_difference(orig, o, patched, p, &oside, &side).is_some()
        })
        .map(|(&p, &o)| (p, o, patched.symbols[p].line))
        .collect();
    v.sort_by_key(|&(p, _, l)| (l, p));
    v.into_iter().map(|(p, o, _)| (p, o)).collect()
}

/// Read-only sections, and `.data.rel.ro*`: writable only while the
/// dynamic loader relocates it (RELRO), so it holds no runtime state
/// either; e.g. a PIE's `static const char *const names[]`.
fn is_immutable(s: &crate::section::Section<'_>) -> bool {
    s.is_read_only() || (s.name.starts_with(".data.rel.ro") && !s.is_tls())
}

/// Parents of the patched groups in `changed` whose code names `name`.
pub fn readers(
    patched: &Model<'_>,
    changed: &[(usize, usize)],
    orig: &Model<'_>,
    name: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for &(pgi, ogi) in changed {
        let g = &patched.groups[pgi];
        let reads = (g.start..g.end).any(|i| {
            let text = match patched.stmt(i).kind {
                crate::lex::Kind::Instruction { operands, .. } => operands,
                crate::lex::Kind::Directive { args, .. } => args,
                _ => return false,
            };
            let mut hit = false;
            crate::ident::for_each(text, |s, e| hit |= &text[s..e] == name);
            hit
        });
        if reads {
            out.push(orig.groups[ogi].name().to_string());
        }
    }
    out
}
