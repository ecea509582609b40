//! The undo log: every write made to the patient during one command, so
//! that a failure after the first write can put everything back.

use crate::patch_frames;
use crate::patient::Held;
use crate::record::Record;

pub enum Undo {
    /// A region we mapped.
    Unmap { base: u64, len: u64 },
    /// Bytes we overwrote, with what they were.
    Restore { addr: u64, bytes: Vec<u8> },
    /// A region's unwind table registered with the patient's unwinder.
    Deregister { record: Record },
}

#[derive(Default)]
pub struct UndoLog(Vec<Undo>);

impl UndoLog {
    pub fn push(&mut self, u: Undo) {
        self.0.push(u);
    }

    /// Undoes everything, newest first. Failures are logged, not returned:
    /// the original error is what the operator needs to see.
    pub fn roll_back(self, held: &mut Held) {
        if !held.alive() {
            // The patient is gone, and with it everything we wrote.
            return;
        }
        // A region whose table the patient's unwinder may still hold must
        // stay mapped: the next exception would read it.
        let mut keep = Vec::new();
        for u in self.0.into_iter().rev() {
            let r = match u {
                Undo::Restore { addr, bytes } => held.write(addr, &bytes),
                Undo::Unmap { base, .. } if keep.contains(&base) => {
                    tracing::error!(
                        "patch region at {base:#x} stays mapped: its unwind table is still registered"
                    );
                    Ok(())
                }
                Undo::Unmap { base, len } => held.munmap(base, len),
                Undo::Deregister { record } => {
                    let r = patch_frames::deregister(held, &record);
                    if r.is_err() {
                        keep.push(record.base);
                    }
                    r
                }
            };
            if let Err(e) = r {
                tracing::error!("rollback step failed: {e}");
            }
        }
    }
}
