//! Field tests: programs shaped like real projects and fixes shaped like
//! real security fixes, each built the way a user would build it, patched
//! live, checked, unpatched and checked again. Tests marked `#[ignore]`
//! reproduce something the tools get wrong today; the reason names it.

mod support;

use support::{Case, Flavour, build_by_patch_make, build_by_recipe, patch_and_unpatch};

fn by_recipe(case: &str, flavour: Flavour) {
    let case = Case::load(case);
    let built = build_by_recipe(&case, flavour);
    patch_and_unpatch(&case, &built);
}

fn by_patch_make(case: &str, flavour: Flavour) {
    let case = Case::load(case);
    let built = build_by_patch_make(&case, flavour);
    patch_and_unpatch(&case, &built);
}

/// A bounds check added to a static inline parser helper in a static
/// library, a new constant table next to the old one, and a fix inside a
/// versioned shared library: one run patches the program and the library.
#[test]
fn multi_file_project_patch_make() {
    by_patch_make("field_multi", Flavour::PIE_O2_G);
}

#[test]
fn multi_file_project_recipe() {
    by_recipe("field_multi", Flavour::PIE_O2_G);
}
