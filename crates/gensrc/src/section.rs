//! Which section every statement lands in.
//!
//! Follows the GNU as rules for `.text`/`.data`/`.bss`, `.section`,
//! `.pushsection`/`.popsection` and `.previous`, so that later passes can ask
//! "is this line code, data or debug info" without re-reading directives.

use std::collections::HashMap;

/// Index into [`Sections`].
pub type SecId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecKind {
    /// Executable code (`.text*` or flags with `x`).
    Text,
    /// Allocated data: `.data`, `.rodata*`, `.bss`, TLS, ...
    Data,
    /// `.debug_*`: never compared, never copied into a patch.
    Debug,
    /// Not allocated and not debug: `.note.GNU-stack`, `.comment`, ...
    Other,
}

#[derive(Debug)]
pub struct Section<'a> {
    pub name: &'a str,
    /// Flags string of the first declaration that had one (`"ax"`).
    pub flags: Option<&'a str>,
    pub kind: SecKind,
}

impl Section<'_> {
    /// Allocated data the program never writes: `.rodata*`, exception
    /// tables, or any data section declared without `w`. What the patch
    /// copies from such a section must stay read-only too: in `-no-pie`
    /// code it holds 32-bit absolute addresses (an LSDA's type table),
    /// which `ld` refuses in a writable section of a position-dependent
    /// executable.
    pub fn is_read_only(&self) -> bool {
        if self.kind != SecKind::Data || self.is_tls() {
            return false;
        }
        match self.flags {
            Some(f) => !f.contains('w'),
            None => self.name.starts_with(".rodata") || self.name.starts_with(".gcc_except_table"),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.name.starts_with(".tdata")
            || self.name.starts_with(".tbss")
            || self.flags.is_some_and(|f| f.contains('T'))
    }
}

#[derive(Debug, Default)]
pub struct Sections<'a> {
    list: Vec<Section<'a>>,
    by_name: HashMap<&'a str, SecId>,
}

impl<'a> Sections<'a> {
    pub fn get(&self, id: SecId) -> &Section<'a> {
        &self.list[id as usize]
    }

    pub fn intern(&mut self, name: &'a str, flags: Option<&'a str>) -> SecId {
        if let Some(&id) = self.by_name.get(name) {
            let s = &mut self.list[id as usize];
            if s.flags.is_none() && flags.is_some() {
                s.flags = flags;
                s.kind = kind_of(name, flags);
            }
            return id;
        }
        let id = self.list.len() as SecId;
        self.list.push(Section {
            name,
            flags,
            kind: kind_of(name, flags),
        });
        self.by_name.insert(name, id);
        id
    }
}

fn kind_of(name: &str, flags: Option<&str>) -> SecKind {
    if name.starts_with(".debug") || name.starts_with(".zdebug") || name.starts_with(".gnu.lto") {
        SecKind::Debug
    } else if name == ".text"
        || name.starts_with(".text.")
        || flags.is_some_and(|f| f.contains('x'))
    {
        SecKind::Text
    } else if name == ".data"
        || name == ".bss"
        || name.starts_with(".data")
        || name.starts_with(".bss")
        || name.starts_with(".rodata")
        || name.starts_with(".tdata")
        || name.starts_with(".tbss")
        || name.starts_with(".gcc_except_table")
        || name.starts_with(".init_array")
        || name.starts_with(".fini_array")
        || name.starts_with(".data.rel")
        || flags.is_some_and(|f| f.contains('a'))
    {
        SecKind::Data
    } else {
        SecKind::Other
    }
}

/// The section state machine of the assembler.
#[derive(Debug)]
pub struct Tracker {
    pub current: SecId,
    previous: SecId,
    stack: Vec<(SecId, SecId)>,
}

/// What a directive did to the section state.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    Switched,
}

impl Tracker {
    pub fn new(sections: &mut Sections<'_>) -> Self {
        let text = sections.intern(".text", None);
        Tracker {
            current: text,
            previous: text,
            stack: Vec::new(),
        }
    }

    /// Applies a directive; `Err` carries a message for a parse error.
    pub fn apply<'a>(
        &mut self,
        sections: &mut Sections<'a>,
        name: &'a str,
        args: &'a str,
    ) -> Result<Effect, String> {
        let target = match name {
            ".text" | ".data" | ".bss" => sections.intern(name, None),
            ".section" | ".pushsection" => {
                let (sec, flags) = section_operands(args)?;
                sections.intern(sec, flags)
            }
            ".popsection" => {
                let (cur, prev) = self
                    .stack
                    .pop()
                    .ok_or_else(|| ".popsection without .pushsection".to_string())?;
                self.current = cur;
                self.previous = prev;
                return Ok(Effect::Switched);
            }
            ".previous" => {
                std::mem::swap(&mut self.current, &mut self.previous);
                return Ok(Effect::Switched);
            }
            _ => return Ok(Effect::None),
        };
        if name == ".pushsection" {
            self.stack.push((self.current, self.previous));
        }
        self.previous = self.current;
        self.current = target;
        Ok(Effect::Switched)
    }
}

/// `NAME[,"flags"[,@type...]]` -> (NAME, flags).
pub fn section_operands(args: &str) -> Result<(&str, Option<&str>), String> {
    let args = args.trim();
    let (name, rest) = if let Some(q) = args.strip_prefix('"') {
        let end = q.find('"').ok_or("unterminated section name")?;
        (&q[..end], &q[end + 1..])
    } else {
        let end = args.find([',', ' ', '\t']).unwrap_or(args.len());
        (&args[..end], &args[end..])
    };
    if name.is_empty() {
        return Err("section directive without a name".into());
    }
    let rest = rest.trim_start().trim_start_matches(',').trim_start();
    let flags = rest
        .strip_prefix('"')
        .and_then(|r| r.find('"').map(|e| &r[..e]));
    Ok((name, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_and_push_pop_follow_gas() {
        let mut s = Sections::default();
        let mut t = Tracker::new(&mut s);
        t.apply(&mut s, ".section", ".rodata.str1.1,\"aMS\",@progbits,1")
            .unwrap();
        assert_eq!(s.get(t.current).name, ".rodata.str1.1");
        assert_eq!(s.get(t.current).kind, SecKind::Data);
        t.apply(&mut s, ".previous", "").unwrap();
        assert_eq!(s.get(t.current).name, ".text");
        t.apply(&mut s, ".pushsection", ".debug_info,\"\",@progbits")
            .unwrap();
        assert_eq!(s.get(t.current).kind, SecKind::Debug);
        t.apply(&mut s, ".popsection", "").unwrap();
        assert_eq!(s.get(t.current).name, ".text");
        assert!(t.apply(&mut s, ".popsection", "").is_err());
    }

    #[test]
    fn read_only_data_is_told_by_flags_then_by_name() {
        let mut s = Sections::default();
        let ro = [
            s.intern(".rodata", None),
            s.intern(".rodata.str1.1", Some("aMS")),
            s.intern(".gcc_except_table", Some("a")),
            s.intern(".gcc_except_table._Z1fv", None),
            s.intern(".rodata.cst16", Some("aM")),
        ];
        let rw = [
            s.intern(".data", None),
            s.intern(".bss", None),
            s.intern(".data.rel.ro.local", Some("aw")),
            s.intern(".rodata.odd", Some("aw")),
            s.intern(".tdata", Some("awT")),
            s.intern(".text.unlikely", Some("ax")),
            s.intern(".debug_info", Some("")),
        ];
        for id in ro {
            assert!(s.get(id).is_read_only(), "{}", s.get(id).name);
        }
        for id in rw {
            assert!(!s.get(id).is_read_only(), "{}", s.get(id).name);
        }
    }

    #[test]
    fn cold_and_startup_sections_are_text() {
        let mut s = Sections::default();
        let a = s.intern(".text.unlikely", Some("ax"));
        let b = s.intern(".text.startup", None);
        assert_eq!(s.get(a).kind, SecKind::Text);
        assert_eq!(s.get(b).kind, SecKind::Text);
    }
}
