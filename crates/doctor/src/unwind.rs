//! Remote unwinder: placeholder, filled by its owner.
