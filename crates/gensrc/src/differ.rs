//! Decides what the patch carries: changed and new function groups, new
//! variables; refuses changes to variables that already exist.

use std::collections::HashSet;

use crate::canon::{self, DataMatch, Side};
use crate::error::{Error, VARIABLE_HINT};
use crate::model::Model;
use crate::rename::Pairing;
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
    pub report: Report,
}

impl Plan<'_, '_> {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.new_groups.is_empty() && self.new_vars.is_empty()
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
        let a = canon::group(orig, ogi, &Side::Orig);
        let b = canon::group(patched, pgi, &side);
        if canon::first_difference(&a, &b).is_some() {
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
        }
    }

    let mut vars: Vec<(&'p str, u32)> = patched
        .symbols
        .iter()
        .filter(|(_, s)| !s.is_function() && (s.object.is_some() || s.comm.is_some()))
        .map(|(n, s)| (*n, s.line))
        .collect();
    vars.sort_by_key(|&(n, l)| (l, n));
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
        let what = variable_difference(orig, oname, patched, pname, &side);
        if let Some(what) = what {
            if opts.ignore_changes.iter().any(|n| n == oname || n == pname) {
                plan.report.ignored_variables.push(oname.to_string());
                continue;
            }
            return Err(Error::VariableChanged {
                name: oname.to_string(),
                what,
                orig_line: osym.line,
                patched_line: pline,
                hint: VARIABLE_HINT,
            });
        }
    }
    Ok(plan)
}

/// What differs between two definitions of one variable, if anything.
fn variable_difference(
    orig: &Model<'_>,
    oname: &str,
    patched: &Model<'_>,
    pname: &str,
    side: &Side<'_, '_, '_>,
) -> Option<String> {
    let o = &orig.symbols[oname];
    let p = &patched.symbols[pname];
    if o.global != p.global || o.weak != p.weak {
        return Some("binding".into());
    }
    if o.type_ != p.type_ {
        return Some("type".into());
    }
    if o.size.map(str::trim) != p.size.map(str::trim) {
        return Some(format!(
            "size {} -> {}",
            o.size.unwrap_or("?"),
            p.size.unwrap_or("?")
        ));
    }
    match (o.object, p.object, o.comm, p.comm) {
        (Some(oi), Some(pi), _, _) => {
            let os = orig.sections.get(orig.objects[oi].section).name;
            let ps = patched.sections.get(patched.objects[pi].section).name;
            if os != ps {
                return Some(format!("section {os} -> {ps}"));
            }
            let a = canon::data_object(orig, oi, &Side::Orig);
            let b = canon::data_object(patched, pi, side);
            (a != b).then(|| "initial value or alignment".into())
        }
        (None, None, Some((oc, _, ol)), Some((pc, _, pl))) => {
            (oc.replace(' ', "") != pc.replace(' ', "") || ol != pl)
                .then(|| format!("common size/alignment {oc} -> {pc}"))
        }
        _ => Some("definition kind (.comm vs. initialized data)".into()),
    }
}
