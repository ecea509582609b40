//! gensrc: placeholder, filled by its owner.
