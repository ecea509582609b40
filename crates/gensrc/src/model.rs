//! A lexed file seen as blocks: function groups, data objects and the rest.
//!
//! A function group runs from a function's `.type` to its `.size`, widened
//! to cover functions opened inside it (gcc's `.cold` parts are opened
//! before the parent's `.size`). A data object is a label in an allocated
//! data section outside any group, with the data directives that follow it.
//! Everything else ("other": section switches, markers, debug sections) is
//! only ever copied from the original, never compared.

use std::collections::{HashMap, HashSet};

use crate::error::Error;
use crate::lex::{self, Kind, Lexed, Stmt};
use crate::section::{Effect, SecId, SecKind, Sections, Tracker};

#[derive(Debug)]
pub struct Func<'a> {
    pub name: &'a str,
    /// Statement index of the `.type` directive.
    pub type_stmt: usize,
    /// Statement index of the `.size` directive.
    pub size_stmt: usize,
    /// Section of the function's entry label.
    pub section: SecId,
}

#[derive(Debug)]
pub struct Group<'a> {
    /// First and last statement (inclusive).
    pub start: usize,
    pub end: usize,
    /// In order of their `.type`; the first is the parent.
    pub funcs: Vec<Func<'a>>,
}

impl<'a> Group<'a> {
    pub fn name(&self) -> &'a str {
        self.funcs[0].name
    }
}

#[derive(Debug)]
pub struct DataObj<'a> {
    pub label_stmt: usize,
    /// Data directives after the label: `label_stmt + 1 .. end`.
    pub end: usize,
    pub section: SecId,
    /// Alignment directive seen before the label, if any.
    pub align: Option<(&'a str, &'a str)>,
}

/// What the file says about one named (non-`.L`) symbol.
#[derive(Debug, Default, Clone)]
pub struct SymInfo<'a> {
    pub global: bool,
    pub weak: bool,
    pub hidden: bool,
    pub local: bool,
    pub type_: Option<&'a str>,
    pub size: Option<&'a str>,
    /// `.comm`/`.lcomm` operands after the name, and the line.
    pub comm: Option<(&'a str, u32, bool)>,
    pub func_group: Option<usize>,
    pub object: Option<usize>,
    /// First line that defines or declares it.
    pub line: u32,
}

impl SymInfo<'_> {
    pub fn is_function(&self) -> bool {
        self.func_group.is_some()
    }
    pub fn is_defined(&self) -> bool {
        self.func_group.is_some() || self.object.is_some() || self.comm.is_some()
    }
}

pub struct Model<'a> {
    pub lexed: Lexed<'a>,
    pub sections: Sections<'a>,
    /// Section of every statement.
    pub sec_of: Vec<SecId>,
    pub groups: Vec<Group<'a>>,
    pub objects: Vec<DataObj<'a>>,
    pub symbols: HashMap<&'a str, SymInfo<'a>>,
    /// `.L` data labels -> object index.
    pub local_data: HashMap<&'a str, usize>,
    /// `.file N ...` operands after the number, by number.
    pub files: HashMap<u32, &'a str>,
    /// `.set .LC36,.LC205+8`: local labels that stand for an expression
    /// (gcc shares the tail of one constant with another this way).
    pub local_alias: HashMap<&'a str, &'a str>,
}

const DATA_DIRECTIVES: &[&str] = &[
    ".byte",
    ".short",
    ".value",
    ".word",
    ".hword",
    ".2byte",
    ".4byte",
    ".8byte",
    ".long",
    ".int",
    ".quad",
    ".octa",
    ".string",
    ".ascii",
    ".asciz",
    ".zero",
    ".skip",
    ".space",
    ".fill",
    ".float",
    ".single",
    ".double",
    ".uleb128",
    ".sleb128",
    ".dc.a",
    ".dc.b",
    ".dc.w",
    ".dc.l",
    ".dc.d",
    ".dc.s",
    ".base64",
    ".string8",
    ".string16",
    ".string32",
    ".reloc",
    ".nops",
];

pub fn is_data_directive(name: &str) -> bool {
    DATA_DIRECTIVES.contains(&name)
}

pub fn is_align_directive(name: &str) -> bool {
    matches!(
        name,
        ".align" | ".p2align" | ".balign" | ".p2alignw" | ".p2alignl"
    )
}

fn is_function_type(t: &str) -> bool {
    matches!(
        t,
        "@function" | "%function" | "STT_FUNC" | "\"function\"" | "@gnu_indirect_function"
    )
}

/// First comma-separated operand, trimmed.
pub fn first_operand(args: &str) -> &str {
    args.split(',').next().unwrap_or("").trim()
}

/// Operands after the first comma, trimmed.
pub fn after_first_operand(args: &str) -> &str {
    args.split_once(',').map_or("", |(_, r)| r.trim())
}

impl<'a> Model<'a> {
    pub fn build(file: &str, text: &'a str) -> Result<Self, Error> {
        let mut sections = Sections::default();
        let mut tracker = Tracker::new(&mut sections);
        let mut sec_of = Vec::with_capacity(text.len() / 24);
        let mut symbols: HashMap<&'a str, SymInfo<'a>> = HashMap::new();
        let mut files = HashMap::new();
        let mut local_alias = HashMap::new();
        let mut lexed = Lexed::new(text);
        // Debug sections are most of a `-g` file and are never compared or
        // copied: only the statements that move between sections are kept.
        lex::lex_each(file, text, |st| {
            let err = |msg: String| Error::Parse {
                file: file.to_string(),
                line: st.line,
                msg,
            };
            let mut switched = false;
            if let Kind::Directive { name, args } = st.kind {
                let eff = tracker.apply(&mut sections, name, args).map_err(&err)?;
                switched = eff == Effect::Switched;
                if matches!(name, ".set" | ".equ") && lex::is_local_label(first_operand(args)) {
                    local_alias.insert(first_operand(args), after_first_operand(args));
                }
                if !switched {
                    record_symbol_directive(&mut symbols, &mut files, &st, name, args)
                        .map_err(err)?;
                }
            }
            if switched || sections.get(tracker.current).kind != SecKind::Debug {
                lexed.push(st).map_err(|m| err(m.to_string()))?;
                sec_of.push(tracker.current);
            }
            Ok(())
        })?;
        lexed.shrink_to_fit();
        sec_of.shrink_to_fit();

        // Names with a `.size`: only those delimit groups.
        let mut sized: HashSet<&'a str> = HashSet::new();
        for st in lexed.range(..) {
            if let Kind::Directive {
                name: ".size",
                args,
            } = st.kind
            {
                sized.insert(first_operand(args));
            }
        }

        let mut groups: Vec<Group<'a>> = Vec::new();
        let mut open: Vec<&'a str> = Vec::new();
        let mut cur_group: Option<Group<'a>> = None;

        for (i, st) in lexed.range(..).enumerate() {
            let current = sec_of[i];
            if let Kind::Directive {
                name: ".type",
                args,
            } = st.kind
            {
                let sym = first_operand(args);
                let ty = after_first_operand(args);
                if is_function_type(ty) && sized.contains(sym) && !open.contains(&sym) {
                    let g = cur_group.get_or_insert_with(|| Group {
                        start: i,
                        end: i,
                        funcs: Vec::new(),
                    });
                    g.funcs.push(Func {
                        name: sym,
                        type_stmt: i,
                        size_stmt: usize::MAX,
                        section: current,
                    });
                    open.push(sym);
                }
            }
            if let Some(g) = cur_group.as_mut() {
                match st.kind {
                    Kind::Label(l) => {
                        if let Some(f) = g.funcs.iter_mut().find(|f| f.name == l) {
                            f.section = current;
                        }
                    }
                    Kind::Directive {
                        name: ".size",
                        args,
                    } => {
                        let sym = first_operand(args);
                        if let Some(pos) = open.iter().position(|&o| o == sym) {
                            open.remove(pos);
                            if let Some(f) = g.funcs.iter_mut().find(|f| f.name == sym) {
                                f.size_stmt = i;
                            }
                            if open.is_empty() {
                                g.end = i;
                                groups.push(cur_group.take().expect("open group"));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(g) = cur_group {
            let st = lexed.get(g.start);
            return Err(Error::Parse {
                file: file.to_string(),
                line: st.line,
                msg: format!("function `{}` has no matching .size", g.name()),
            });
        }
        extend_preambles(&lexed, &sec_of, &sections, &mut groups);
        for (gi, g) in groups.iter().enumerate() {
            for f in &g.funcs {
                let s = symbols.entry(f.name).or_default();
                s.func_group = Some(gi);
                if s.line == 0 {
                    s.line = lexed.get(f.type_stmt).line;
                }
            }
        }

        let (objects, local_data) = find_objects(&lexed, &sec_of, &groups, &sections, &mut symbols);

        Ok(Model {
            lexed,
            sections,
            sec_of,
            groups,
            objects,
            symbols,
            local_data,
            files,
            local_alias,
        })
    }

    pub fn stmt(&self, i: usize) -> Stmt<'a> {
        self.lexed.get(i)
    }

    pub fn line(&self, i: usize) -> u32 {
        self.lexed.get(i).line
    }

    /// The function group a named function belongs to.
    pub fn group_by_name(&self, name: &str) -> Option<usize> {
        self.symbols.get(name).and_then(|s| s.func_group)
    }

    /// Is `name` a `.cold` part (not the parent of its group) whose code is
    /// nothing but traps (`ud2`, `int3`, `hlt`), as `__builtin_trap()`
    /// leaves it? Such a part calls nothing, so no thread ever waits inside
    /// it, and it is often shorter than a jump.
    pub fn is_trap_only_part(&self, name: &str) -> bool {
        let Some(g) = self.group_by_name(name).map(|gi| &self.groups[gi]) else {
            return false;
        };
        let Some(f) = g.funcs.iter().skip(1).find(|f| f.name == name) else {
            return false;
        };
        let mut traps = 0;
        for i in f.type_stmt..=f.size_stmt {
            if self.sec_of[i] != f.section {
                continue;
            }
            if let Kind::Instruction { mnemonic, .. } = self.stmt(i).kind {
                if !matches!(mnemonic, "ud2" | "int3" | "hlt") {
                    return false;
                }
                traps += 1;
            }
        }
        traps > 0
    }
}

/// Widens every group backwards over its preamble: the section switches,
/// alignment, binding directives and code-section markers gcc puts before
/// `.type` (`.LCOLDB0:` marks where the function's cold part starts, and
/// its exception table measures offsets from it).
fn extend_preambles(
    stmts: &Lexed<'_>,
    sec_of: &[SecId],
    sections: &Sections<'_>,
    groups: &mut [Group<'_>],
) {
    let mut floor = 0;
    for g in groups.iter_mut() {
        let mut start = g.start;
        while start > floor {
            let i = start - 1;
            let ok = match stmts.get(i).kind {
                Kind::Label(l) => {
                    lex::is_local_label(l) && sections.get(sec_of[i]).kind == SecKind::Text
                }
                Kind::Directive { name, .. } => {
                    is_align_directive(name)
                        || matches!(
                            name,
                            ".text"
                                | ".section"
                                | ".previous"
                                | ".globl"
                                | ".global"
                                | ".weak"
                                | ".hidden"
                                | ".internal"
                                | ".protected"
                                | ".local"
                        )
                }
                Kind::Instruction { .. } => false,
            };
            if !ok {
                break;
            }
            start = i;
        }
        g.start = start;
        floor = g.end + 1;
    }
}

fn record_symbol_directive<'a>(
    symbols: &mut HashMap<&'a str, SymInfo<'a>>,
    files: &mut HashMap<u32, &'a str>,
    st: &Stmt<'a>,
    name: &'a str,
    args: &'a str,
) -> Result<(), String> {
    fn entry<'m, 'a>(
        symbols: &'m mut HashMap<&'a str, SymInfo<'a>>,
        sym: &'a str,
        line: u32,
    ) -> &'m mut SymInfo<'a> {
        let s = symbols.entry(sym).or_default();
        if s.line == 0 {
            s.line = line;
        }
        s
    }
    let line = st.line;
    match name {
        ".globl" | ".global" => {
            for sym in args.split(',') {
                entry(symbols, sym.trim(), line).global = true;
            }
        }
        ".weak" => {
            for sym in args.split(',') {
                entry(symbols, sym.trim(), line).weak = true;
            }
        }
        ".hidden" | ".internal" | ".protected" => {
            for sym in args.split(',') {
                entry(symbols, sym.trim(), line).hidden = true;
            }
        }
        ".local" => {
            for sym in args.split(',') {
                entry(symbols, sym.trim(), line).local = true;
            }
        }
        ".type" => {
            entry(symbols, first_operand(args), line).type_ = Some(after_first_operand(args));
        }
        ".size" => {
            entry(symbols, first_operand(args), line).size = Some(after_first_operand(args));
        }
        ".comm" | ".lcomm" => {
            let sym = first_operand(args);
            if sym.is_empty() {
                return Err(format!("{name} without a symbol"));
            }
            entry(symbols, sym, line).comm =
                Some((after_first_operand(args), line, name == ".lcomm"));
        }
        ".file" => {
            let a = args.trim();
            let digits = a.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                let num: u32 = a[..digits]
                    .parse()
                    .map_err(|_| format!("bad .file number in `{a}`"))?;
                files.insert(num, a[digits..].trim());
            }
        }
        _ => {}
    }
    Ok(())
}

type Objects<'a> = (Vec<DataObj<'a>>, HashMap<&'a str, usize>);

fn find_objects<'a>(
    stmts: &Lexed<'a>,
    sec_of: &[SecId],
    groups: &[Group<'a>],
    sections: &Sections<'a>,
    symbols: &mut HashMap<&'a str, SymInfo<'a>>,
) -> Objects<'a> {
    let mut objects: Vec<DataObj<'a>> = Vec::new();
    let mut local_data = HashMap::new();
    let mut open: Option<usize> = None;
    let mut pending_align: Option<(&'a str, &'a str, SecId)> = None;
    let mut next_group = 0;
    for (i, st) in stmts.range(..).enumerate() {
        let sec = sec_of[i];
        while next_group < groups.len() && groups[next_group].end < i {
            next_group += 1;
        }
        let in_group = groups.get(next_group).is_some_and(|g| g.start <= i);
        let in_data = !in_group && sections.get(sec).kind == SecKind::Data;
        match st.kind {
            Kind::Directive { name, .. }
                if in_data && open.is_some() && is_data_directive(name) =>
            {
                let o = open.expect("checked");
                objects[o].end = i + 1;
                continue;
            }
            Kind::Directive { name, args } if is_align_directive(name) => {
                pending_align = Some((name, args, sec));
            }
            Kind::Label(l) if in_data => {
                let align = pending_align
                    .take()
                    .filter(|&(_, _, s)| s == sec)
                    .map(|(n, a, _)| (n, a));
                let idx = objects.len();
                objects.push(DataObj {
                    label_stmt: i,
                    end: i + 1,
                    section: sec,
                    align,
                });
                if lex::is_local_label(l) {
                    local_data.insert(l, idx);
                } else {
                    let s = symbols.entry(l).or_default();
                    s.object = Some(idx);
                    if s.line == 0 {
                        s.line = st.line;
                    }
                }
                open = Some(idx);
                continue;
            }
            _ => {}
        }
        // Any other statement ends the open object; an alignment waits for
        // the next label.
        open = None;
    }
    (objects, local_data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLD: &str = "\t.text
\t.globl\tsw
\t.type\tsw, @function
sw:
\t.cfi_startproc
\tjmp .L5
\t.cfi_endproc
\t.section\t.text.unlikely
\t.cfi_startproc
\t.type\tsw.cold, @function
sw.cold:
.L5:
\tcall abort
\t.cfi_endproc
\t.text
\t.size\tsw, .-sw
\t.section\t.text.unlikely
\t.size\tsw.cold, .-sw.cold
\t.section\t.rodata.str1.1,\"aMS\",@progbits,1
.LC0:
\t.string \"x\"
\t.globl g
\t.data
\t.align 4
\t.type g, @object
\t.size g, 4
g:
\t.long 5
\t.local c
\t.comm c,4,4
";

    #[test]
    fn cold_part_joins_its_parent_group() {
        let m = Model::build("t.s", COLD).unwrap();
        assert_eq!(m.groups.len(), 1);
        let names: Vec<_> = m.groups[0].funcs.iter().map(|f| f.name).collect();
        assert_eq!(names, ["sw", "sw.cold"]);
        let g = &m.groups[0];
        assert_eq!(m.line(g.end), 18);
        assert_eq!(m.sections.get(g.funcs[1].section).name, ".text.unlikely");
    }

    #[test]
    fn objects_and_symbols_are_found() {
        let m = Model::build("t.s", COLD).unwrap();
        let lc0 = &m.objects[m.local_data[".LC0"]];
        assert_eq!(lc0.end - lc0.label_stmt, 2);
        let g = &m.symbols["g"];
        assert!(g.global);
        let o = &m.objects[g.object.unwrap()];
        assert_eq!(o.align, Some((".align", "4")));
        assert!(m.symbols["c"].comm.is_some() && m.symbols["c"].local);
        assert!(m.symbols["sw"].is_function());
    }

    #[test]
    fn missing_size_is_a_parse_error() {
        let e = Model::build("z.s", "\t.type f, @function\nf:\n\tret\n\t.size g, 1\n")
            .err()
            .map(|e| e.to_string());
        // `f` has no .size so it never opens a group: no error, no group.
        assert!(e.is_none());
    }
}
