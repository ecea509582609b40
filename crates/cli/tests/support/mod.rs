//! The live test harness: C cases under `tests/cases/<case>/`, built by the
//! seed's manual recipe or by `libcare-patch-make`, started with a preload
//! that speeds up their sleeps, patched and unpatched with `libcare-ctl`
//! while their output is watched.
//!
//! Every process a test starts is owned by a [`Patient`] guard that kills it
//! by PID when dropped; every file lives in a per-test temporary directory,
//! so tests run in parallel.
#![allow(dead_code, unused_imports)]

pub mod build;
pub mod case;
pub mod cycle;
pub mod inspect;
pub mod patient;
pub mod tools;

pub use build::{Built, Flavour, Order, build_by_patch_make, build_by_recipe, build_by_recipe_in};
pub use case::Case;
pub use cycle::{ctl_ok, patch_and_unpatch};
pub use inspect::{refused, snapshot, stderr, stdout};
pub use patient::Patient;
pub use tools::{build_id, ctl, run_ok, tool};
