//! The undo log: every write made to the patient during one command, so
//! that a failure after the first write can put everything back.

use crate::patient::Held;

pub enum Undo {
    /// A region we mapped.
    Unmap { base: u64, len: u64 },
    /// Bytes we overwrote, with what they were.
    Restore { addr: u64, bytes: Vec<u8> },
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
        for u in self.0.into_iter().rev() {
            let r = match u {
                Undo::Restore { addr, bytes } => held.write(addr, &bytes),
                Undo::Unmap { base, len } => held.munmap(base, len),
            };
            if let Err(e) = r {
                tracing::error!("rollback step failed: {e}");
            }
        }
    }
}
