//! `info`: what is loaded in a process and which patches are applied, read
//! without stopping it (the records are read through `/proc/PID/mem`).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::maps;
use crate::object;
use crate::patient;
use crate::record;
use crate::report::PatchOutcome;
use crate::storage::Storage;

#[derive(Debug, Clone, Serialize)]
pub struct ObjectInfo {
    pub name: String,
    pub build_id: String,
    pub start: u64,
    /// A patch for it exists in the storage given with `-s`.
    pub in_storage: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    pub pid: i32,
    pub objects: Vec<ObjectInfo>,
    pub patches: Vec<PatchOutcome>,
}

/// Objects (filtered by `build_id` and, with `storage`, to those that have a
/// patch there) and applied patches of `pid`.
pub fn info_process(
    pid: i32,
    storage: Option<&Storage>,
    build_id: Option<&str>,
) -> Result<ProcessInfo> {
    if !patient::exists(pid) {
        return Err(Error::NoSuchProcess { pid });
    }
    let maps = maps::read(pid)?;
    let objects = object::loaded_objects(pid, &maps)?
        .into_iter()
        .map(|o| ObjectInfo {
            in_storage: storage.is_some_and(|s| s.path_for(&o.build_id).is_some()),
            name: o.name,
            build_id: o.build_id,
            start: o.start,
        })
        .filter(|o| build_id.is_none_or(|b| o.build_id == b))
        .filter(|o| storage.is_none() || o.in_storage)
        .collect();
    let patches = record::scan(pid, &maps)?
        .iter()
        .filter(|r| !r.retired && build_id.is_none_or(|b| r.build_id == b))
        .map(|r| {
            let mut o = PatchOutcome::from_record(r, "applied");
            o.functions = record::function_names(pid, r);
            o
        })
        .collect();
    Ok(ProcessInfo {
        pid,
        objects,
        patches,
    })
}
