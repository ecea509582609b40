//! Symbol resolution: the run-time value of every symbol of the patch ELF.
//!
//! - defined in a `.kpatch.*` section: the section's place in the region;
//! - defined in another section: that section of the target object (same
//!   name), plus the symbol's section-relative value;
//! - undefined: looked up by name in the loaded objects, main program first
//!   (so a variable the executable took by COPY relocation resolves to the
//!   executable's copy), then the others; an IFUNC resolves to the
//!   implementation the process itself bound;
//! - absolute: as is.

use std::collections::HashMap;

use object::elf;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::object::{Found, LoadedObject};
use crate::patch::{Patch, PatchSymbol, Place};
use crate::patient;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    /// Run-time address (TLS: offset from the thread pointer).
    pub addr: u64,
    /// Defined outside the patch and its target (reached via the jump table
    /// when far away).
    pub imported: bool,
    /// `STT_*` of the definition.
    pub kind: u8,
}

pub struct Context<'a> {
    pub pid: i32,
    pub patch: &'a Patch,
    pub layout: &'a Layout,
    pub base: u64,
    pub target: &'a LoadedObject,
    /// All loaded objects; the main program is searched first.
    pub objects: &'a [LoadedObject],
    /// IFUNC implementations found by calling their resolvers, by name.
    pub ifuncs: &'a HashMap<String, u64>,
}

/// Values for every symbol index (index 0, the null symbol, is 0).
pub fn resolve(cx: &Context<'_>) -> Result<Vec<Value>> {
    cx.patch
        .symbols
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == 0 {
                return Ok(Value {
                    addr: 0,
                    imported: false,
                    kind: elf::STT_NOTYPE,
                });
            }
            resolve_one(cx, s)
        })
        .collect()
}

fn resolve_one(cx: &Context<'_>, s: &PatchSymbol) -> Result<Value> {
    let local = |addr| {
        Ok(Value {
            addr,
            imported: false,
            kind: s.kind,
        })
    };
    match s.place {
        Place::Absolute => local(s.value),
        Place::Common => Err(Error::Unsupported {
            patch: cx.patch.display(),
            what: format!("common symbol `{}`", s.name),
        }),
        Place::Section(i) => {
            let sec = cx.patch.sections.get(i).ok_or_else(|| Error::Elf {
                what: cx.patch.display(),
                detail: format!("symbol `{}` in missing section {i}", s.name),
            })?;
            if let Some(off) = cx.layout.section_offset[i] {
                if s.kind == elf::STT_TLS {
                    return Err(Error::Unsupported {
                        patch: cx.patch.display(),
                        what: format!("new thread-local variable `{}`", s.name),
                    });
                }
                return local(cx.base + off + s.value);
            }
            if s.kind == elf::STT_TLS {
                return tls_in_target(cx, s);
            }
            let (addr, _) = cx
                .target
                .section(&sec.name)
                .ok_or_else(|| Error::NoSection {
                    patch: cx.patch.display(),
                    section: sec.name.clone(),
                    object: cx.target.name.clone(),
                })?;
            local(addr + s.value)
        }
        Place::Undefined => {
            let found = lookup(cx.objects, &s.name, s.version.as_deref());
            match found {
                Some((obj, f)) => {
                    let addr = if f.kind == elf::STT_GNU_IFUNC {
                        match cx.ifuncs.get(&s.name) {
                            Some(&a) => a,
                            None => bound_ifunc(cx, obj, &s.name)?,
                        }
                    } else if f.kind == elf::STT_TLS {
                        // Reached through the original's GOT slot (GOTTPOFF);
                        // a relocation that needs the offset itself refuses.
                        0
                    } else {
                        f.addr
                    };
                    Ok(Value {
                        addr,
                        imported: true,
                        kind: f.kind,
                    })
                }
                // An undefined weak reference resolves to 0, as at link time.
                None if s.kind != elf::STT_TLS && s.weak => Ok(Value {
                    addr: 0,
                    imported: true,
                    kind: s.kind,
                }),
                None => Err(Error::Unresolved {
                    pid: cx.pid,
                    patch: cx.patch.display(),
                    symbol: s.name.clone(),
                }),
            }
        }
    }
}

/// Objects in the dynamic linker's search order: the link map's order,
/// then (main program first) whatever it does not list, by address.
pub fn search_order(objects: &[LoadedObject]) -> Vec<&LoadedObject> {
    let mut v: Vec<&LoadedObject> = objects.iter().collect();
    v.sort_by_key(|o| (o.link_index.is_none(), o.link_index, !o.is_main, o.start));
    v
}

/// The definition the dynamic linker would pick (see `search_order`).
pub fn lookup<'o>(
    objects: &'o [LoadedObject],
    name: &str,
    version: Option<&str>,
) -> Option<(&'o LoadedObject, Found)> {
    search_order(objects)
        .into_iter()
        .find_map(|o| o.lookup_exported(name, version).map(|f| (o, f)))
}

/// The IFUNCs `patch` needs that no object of the process has bound yet:
/// (name, resolver address). Their resolvers must be called in the patient.
pub fn unbound_ifuncs(pid: i32, patch: &Patch, objects: &[LoadedObject]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for s in &patch.symbols {
        if s.place != Place::Undefined || s.name.is_empty() {
            continue;
        }
        let Some((_, f)) = lookup(objects, &s.name, s.version.as_deref()) else {
            continue;
        };
        if f.kind == elf::STT_GNU_IFUNC
            && bound_slot(pid, objects, &s.name).is_none()
            && !out.iter().any(|(n, _)| *n == s.name)
        {
            out.push((s.name.clone(), f.addr));
        }
    }
    out
}

/// The value of a GOT slot some object filled for `name`, if any is bound.
fn bound_slot(pid: i32, objects: &[LoadedObject], name: &str) -> Option<u64> {
    for o in search_order(objects) {
        for slot in o.import_slots(name) {
            let mut b = [0u8; 8];
            if patient::read_memory(pid, slot, &mut b).is_err() {
                continue;
            }
            let v = u64::from_le_bytes(b);
            // A lazy slot still points back into its own object's PLT.
            if v != 0 && !(v >= o.start && v < o.end) {
                return Some(v);
            }
        }
    }
    None
}

/// The address an IFUNC was bound to in this process: read from a GOT slot
/// that some object filled for it.
fn bound_ifunc(cx: &Context<'_>, definer: &LoadedObject, name: &str) -> Result<u64> {
    if let Some(v) = bound_slot(cx.pid, cx.objects, name) {
        return Ok(v);
    }
    Err(Error::Unsupported {
        patch: cx.patch.display(),
        what: format!(
            "IFUNC `{name}` of {} is not bound in process {} yet",
            definer.short_name(),
            cx.pid
        ),
    })
}

/// Offset from the thread pointer of a thread-local defined in the target
/// (the main program's TLS block sits right below the thread pointer).
fn tls_in_target(cx: &Context<'_>, s: &PatchSymbol) -> Result<Value> {
    if !cx.target.is_main {
        // A library's block sits at an offset only the dynamic linker
        // knows: the patch reaches it through the original's GOT slot
        // (GOTTPOFF, whose addend names the slot), never by a direct offset;
        // `relocate` refuses a TPOFF relocation against this value.
        return Ok(Value {
            addr: 0,
            imported: true,
            kind: elf::STT_TLS,
        });
    }
    let (vaddr, memsz, align) = cx.target.tls_segment().ok_or_else(|| Error::Unsupported {
        patch: cx.patch.display(),
        what: format!(
            "thread-local `{}` but {} has no PT_TLS",
            s.name, cx.target.name
        ),
    })?;
    let Place::Section(i) = s.place else {
        unreachable!("only called for section symbols")
    };
    let sec = &cx.patch.sections[i].name;
    let (sec_addr, _) = cx.target.section(sec).ok_or_else(|| Error::NoSection {
        patch: cx.patch.display(),
        section: sec.clone(),
        object: cx.target.name.clone(),
    })?;
    let in_block = sec_addr.wrapping_sub(cx.target.bias).wrapping_sub(vaddr) + s.value;
    let block = memsz.div_ceil(align.max(1)) * align.max(1);
    Ok(Value {
        addr: in_block.wrapping_sub(block),
        imported: false,
        kind: elf::STT_TLS,
    })
}
