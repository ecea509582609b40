//! One step of CFI: given a frame's registers and the FDE row for its pc,
//! compute the CFA and the caller's registers.

use gimli::{
    CfaRule, EhFrame, EhFrameOffset, EvaluationResult, Expression, Location, Piece, Reader,
    Register, RegisterRule, UnwindContext, UnwindSection, Value,
};

use super::memory::{Memory, MemoryError, PageCache};
use super::registers::{COLUMNS, RIP, RSP, RegisterFile};
use super::tables::{FdeSpan, ObjectTable};

/// Why one CFI step failed; the caller adds the pc, frame and object.
#[derive(Debug, thiserror::Error)]
pub enum CfiError {
    #[error("CFI: {0}")]
    Dwarf(#[from] gimli::Error),
    #[error("{0}")]
    Memory(#[from] MemoryError),
    #[error("CFI needs register {0}, which an outer frame left unrecoverable")]
    UnknownRegister(u16),
    #[error("unsupported CFI rule for register {register}: {rule}")]
    UnsupportedRule { register: u16, rule: String },
    #[error("unsupported DWARF expression step: {0}")]
    UnsupportedExpression(String),
    /// The nearest FDE (from the `.eh_frame_hdr` index) ends before the pc.
    #[error("no FDE covers the pc")]
    NotCovered,
}

/// The caller's state as the CFI describes it.
pub(crate) struct Step {
    pub(crate) cfa: u64,
    /// `None` when the return address is undefined: the outermost frame.
    pub(crate) caller: Option<RegisterFile>,
    /// The FDE is marked as a signal trampoline ('S' augmentation): the
    /// caller's pc is an interrupted pc, not a return address.
    pub(crate) signal_frame: bool,
}

pub(crate) fn step(
    object: &ObjectTable,
    span: FdeSpan,
    pc: u64,
    regs: &RegisterFile,
    memory: &PageCache<'_>,
    ctx: &mut UnwindContext<usize>,
) -> Result<Step, CfiError> {
    let section = object.section();
    let bases = object.bases();
    let fde =
        section.fde_from_offset(&bases, EhFrameOffset(span.offset), EhFrame::cie_from_offset)?;
    if !fde.contains(pc) {
        return Err(CfiError::NotCovered);
    }
    let encoding = fde.cie().encoding();
    let ra_column = fde.cie().return_address_register().0;
    let signal_frame = fde.is_signal_trampoline();
    let row = fde.unwind_info_for_address(&section, &bases, ctx, pc)?;

    let eval = |expr: &gimli::UnwindExpression<usize>, cfa: Option<u64>| -> Result<u64, CfiError> {
        evaluate(expr.get(&section)?, encoding, regs, memory, cfa)
    };
    let cfa = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => regs
            .get(register.0)
            .ok_or(CfiError::UnknownRegister(register.0))?
            .wrapping_add_signed(*offset),
        CfaRule::Expression(expr) => eval(expr, None)?,
    };

    let recover = |column: u16| -> Result<Option<Option<u64>>, CfiError> {
        // Outer None: no rule (keep the callee's value, the psABI's
        // convention for registers the CFI does not mention).
        Ok(Some(match row.register(Register(column)) {
            RegisterRule::Undefined => return Ok(None),
            RegisterRule::SameValue => regs.get(column),
            RegisterRule::Offset(n) => Some(memory.read_u64(cfa.wrapping_add_signed(n))?),
            RegisterRule::ValOffset(n) => Some(cfa.wrapping_add_signed(n)),
            RegisterRule::Register(other) => regs.get(other.0),
            RegisterRule::Expression(expr) => Some(memory.read_u64(eval(&expr, Some(cfa))?)?),
            RegisterRule::ValExpression(expr) => Some(eval(&expr, Some(cfa))?),
            RegisterRule::Constant(value) => Some(value),
            rule => {
                return Err(CfiError::UnsupportedRule {
                    register: column,
                    rule: format!("{rule:?}"),
                });
            }
        }))
    };

    let Some(return_address) = recover(ra_column)? else {
        return Ok(Step {
            cfa,
            caller: None,
            signal_frame,
        });
    };
    let mut caller = *regs;
    caller.set(RSP, Some(cfa));
    for column in 0..COLUMNS as u16 {
        if column == RIP {
            continue;
        }
        if let Some(value) = recover(column)? {
            caller.set(column, value);
        }
    }
    caller.set(RIP, return_address);
    Ok(Step {
        cfa,
        caller: Some(caller),
        signal_frame,
    })
}

fn evaluate<R: Reader>(
    expr: Expression<R>,
    encoding: gimli::Encoding,
    regs: &RegisterFile,
    memory: &PageCache<'_>,
    initial: Option<u64>,
) -> Result<u64, CfiError> {
    let mut evaluation = expr.evaluation(encoding);
    if let Some(value) = initial {
        evaluation.set_initial_value(value);
    }
    let mut state = evaluation.evaluate()?;
    loop {
        state = match state {
            EvaluationResult::Complete => break,
            EvaluationResult::RequiresMemory {
                address,
                size,
                space: None,
                ..
            } if size <= 8 => {
                let mut bytes = [0u8; 8];
                memory.read(address, &mut bytes[..usize::from(size)])?;
                evaluation.resume_with_memory(Value::Generic(u64::from_le_bytes(bytes)))?
            }
            EvaluationResult::RequiresRegister { register, .. } => {
                let value = regs
                    .get(register.0)
                    .ok_or(CfiError::UnknownRegister(register.0))?;
                evaluation.resume_with_register(Value::Generic(value))?
            }
            other => return Err(CfiError::UnsupportedExpression(format!("{other:?}"))),
        };
    }
    match evaluation.as_result() {
        [
            Piece {
                location: Location::Address { address },
                ..
            },
        ] => Ok(*address),
        [
            Piece {
                location: Location::Value { value },
                ..
            },
        ] => Ok(value.to_u64(u64::MAX)?),
        other => Err(CfiError::UnsupportedExpression(format!("result {other:?}"))),
    }
}
