//! Live patching of real processes, case by case: each case under
//! `tests/cases/` is built both by the seed's manual recipe and by
//! `libcare-patch-make`, started, patched, checked, unpatched, checked again.

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

#[test]
fn seed_pie_o0_recipe() {
    by_recipe("seed", Flavour::PIE_O0);
}

#[test]
fn seed_pie_o0_patch_make() {
    by_patch_make("seed", Flavour::PIE_O0);
}

#[test]
fn seed_pie_o2_g_recipe() {
    by_recipe("seed", Flavour::PIE_O2_G);
}

#[test]
fn seed_pie_o2_g_patch_make() {
    by_patch_make("seed", Flavour::PIE_O2_G);
}

#[test]
fn seed_nopie_o0_recipe() {
    by_recipe("seed", Flavour::NOPIE_O0);
}

#[test]
fn seed_nopie_o0_patch_make() {
    by_patch_make("seed", Flavour::NOPIE_O0);
}

#[test]
fn seed_nopie_o2_g_recipe() {
    by_recipe("seed", Flavour::NOPIE_O2_G);
}

#[test]
fn seed_nopie_o2_g_patch_make() {
    by_patch_make("seed", Flavour::NOPIE_O2_G);
}

#[test]
fn shlib_recipe() {
    by_recipe("shlib", Flavour::PIE_O2_G);
}

#[test]
fn shlib_patch_make() {
    by_patch_make("shlib", Flavour::PIE_O2_G);
}
