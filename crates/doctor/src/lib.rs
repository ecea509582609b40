//! doctor: placeholder, filled by its owner.

pub mod unwind;
