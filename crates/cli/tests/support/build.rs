//! Building a case's original binaries and its `.kpatch` files, either by the
//! seed's manual recipe (gcc -S, kpatch_gensrc, gcc -Wl,-q, kpatch_strip,
//! strip, kpatch_make) or by `libcare-patch-make` on the case's Makefile.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::case::{Case, Kind};
use super::tools::{build_id, has_section, run_ok, tool};

/// Compiler flags of one build of a case.
#[derive(Debug, Clone, Copy)]
pub struct Flavour {
    pub name: &'static str,
    pub cflags: &'static str,
}

impl Flavour {
    pub const PIE_O0: Flavour = Flavour {
        name: "pie-O0",
        cflags: "-O0",
    };
    pub const PIE_O2_G: Flavour = Flavour {
        name: "pie-O2-g",
        cflags: "-O2 -g",
    };
    pub const NOPIE_O0: Flavour = Flavour {
        name: "nopie-O0",
        cflags: "-O0 -fno-pie -no-pie",
    };
    pub const NOPIE_O2_G: Flavour = Flavour {
        name: "nopie-O2-g",
        cflags: "-O2 -g -fno-pie -no-pie",
    };

    fn args(&self) -> impl Iterator<Item = &'static str> {
        self.cflags.split_whitespace()
    }
}

/// The result of building a case: what to run and what to patch it with.
pub struct Built {
    /// Owns every file of the build; removed when dropped.
    pub dir: TempDir,
    /// The original program, as users would run it.
    pub program: PathBuf,
    /// Where its shared libraries are (`LD_LIBRARY_PATH`).
    pub lib_dir: PathBuf,
    /// What `libcare-ctl patch` gets: one `.kpatch` file or a directory.
    pub patch: PathBuf,
    /// BuildIDs of the original objects the patches target.
    pub targets: Vec<String>,
    /// Standard output of the build tool, for tests that check it.
    pub log: String,
}

fn gcc(dir: &Path) -> Command {
    let mut cmd = Command::new("gcc");
    cmd.current_dir(dir);
    cmd
}

fn stem(source: &str) -> &str {
    source.rsplit_once('.').map_or(source, |(s, _)| s)
}

/// Applies the case's `fix.diff` in `dir`.
pub fn apply_fix(dir: &Path) {
    run_ok(
        Command::new("patch")
            .args(["-p1", "--batch", "-i", "fix.diff"])
            .current_dir(dir),
    );
}

/// The order of the manual recipe's post-processing steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The seed's: `--strip`, `--rel-fixup`, `strip --strip-unneeded`,
    /// `--undo-link`.
    Seed,
    /// LibCare's makefiles': `--strip`, `strip --strip-unneeded`,
    /// `--rel-fixup`, `--undo-link`.
    LibCare,
}

/// The seed's "Manual Patch Creation", once per output of the case.
pub fn build_by_recipe(case: &Case, flavour: Flavour) -> Built {
    build_by_recipe_in(case, flavour, Order::Seed)
}

/// [`build_by_recipe`] with the post-processing steps in `order`.
pub fn build_by_recipe_in(case: &Case, flavour: Flavour, order: Order) -> Built {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("lc-{}-{}-recipe.", case.name, flavour.name))
        .tempdir()
        .unwrap();
    let orig = tmp.path().join("orig");
    let patched = tmp.path().join("patched");
    let patches = tmp.path().join("patches");
    let work = tmp.path().join("work");
    case.copy_to(&orig);
    case.copy_to(&patched);
    apply_fix(&patched);
    std::fs::create_dir_all(&patches).unwrap();
    std::fs::create_dir_all(&work).unwrap();

    let mut targets = Vec::new();
    let mut last = None;
    for out in &case.outputs {
        let pic: &[&str] = match out.kind {
            Kind::Lib => &["-fPIC"],
            Kind::Exe => &[],
        };
        let shared: &[&str] = match out.kind {
            Kind::Lib => &["-shared"],
            Kind::Exe => &[],
        };
        let mut orig_asm = Vec::new();
        let mut patch_asm = Vec::new();
        for src in &out.sources {
            let s = format!("{}.s", stem(src));
            run_ok(
                gcc(&orig)
                    .args(flavour.args())
                    .args(pic)
                    .args(["-S", src, "-o", &s]),
            );
            let p = format!("{}.patched.s", stem(src));
            run_ok(
                gcc(&patched)
                    .args(flavour.args())
                    .args(pic)
                    .args(["-S", src, "-o", &p]),
            );
            let k = format!("{}.kpatch.s", stem(src));
            run_ok(
                Command::new(tool("kpatch_gensrc"))
                    .current_dir(&patched)
                    .args(["--os=rhel6", "-i"])
                    .arg(orig.join(&s))
                    .args(["-i", &p, "-o", &k]),
            );
            orig_asm.push(s);
            patch_asm.push(k);
        }
        run_ok(
            gcc(&orig)
                .args(flavour.args())
                .args(shared)
                .args(["-o", &out.name])
                .args(&orig_asm)
                .args(&out.link_flags),
        );
        run_ok(
            gcc(&patched)
                .args(flavour.args())
                .args(shared)
                .args(["-o", &out.name])
                .args(&patch_asm)
                .args(&out.link_flags)
                .arg("-Wl,-q"),
        );
        let original = orig.join(&out.name);
        let with_patch = patched.join(&out.name);
        if has_section(&with_patch, ".kpatch.info") {
            let id = build_id(&original);
            let stripped = work.join(format!("{}.stripped", out.name));
            let kpatch = patches.join(format!("{id}.kpatch"));
            strip_and_make(&original, &with_patch, &stripped, &id, &kpatch, order);
            targets.push(id);
            last = Some(kpatch);
        }
    }
    assert!(
        !targets.is_empty(),
        "case {}: no output of the manual recipe has a .kpatch.info section",
        case.name
    );
    let patch = if targets.len() == 1 {
        last.unwrap()
    } else {
        patches
    };
    Built {
        program: orig.join(case.program()),
        lib_dir: orig.clone(),
        patch,
        targets,
        log: String::new(),
        dir: tmp,
    }
}

/// kpatch_strip --strip, --rel-fixup, strip --strip-unneeded, --undo-link
/// (the middle two swapped in LibCare's order), kpatch_make: the seed's
/// post-processing of a binary linked with -q.
pub fn strip_and_make(
    original: &Path,
    with_patch: &Path,
    stripped: &Path,
    id: &str,
    kpatch: &Path,
    order: Order,
) {
    run_ok(
        Command::new(tool("kpatch_strip"))
            .arg("--strip")
            .arg(with_patch)
            .arg(stripped),
    );
    let rel_fixup = || {
        run_ok(
            Command::new(tool("kpatch_strip"))
                .arg("--rel-fixup")
                .arg(original)
                .arg(stripped),
        );
    };
    let strip_unneeded = || {
        run_ok(Command::new("strip").arg("--strip-unneeded").arg(stripped));
    };
    match order {
        Order::Seed => {
            rel_fixup();
            strip_unneeded();
        }
        Order::LibCare => {
            strip_unneeded();
            rel_fixup();
        }
    }
    run_ok(
        Command::new(tool("kpatch_strip"))
            .arg("--undo-link")
            .arg(original)
            .arg(stripped),
    );
    run_ok(
        Command::new(tool("kpatch_make"))
            .args(["-b", id])
            .arg(stripped)
            .arg("-o")
            .arg(kpatch),
    );
}

/// The seed's everyday flow: `libcare-patch-make --clean fix.diff` in a copy
/// of the case, with the flavour's flags in `CFLAGS`.
pub fn build_by_patch_make(case: &Case, flavour: Flavour) -> Built {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("lc-{}-{}-lpmake.", case.name, flavour.name))
        .tempdir()
        .unwrap();
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    let out = run_ok(
        Command::new(tool("libcare-patch-make"))
            .args(["--clean", "fix.diff"])
            .current_dir(&proj)
            .env("CFLAGS", flavour.cflags),
    );
    let patchroot = proj.join("patchroot");
    let targets: Vec<String> = std::fs::read_dir(&patchroot)
        .unwrap_or_else(|e| panic!("{}: {e}", patchroot.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".kpatch").map(String::from))
        .collect();
    assert!(
        !targets.is_empty(),
        "libcare-patch-make left no .kpatch in {}",
        patchroot.display()
    );
    Built {
        program: proj.join("lpmake/usr/bin").join(case.program()),
        lib_dir: proj.join("lpmake/usr/lib"),
        patch: patchroot,
        targets,
        log: String::from_utf8_lossy(&out.stdout).into_owned(),
        dir: tmp,
    }
}
