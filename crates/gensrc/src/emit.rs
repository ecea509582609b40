//! Writes the augmented assembly: the original text untouched (plus an end
//! label after each function the patch replaces), then the patch: new code
//! in `.kpatch.text`, new data in `.kpatch.data` (`.kpatch.rodata` when
//! it comes from a read-only section), names in
//! `.kpatch.strtab` and one 48-byte `InfoEntry` per function in
//! `.kpatch.info` (layout of `kpatch-file::InfoEntry`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write;

use crate::Options;
use crate::canon::{self, DataMatch};
use crate::differ::Plan;
use crate::error::Error;
use crate::gotpcrel;
use crate::ident;
use crate::lex::{self, Kind};
use crate::model::{Model, first_operand};
use crate::rename::Pairing;
use crate::section::SecKind;

pub const TEXT_SECTION: &str = "\t.section\t.kpatch.text,\"axR\",@progbits";
/// Section operands for patch data.
pub const DATA_SECTION: &str = ".kpatch.data,\"awR\",@progbits";
/// Copies of read-only data (exception tables, constants, strings): see
/// [`crate::section::Section::is_read_only`].
pub const RODATA_SECTION: &str = ".kpatch.rodata,\"aR\",@progbits";

/// The patch section (operands) for data copied from section `sec` of `m`.
fn data_section(m: &Model<'_>, sec: crate::section::SecId) -> &'static str {
    if m.sections.get(sec).is_read_only() {
        RODATA_SECTION
    } else {
        DATA_SECTION
    }
}

pub struct Emitter<'r, 'p, 'o> {
    orig: &'r Model<'o>,
    patched: &'r Model<'p>,
    pairing: &'r Pairing<'p, 'o>,
    data: &'r DataMatch<'p, 'o>,
    plan: &'r Plan<'p, 'o>,
    opts: &'r Options,
    /// Local labels inside patched groups -> group.
    label_group: HashMap<&'p str, usize>,
    /// Local labels inside any patched group -> group; built when first
    /// needed (only for labels that are neither copied nor constants).
    all_group_labels: std::cell::OnceCell<HashMap<&'p str, usize>>,
    /// Patched local constants that go into the patch, in order of need.
    data_queue: Vec<&'p str>,
    data_queued: HashSet<&'p str>,
    /// Patched local aliases (`.set .LC36,...`) the patch refers to.
    alias_queue: Vec<&'p str>,
    aliases_queued: HashSet<&'p str>,
    /// Patched `.file` numbers -> numbers in the output.
    file_map: HashMap<u32, u32>,
    new_files: Vec<String>,
    strtab_n: usize,
}

impl<'r, 'p, 'o> Emitter<'r, 'p, 'o> {
    pub fn new(
        orig: &'r Model<'o>,
        patched: &'r Model<'p>,
        pairing: &'r Pairing<'p, 'o>,
        data: &'r DataMatch<'p, 'o>,
        plan: &'r Plan<'p, 'o>,
        opts: &'r Options,
    ) -> Self {
        let emitted_groups: HashSet<usize> = plan
            .changed
            .iter()
            .map(|&(p, _)| p)
            .chain(plan.new_groups.iter().copied())
            .collect();
        let mut label_group = HashMap::new();
        for &gi in &emitted_groups {
            let g = &patched.groups[gi];
            for st in patched.lexed.range(g.start..=g.end) {
                if let Kind::Label(l) = st.kind
                    && lex::is_local_label(l)
                {
                    label_group.insert(l, gi);
                }
            }
        }
        let mut e = Emitter {
            orig,
            patched,
            pairing,
            data,
            plan,
            opts,
            label_group,
            all_group_labels: std::cell::OnceCell::new(),
            data_queue: Vec::new(),
            data_queued: HashSet::new(),
            alias_queue: Vec::new(),
            aliases_queued: HashSet::new(),
            file_map: HashMap::new(),
            new_files: Vec::new(),
            strtab_n: 0,
        };
        e.map_files();
        e
    }

    /// Patched `.file N` entries mapped onto the original's numbering.
    fn map_files(&mut self) {
        if self.orig.files.is_empty() {
            return;
        }
        let mut next = self.orig.files.keys().max().copied().unwrap_or(0) + 1;
        let mut pf: Vec<(u32, &str)> = self.patched.files.iter().map(|(k, v)| (*k, *v)).collect();
        pf.sort();
        for (n, args) in pf {
            let hit = self
                .orig
                .files
                .iter()
                .filter(|(_, a)| **a == args)
                .map(|(k, _)| *k)
                .min();
            let m = hit.unwrap_or_else(|| {
                let m = next;
                next += 1;
                self.new_files.push(format!("\t.file {m} {args}"));
                m
            });
            self.file_map.insert(n, m);
        }
    }

    /// The name a patched symbol has in the output, seen from group `cur`.
    fn out_name(&mut self, name: &'p str, cur: Option<usize>) -> Result<Cow<'p, str>, Error> {
        let p = self.patched;
        if lex::is_local_label(name) {
            if p.local_alias.contains_key(name) {
                // Its own alias in the patch, standing for the mapped
                // expression: the original's alias of that number may
                // stand for something else.
                if self.aliases_queued.insert(name) {
                    self.alias_queue.push(name);
                }
                return Ok(format!("{name}.kpatch").into());
            }
            if self.label_group.contains_key(name) {
                return Ok(format!("{name}.kpatch").into());
            } else if p.local_data.contains_key(name) {
                if let Some(o) = self.data.to_orig.get(name) {
                    return Ok(Cow::Owned((*o).to_string()));
                }
                if self.data_queued.insert(name) {
                    self.data_queue.push(name);
                }
                return Ok(format!("{name}.kpatch").into());
            }
            let all = self.all_group_labels.get_or_init(|| {
                let mut m = HashMap::new();
                for (gi, g) in p.groups.iter().enumerate() {
                    for st in p.lexed.range(g.start..=g.end) {
                        if let Kind::Label(l) = st.kind
                            && lex::is_local_label(l)
                        {
                            m.insert(l, gi);
                        }
                    }
                }
                m
            });
            if let Some(&gi) = all.get(name) {
                return Err(Error::Unsupported {
                    block: name.to_string(),
                    what: format!(
                        "patch data refers to a label inside `{}`, which did not change",
                        p.groups[gi].name()
                    ),
                    orig_line: 0,
                    patched_line: p.line(p.groups[gi].start),
                });
            }
            return Ok(name.into());
        }
        if let Some(g) = cur
            && p.groups[g].funcs.iter().any(|f| f.name == name)
        {
            return Ok(self.func_out(name).into());
        }
        if let Some(o) = self.pairing.to_orig.get(name) {
            return Ok(Cow::Owned((*o).to_string()));
        }
        if p.symbols.get(name).is_some_and(|s| s.is_defined()) {
            return Ok(self.new_name(name));
        }
        Ok(name.into())
    }

    /// Name for a patched symbol with no original.
    fn new_name(&self, name: &'p str) -> Cow<'p, str> {
        if self.orig.symbols.get(name).is_some_and(|s| s.is_defined()) {
            format!("{name}.kpatch").into()
        } else {
            name.into()
        }
    }

    /// (base, out): `foo` -> ("foo", "foo.kpatch"); new `bar` -> ("bar", "bar").
    fn func_names(&self, name: &'p str) -> (String, String, Option<&'o str>) {
        match self.pairing.to_orig.get(name) {
            Some(o) => (o.to_string(), format!("{o}.kpatch"), Some(*o)),
            None => {
                let n = self.new_name(name).into_owned();
                (n.clone(), n, None)
            }
        }
    }

    fn func_out(&self, name: &'p str) -> String {
        self.func_names(name).1
    }

    fn map_text(&mut self, text: &'p str, cur: Option<usize>) -> Result<String, Error> {
        let mut err = None;
        let mut names: Vec<(usize, usize)> = Vec::new();
        ident::for_each(text, |a, b| names.push((a, b)));
        let mut out = String::with_capacity(text.len() + 16);
        let mut copied = 0;
        for (a, b) in names {
            out.push_str(&text[copied..a]);
            match self.out_name(&text[a..b], cur) {
                Ok(n) => out.push_str(&n),
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
            copied = b;
        }
        out.push_str(&text[copied..]);
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The whole output text.
    /// Writes the whole output. The patch part is built first, so a
    /// refusal never leaves half an output behind.
    pub fn emit_to(mut self, orig_text: &str, w: &mut dyn Write) -> Result<(), Error> {
        if self.plan.is_empty() {
            return w.write_all(orig_text.as_bytes()).map_err(Error::Write);
        }
        let mut body = String::new();
        let mut info = String::new();
        let groups: Vec<usize> = self
            .plan
            .changed
            .iter()
            .map(|&(p, _)| p)
            .chain(self.plan.new_groups.iter().copied())
            .collect();
        for gi in groups {
            self.group(gi, &mut body, &mut info)?;
        }
        for &v in &self.plan.new_vars.clone() {
            self.new_variable(v, &mut body)?;
        }
        for &ai in &self.plan.new_aliases.clone() {
            if let Kind::Directive { name, args } = self.patched.stmt(ai).kind {
                let alias = first_operand(args);
                let target = crate::model::after_first_operand(args);
                let a = self.new_name(alias).into_owned();
                let t = self.map_text(target, None)?;
                if self.patched.symbols.get(alias).is_some_and(|s| s.global) {
                    let _ = writeln!(body, "\t.globl\t{a}");
                }
                let _ = writeln!(body, "\t{name}\t{a}, {t}");
            }
        }
        // Constants and aliases may refer to each other: drain both.
        let (mut i, mut j) = (0, 0);
        while i < self.data_queue.len() || j < self.alias_queue.len() {
            if i < self.data_queue.len() {
                let label = self.data_queue[i];
                self.local_data(label, &mut body)?;
                i += 1;
            } else {
                let alias = self.alias_queue[j];
                let expr = self.patched.local_alias[alias];
                let e = self.map_text(expr, None)?;
                let _ = writeln!(body, "\t.set\t{alias}.kpatch, {e}");
                j += 1;
            }
        }
        let mut patch = String::from("#---------- kpatch begin ---------\n");
        for f in &self.new_files {
            patch.push_str(f);
            patch.push('\n');
        }
        patch.push_str(&body);
        patch.push_str(&info);
        patch.push_str("#---------- kpatch end -----------\n");
        self.copy_original(orig_text, w).map_err(Error::Write)?;
        if !orig_text.is_empty() && !orig_text.ends_with('\n') {
            w.write_all(b"\n").map_err(Error::Write)?;
        }
        w.write_all(patch.as_bytes()).map_err(Error::Write)
    }

    /// The original, with `NAME.Lfe:` after the `.size` of replaced functions.
    fn copy_original(&self, text: &str, w: &mut dyn Write) -> std::io::Result<()> {
        let mut after_line: Vec<(usize, &str)> = Vec::new();
        for g in &self.orig.groups {
            for f in &g.funcs {
                if self.plan.lfe.contains(f.name) {
                    after_line.push((self.orig.stmt(f.size_stmt).line_index(), f.name));
                }
            }
        }
        after_line.sort_unstable();
        let mut written = 0;
        let mut next = after_line.iter().peekable();
        for (i, (off, _)) in text.match_indices('\n').enumerate() {
            while let Some(&&(li, name)) = next.peek() {
                if li != i {
                    break;
                }
                w.write_all(&text.as_bytes()[written..=off])?;
                written = off + 1;
                writeln!(w, "{name}.Lfe:")?;
                next.next();
            }
            if next.peek().is_none() {
                break;
            }
        }
        w.write_all(&text.as_bytes()[written..])?;
        if next.peek().is_some() {
            // `.size` on a last line without a newline.
            if !text.ends_with('\n') {
                w.write_all(b"\n")?;
            }
            for (_, name) in next {
                writeln!(w, "{name}.Lfe:")?;
            }
        }
        Ok(())
    }

    fn group(&mut self, gi: usize, out: &mut String, info: &mut String) -> Result<(), Error> {
        let p = self.patched;
        let g = &p.groups[gi];
        let _ = writeln!(out, "#---------- func {} ---------", g.name());
        out.push_str("\t.pushsection\t.kpatch.text,\"axR\",@progbits\n\t.p2align 4\n");
        for f in &g.funcs {
            let (_, fout, orig) = self.func_names(f.name);
            let global = match orig {
                Some(o) => self.orig.symbols.get(o).is_some_and(|s| s.global),
                None => p.symbols.get(f.name).is_some_and(|s| s.global),
            };
            if global || self.opts.force_global {
                let _ = writeln!(out, "\t.globl\t{fout}");
            }
        }
        // Text sections of the group in order of use; the first keeps
        // subsection 0, `.cold` parts follow in subsection 1, 2, ...
        let mut text_secs: Vec<u32> = vec![g.funcs[0].section];
        let mut cur_target: Option<(bool, usize)> = Some((true, 0));
        let names_in_group: HashSet<&str> = g.funcs.iter().map(|f| f.name).collect();
        let mut cfa = gotpcrel::Cfa::default();
        for i in g.start..=g.end {
            let st = p.stmt(i);
            let sec = p.sec_of[i];
            let kind = p.sections.get(sec).kind;
            if matches!(kind, SecKind::Debug | SecKind::Other) {
                continue;
            }
            // Text: (true, subsection); data: (false, 1 if read-only).
            let target = if kind == SecKind::Text {
                let n = text_secs.iter().position(|&s| s == sec).unwrap_or_else(|| {
                    text_secs.push(sec);
                    text_secs.len() - 1
                });
                (true, n)
            } else {
                (false, usize::from(p.sections.get(sec).is_read_only()))
            };
            let is_switch = matches!(st.kind, Kind::Directive { name, .. } if canon::is_section_directive(name));
            if is_switch {
                continue;
            }
            if cur_target != Some(target) {
                if target.0 {
                    let _ = writeln!(out, "{TEXT_SECTION}\n\t.subsection {}", target.1);
                } else {
                    let _ = writeln!(out, "\t.section\t{}", data_section(p, sec));
                }
                cur_target = Some(target);
            }
            match st.kind {
                Kind::Label(l) => {
                    let n = self.out_name(l, Some(gi))?;
                    if !lex::is_local_label(l)
                        && !names_in_group.contains(l)
                        && !n.ends_with(".kpatch")
                    {
                        // A named object defined inside the function: the
                        // original keeps its name, the copy gets its own.
                        let _ = writeln!(out, "{n}.kpatch:");
                    } else {
                        let _ = writeln!(out, "{n}:");
                    }
                }
                Kind::Directive { name, args } => match name {
                    _ if name.starts_with(".cfi_") => {
                        cfa.directive(name, args);
                        let a = self.map_text(args, Some(gi))?;
                        push_stmt(out, name, &a);
                    }
                    ".file" | ".loc_mark_labels" => {}
                    ".loc" => {
                        if let Some(l) = self.loc(args) {
                            let _ = writeln!(out, "\t.loc {l}");
                        }
                    }
                    _ => {
                        let a = self.map_text(args, Some(gi))?;
                        push_stmt(out, name, &a);
                        if name == ".size" {
                            let sym = first_operand(args);
                            if names_in_group.contains(sym) {
                                let (base, _, _) = self.func_names(sym);
                                let _ = writeln!(out, "{base}.kpatch_end:");
                            }
                        }
                    }
                },
                Kind::Instruction { mnemonic, operands } => {
                    let ops = self.map_text(operands, Some(gi))?;
                    let rewritten = if self.opts.force_gotpcrel {
                        gotpcrel::rewrite(mnemonic, &ops, &cfa, |s| self.is_patch_symbol(s))
                    } else {
                        None
                    };
                    match rewritten {
                        Some(lines) => {
                            for l in lines {
                                out.push_str(&l);
                                out.push('\n');
                            }
                        }
                        None => push_stmt(out, mnemonic, &ops),
                    }
                }
            }
        }
        out.push_str("\t.popsection\n");
        for f in &g.funcs {
            let (base, fout, orig) = self.func_names(f.name);
            // An entry makes the doctor write a 5-byte jump over the
            // original and check that no thread is inside it; a trap-only
            // cold part needs neither and may be too short for the jump.
            if orig.is_some_and(|o| self.orig.is_trap_only_part(o)) {
                continue;
            }
            self.strtab_n += 1;
            let n = self.strtab_n;
            let (daddr, dlen) = match orig {
                Some(o) => (o.to_string(), format!("{o}.Lfe - {o}")),
                None => ("0".to_string(), "0".to_string()),
            };
            let entry = kpatch_file::InfoEntry::assembly(
                &daddr,
                &fout,
                &dlen,
                &format!("{base}.kpatch_end - {fout}"),
                &format!("kpatch_strtab{n}"),
            );
            let _ = write!(
                info,
                "\t.pushsection\t.kpatch.strtab,\"aR\",@progbits\n\
                 kpatch_strtab{n}:\n\
                 \t.string\t\"{fout}\"\n\
                 \t.popsection\n\
                 \t.pushsection\t.kpatch.info,\"awR\",@progbits\n\
                 \t.balign 8\n\
                 {base}.Lpi:\n\
                 {entry}\
                 \t.popsection\n"
            );
        }
        Ok(())
    }

    /// Is `name` (an output name) defined by the patch itself?
    fn is_patch_symbol(&self, name: &str) -> bool {
        if name.ends_with(".kpatch") {
            return true;
        }
        self.patched
            .symbols
            .get(name)
            .is_some_and(|s| s.is_defined() && !self.pairing.to_orig.contains_key(name))
            && !self.orig.symbols.get(name).is_some_and(|s| s.is_defined())
    }

    /// `.loc` operands with the file renumbered and the view dropped.
    fn loc(&self, args: &str) -> Option<String> {
        let mut it = args.split_whitespace();
        let file: u32 = it.next()?.parse().ok()?;
        let mapped = *self.file_map.get(&file)?;
        let mut out = mapped.to_string();
        while let Some(tok) = it.next() {
            if tok == "view" {
                it.next();
                continue;
            }
            out.push(' ');
            out.push_str(tok);
        }
        Some(out)
    }

    fn local_data(&mut self, label: &'p str, out: &mut String) -> Result<(), Error> {
        let p = self.patched;
        let obj = &p.objects[p.local_data[label]];
        let _ = writeln!(out, "\t.pushsection\t{}", data_section(p, obj.section));
        if let Some((n, a)) = obj.align {
            let _ = writeln!(out, "\t{n}\t{a}");
        }
        let _ = writeln!(out, "{label}.kpatch:");
        self.data_body(obj.label_stmt + 1, obj.end, out)?;
        out.push_str("\t.popsection\n");
        Ok(())
    }

    fn data_body(&mut self, from: usize, to: usize, out: &mut String) -> Result<(), Error> {
        for i in from..to {
            if let Kind::Directive { name, args } = self.patched.stmt(i).kind {
                let a = self.map_text(args, None)?;
                push_stmt(out, name, &a);
            }
        }
        Ok(())
    }

    fn new_variable(&mut self, name: &'p str, out: &mut String) -> Result<(), Error> {
        let p = self.patched;
        let sym = &p.symbols[name];
        let oname = self.new_name(name).into_owned();
        let tls = sym.type_.is_some_and(|t| t.contains("tls"))
            || sym
                .object
                .is_some_and(|o| p.sections.get(p.objects[o].section).is_tls());
        if tls {
            return Err(Error::Unsupported {
                block: name.to_string(),
                what: "new thread-local variable".into(),
                orig_line: 0,
                patched_line: sym.line,
            });
        }
        let _ = writeln!(out, "#---------- var {name} ---------");
        let sec = match sym.object {
            Some(o) => data_section(p, p.objects[o].section),
            None => DATA_SECTION,
        };
        let _ = writeln!(out, "\t.pushsection\t{sec}");
        // Weak stays weak: two patches (or a patch and another object)
        // may both bring the same COMDAT data, e.g. DW.ref.__gxx_personality_v0.
        if sym.weak {
            let _ = writeln!(out, "\t.weak\t{oname}");
        } else if (sym.global && !sym.local) || self.opts.force_global {
            let _ = writeln!(out, "\t.globl\t{oname}");
        }
        if sym.hidden {
            let _ = writeln!(out, "\t.hidden\t{oname}");
        }
        if let Some((ops, _, _)) = sym.comm {
            let mut it = ops.split(',').map(str::trim);
            let size = it.next().unwrap_or("0");
            if let Some(align) = it.next() {
                let _ = writeln!(out, "\t.balign\t{align}");
            }
            let _ = writeln!(
                out,
                "\t.type\t{oname}, @object\n\t.size\t{oname}, {size}\n{oname}:\n\t.zero\t{size}"
            );
        } else if let Some(oi) = sym.object {
            let obj = &p.objects[oi];
            if let Some((n, a)) = obj.align {
                let _ = writeln!(out, "\t{n}\t{a}");
            }
            if let Some(t) = sym.type_ {
                let _ = writeln!(out, "\t.type\t{oname}, {t}");
            }
            if let Some(s) = sym.size {
                let s = self.map_text(s, None)?;
                let _ = writeln!(out, "\t.size\t{oname}, {s}");
            }
            let _ = writeln!(out, "{oname}:");
            self.data_body(obj.label_stmt + 1, obj.end, out)?;
        }
        out.push_str("\t.popsection\n");
        Ok(())
    }
}

fn push_stmt(out: &mut String, head: &str, args: &str) {
    out.push('\t');
    out.push_str(head);
    if !args.is_empty() {
        out.push('\t');
        out.push_str(args);
    }
    out.push('\n');
}
