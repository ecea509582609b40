//! doctor: placeholder, filled by its owner.
