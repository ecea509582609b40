//! What a command did to one process, for people (`Display`) and for
//! machines (`serde`, one JSON object per process).

use serde::Serialize;

use crate::record::Record;

#[derive(Debug, Clone, Serialize)]
pub struct PatchOutcome {
    pub build_id: String,
    pub object: String,
    pub level: u32,
    /// Address of the patch region in the patient.
    pub region: u64,
    pub functions: Vec<String>,
    /// "applied", "already applied", "removed", ...
    pub state: String,
}

impl PatchOutcome {
    pub fn from_record(r: &Record, state: &str) -> Self {
        PatchOutcome {
            build_id: r.build_id.clone(),
            object: r.object.clone(),
            level: r.level,
            region: r.base,
            functions: Vec::new(),
            state: state.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    pub pid: i32,
    pub status: String,
    /// The objects the patches concern (file paths).
    pub objects: Vec<String>,
    pub patches: Vec<PatchOutcome>,
    /// Number of jumps written or removed.
    pub hunks: usize,
    /// How long the patient was stopped, in microseconds.
    pub stopped_us: u64,
    pub error: Option<String>,
}

impl ProcessReport {
    pub fn new(pid: i32) -> Self {
        ProcessReport {
            pid,
            status: String::new(),
            objects: Vec::new(),
            patches: Vec::new(),
            hunks: 0,
            stopped_us: 0,
            error: None,
        }
    }
}

impl ProcessReport {
    /// Fills `objects` from the patches, each object once.
    pub fn collect_objects(&mut self) {
        self.objects.clear();
        for p in &self.patches {
            if !self.objects.contains(&p.object) {
                self.objects.push(p.object.clone());
            }
        }
    }
}

impl std::fmt::Display for ProcessReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}: {}", self.pid, self.status)?;
        for p in &self.patches {
            write!(
                f,
                "; {} {} ({}",
                p.state,
                p.build_id,
                p.object.rsplit('/').next().unwrap_or(&p.object)
            )?;
            if p.level > 0 {
                write!(f, ", level {}", p.level)?;
            }
            if !p.functions.is_empty() {
                write!(f, ": {}", p.functions.join(", "))?;
            }
            write!(f, ")")?;
        }
        if self.stopped_us > 0 {
            write!(f, "; stopped {} us", self.stopped_us)?;
        }
        Ok(())
    }
}
