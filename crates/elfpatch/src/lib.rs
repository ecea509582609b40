//! elfpatch: placeholder, filled by its owner.
