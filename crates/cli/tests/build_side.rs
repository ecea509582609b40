//! The build-side drivers, `libcare-cc` and `libcare-patch-make`, on the
//! cases of `tests/cases/`, checked against plain gcc and binutils.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::build::apply_fix;
use support::tools::has_section;
use support::{Case, Flavour, build_id, run_ok, tool};
use tempfile::TempDir;

fn scratch(what: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("lc-{what}."))
        .tempdir()
        .unwrap()
}

/// `make ARGS` in `dir` with `CC`, `CFLAGS` and optionally `KPATCH_STAGE`.
fn make(dir: &Path, cc: &Path, cflags: &str, stage: Option<&str>, args: &[&str]) {
    let mut cmd = Command::new("make");
    cmd.current_dir(dir)
        .arg(format!("CC={}", cc.display()))
        .args(args)
        .env("CFLAGS", cflags)
        .env_remove("KPATCH_STAGE");
    if let Some(stage) = stage {
        cmd.env("KPATCH_STAGE", stage);
    }
    run_ok(&mut cmd);
}

/// Builds `case` with plain gcc and with libcare-cc in the original stage,
/// in the same directory (its path is in the debug info), and checks that
/// every listed output has the same BuildID.
fn original_stage_matches_plain_build(case: &str, flavour: Flavour, outputs: &[&str]) {
    let case = Case::load(case);
    let tmp = scratch(&format!("{}-{}-identity", case.name, flavour.name));
    let dir = tmp.path().join("proj");
    case.copy_to(&dir);
    make(&dir, Path::new("gcc"), flavour.cflags, None, &[]);
    let plain: Vec<String> = outputs.iter().map(|o| build_id(&dir.join(o))).collect();
    make(&dir, Path::new("gcc"), flavour.cflags, None, &["clean"]);
    make(
        &dir,
        &tool("libcare-cc"),
        flavour.cflags,
        Some("original"),
        &[],
    );
    for (out, plain_id) in outputs.iter().zip(&plain) {
        assert_eq!(
            plain_id,
            &build_id(&dir.join(out)),
            "{out} ({}) differs between gcc and libcare-cc original stage",
            flavour.name
        );
    }
    let kept = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with(".kpatch_") && name.ends_with(".original.s")
        })
        .count();
    assert!(
        kept > 0,
        "no .kpatch_*.original.s kept in {}",
        dir.display()
    );
}

#[test]
fn original_stage_matches_plain_build_executable_pie_o2_g() {
    original_stage_matches_plain_build("seed", Flavour::PIE_O2_G, &["foo"]);
}

#[test]
fn original_stage_matches_plain_build_executable_nopie_o0() {
    original_stage_matches_plain_build("seed", Flavour::NOPIE_O0, &["foo"]);
}

#[test]
fn original_stage_matches_plain_build_shared_library() {
    original_stage_matches_plain_build("shlib", Flavour::PIE_O2_G, &["libfoo.so", "main"]);
}

fn cc(dir: &Path, stage: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(tool("libcare-cc"));
    cmd.current_dir(dir).args(args).env_remove("KPATCH_STAGE");
    if let Some(stage) = stage {
        cmd.env("KPATCH_STAGE", stage);
    }
    cmd.output().unwrap()
}

fn write_sources(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("src/a.c"),
        "#include \"b.h\"\nint main(void) { return b() - 42; }\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/b.h"), "int b(void);\n").unwrap();
    std::fs::write(
        dir.join("src/b.c"),
        "#include \"b.h\"\nint b(void) { return 42; }\n",
    )
    .unwrap();
}

/// Runs the same command with gcc, then (after saving `keep` aside) with
/// libcare-cc in the original stage, in one directory; returns the saved
/// plain results and the directory.
fn plain_then_wrapped(tmp: &TempDir, argvs: &[&[&str]], keep: &[&str]) -> Vec<Vec<u8>> {
    let dir = tmp.path().join("proj");
    write_sources(&dir);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    for args in argvs {
        run_ok(Command::new("gcc").current_dir(&dir).args(*args));
    }
    let saved = keep
        .iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(f)).unwrap();
            std::fs::remove_file(dir.join(f)).unwrap();
            bytes
        })
        .collect();
    for args in argvs {
        let out = cc(&dir, Some("original"), args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    saved
}

fn assert_same_files(dir: &Path, names: &[&str], plain: &[Vec<u8>]) {
    for (name, bytes) in names.iter().zip(plain) {
        let wrapped = std::fs::read(dir.join(name)).unwrap();
        assert!(
            &wrapped == bytes,
            "{name} differs between gcc and libcare-cc"
        );
    }
}

#[test]
fn original_stage_compile_and_link_in_one_call_with_dependency_files() {
    let tmp = scratch("one-call");
    let args: &[&str] = &[
        "-O2", "-g", "-MMD", "-MP", "-pipe", "src/a.c", "src/b.c", "-o", "out/prog",
    ];
    let keep = ["out/prog", "out/prog.d"];
    let plain = plain_then_wrapped(&tmp, &[args], &keep);
    let dir = tmp.path().join("proj");
    assert_same_files(&dir, &keep, &plain);
    assert!(dir.join("out/.kpatch_a.original.s").exists());
    assert!(dir.join("out/.kpatch_b.original.s").exists());
}

#[test]
fn original_stage_separate_compile_writes_the_same_objects_and_dependency_files() {
    let tmp = scratch("separate");
    let a: &[&str] = &["-O2", "-g", "-MD", "-c", "src/a.c", "-o", "out/a.o"];
    let b: &[&str] = &[
        "-O2", "-g", "-MD", "-MT", "b-target", "-c", "src/b.c", "-o", "out/b.o",
    ];
    // Several sources in one -c call, objects named by gcc.
    let both: &[&str] = &["-O0", "-c", "src/a.c", "src/b.c"];
    let keep = ["out/a.o", "out/b.o", "out/a.d", "out/b.d", "a.o", "b.o"];
    let plain = plain_then_wrapped(&tmp, &[a, b, both], &keep);
    let dir = tmp.path().join("proj");
    assert_same_files(&dir, &keep, &plain);
    assert!(dir.join("out/.kpatch_a.original.s").exists());
    assert!(!dir.join("out/.kpatch_a.original.d").exists());
}

#[test]
fn without_a_stage_libcare_cc_is_the_compiler() {
    let tmp = scratch("passthrough");
    write_sources(tmp.path());
    let out = cc(
        tmp.path(),
        None,
        &["-O2", "src/a.c", "src/b.c", "-o", "prog"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("prog").exists());
    assert!(!tmp.path().join(".kpatch_a.original.s").exists());
    let out = cc(tmp.path(), None, &["-c", "src/missing.c"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.c"));
}

#[test]
fn libcare_cc_usage() {
    let help = Command::new(tool("libcare-cc"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("KPATCH_STAGE"));
    let none = Command::new(tool("libcare-cc")).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    let tmp = scratch("bad-stage");
    write_sources(tmp.path());
    let bad = cc(tmp.path(), Some("orignal"), &["-c", "src/b.c"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("KPATCH_STAGE"));
    assert!(!tmp.path().join("b.o").exists());
}

/// The seed case compiled and linked by hand through libcare-cc in both
/// stages, as libcare-patch-make would.
#[test]
fn patched_stage_emits_kpatch_sections_and_keeps_relocations() {
    let case = Case::load("seed");
    let tmp = scratch("patched-stage");
    let dir = tmp.path();
    case.copy_to(dir);
    for stage in ["original", "patched"] {
        if stage == "patched" {
            apply_fix(dir);
        }
        let out = cc(
            dir,
            Some(stage),
            &["-O2", "-g", "-c", "foo.c", "-o", "foo.o"],
        );
        assert!(
            out.status.success(),
            "{stage}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = cc(dir, Some(stage), &["-O2", "-g", "foo.o", "-o", "foo"]);
        assert!(
            out.status.success(),
            "{stage}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if stage == "original" {
            assert!(!has_section(&dir.join("foo"), ".kpatch.info"));
        }
    }
    assert!(dir.join(".kpatch_foo.patched.s").exists());
    let linked = dir.join("foo");
    assert!(has_section(&linked, ".kpatch.info"));
    assert!(has_section(&linked, ".kpatch.text"));
    // -Wl,-q kept the relocations of the patch code.
    assert!(has_section(&linked, ".rela.kpatch.text"));
}

#[test]
fn patched_stage_fails_when_kpatch_gensrc_fails() {
    let tmp = scratch("gensrc-fails");
    let dir = tmp.path();
    write_sources(dir);
    let out = cc(dir, Some("original"), &["-c", "src/b.c", "-o", "b.o"]);
    assert!(out.status.success());
    std::fs::remove_file(dir.join("b.o")).unwrap();
    let out = Command::new(tool("libcare-cc"))
        .current_dir(dir)
        .args(["-c", "src/b.c", "-o", "b.o"])
        .env("KPATCH_STAGE", "patched")
        .env("KPATCH_GENSRC", "/bin/false")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/bin/false failed"), "{err}");
    assert!(
        !dir.join("b.o").exists(),
        "an object was written after gensrc failed"
    );
}

fn patch_make(dir: &Path, cflags: &str, args: &[&str]) -> Output {
    Command::new(tool("libcare-patch-make"))
        .current_dir(dir)
        .args(args)
        .env("CFLAGS", cflags)
        .env_remove("KPATCH_STAGE")
        .output()
        .unwrap()
}

fn assert_sources_untouched(case: &Case, dir: &Path) {
    assert!(
        !dir.join(".libcare-patch-make.applied").exists(),
        "the journal of applied patches was left behind"
    );
    for entry in std::fs::read_dir(&case.dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        assert_eq!(
            std::fs::read(entry.path()).unwrap(),
            std::fs::read(dir.join(&name)).unwrap(),
            "{} was left changed",
            name.to_string_lossy()
        );
    }
}

#[test]
fn patch_make_builds_kpatch_for_the_binary_users_run() {
    let case = Case::load("seed");
    let flavour = Flavour::PIE_O2_G;
    let tmp = scratch("patch-make");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    // The plain build in the same directory: its path is in the debug info.
    make(&proj, Path::new("gcc"), flavour.cflags, None, &[]);
    let users_id = build_id(&proj.join("foo"));

    let out = patch_make(&proj, flavour.cflags, &["--clean", "-i", "3", "fix.diff"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 patch(es) made"), "{stdout}");
    assert!(stdout.contains(&users_id), "{stdout}");

    assert_eq!(build_id(&proj.join("lpmake/usr/bin/foo")), users_id);
    let kpatch = std::fs::read(proj.join("patchroot").join(format!("{users_id}.kpatch"))).unwrap();
    assert_eq!(&kpatch[..8], b"KPATCH1\0");
    assert_eq!(&kpatch[80..80 + users_id.len()], users_id.as_bytes());
    assert_eq!(u32::from_le_bytes(kpatch[376..380].try_into().unwrap()), 3);
    assert_sources_untouched(&case, &proj);
}

#[test]
fn patch_make_reuse_original_builds_only_the_patched_stage() {
    let case = Case::load("seed");
    let flavour = Flavour::PIE_O2_G;
    let tmp = scratch("patch-make-reuse");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);

    let fresh = patch_make(&proj, flavour.cflags, &["--reuse-original", "fix.diff"]);
    assert!(!fresh.status.success());
    let stderr = String::from_utf8_lossy(&fresh.stderr);
    assert!(
        stderr.contains("no original stage of a previous run"),
        "{stderr}"
    );

    let first = patch_make(&proj, flavour.cflags, &["--clean", "fix.diff"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let original_id = build_id(&proj.join("lpmake/usr/bin/foo"));
    let kpatch = proj.join("patchroot").join(format!("{original_id}.kpatch"));
    std::fs::remove_file(&kpatch).unwrap();

    let second = patch_make(&proj, flavour.cflags, &["--reuse-original", "fix.diff"]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("original stage reused"), "{stdout}");
    assert!(!stdout.contains("original build"), "{stdout}");
    assert!(stdout.contains("1 patch(es) made"), "{stdout}");
    assert_eq!(build_id(&proj.join("lpmake/usr/bin/foo")), original_id);
    let bytes = std::fs::read(&kpatch).unwrap();
    assert_eq!(&bytes[80..80 + original_id.len()], original_id.as_bytes());
    assert_sources_untouched(&case, &proj);
}

#[test]
fn patch_make_shared_library_patch_targets_the_library() {
    let case = Case::load("shlib");
    let tmp = scratch("patch-make-shlib");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    let out = patch_make(&proj, "-O2 -g", &["--clean", "fix.diff"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lib_id = build_id(&proj.join("lpmake/usr/lib/libfoo.so"));
    let made: Vec<_> = std::fs::read_dir(proj.join("patchroot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(made, [format!("{lib_id}.kpatch")]);
    assert_sources_untouched(&case, &proj);
}

#[test]
fn patch_make_refuses_a_patch_that_does_not_apply_and_leaves_the_tree() {
    let case = Case::load("seed");
    let tmp = scratch("patch-make-bad-diff");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    let good = std::fs::read_to_string(proj.join("fix.diff")).unwrap();
    std::fs::write(
        proj.join("bad.diff"),
        good.replace("i'm unpatched", "no such line"),
    )
    .unwrap();
    let out = patch_make(&proj, "-O0", &["--clean", "fix.diff", "bad.diff"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.diff does not apply"), "{err}");
    std::fs::remove_file(proj.join("bad.diff")).unwrap();
    assert_sources_untouched(&case, &proj);
    assert!(!proj.join("patchroot").exists());
}

#[test]
fn patch_make_on_an_already_built_tree_asks_for_clean() {
    let case = Case::load("seed");
    let tmp = scratch("patch-make-built");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    make(&proj, Path::new("gcc"), "-O0", None, &[]);
    let out = patch_make(&proj, "-O0", &["fix.diff"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--clean"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn patch_make_usage() {
    let help = Command::new(tool("libcare-patch-make"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let none = Command::new(tool("libcare-patch-make")).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    let tmp = scratch("patch-make-missing");
    let out = patch_make(tmp.path(), "-O0", &["nothing.diff"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing.diff"));
}

#[test]
fn original_stage_as_libcare_cxx_matches_plain_g_plus_plus() {
    let tmp = scratch("cxx");
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    // std::string needs libstdc++ at link time: only a g++ link succeeds.
    std::fs::write(
        dir.join("hello.cpp"),
        "#include <cstdio>\n#include <string>\n\
         int main() { std::string s(\"hello\"); std::printf(\"%s\\n\", s.c_str()); }\n",
    )
    .unwrap();
    let cxx = tmp.path().join("libcare-c++");
    std::os::unix::fs::symlink(tool("libcare-cc"), &cxx).unwrap();
    let args = ["-O2", "-g", "hello.cpp", "-o", "hello"];
    run_ok(Command::new("g++").current_dir(&dir).args(args));
    let plain = build_id(&dir.join("hello"));
    std::fs::remove_file(dir.join("hello")).unwrap();
    run_ok(
        Command::new(&cxx)
            .current_dir(&dir)
            .args(args)
            .env("KPATCH_STAGE", "original"),
    );
    assert_eq!(plain, build_id(&dir.join("hello")));
    assert!(dir.join(".kpatch_hello.original.s").exists());
}

const ASM: &str = "\t.text\n\t.globl answer\n\t.type answer, @function\nanswer:\n\
                   \tmovl $42, %eax\n\tret\n\t.size answer, .-answer\n\
                   \t.section .note.GNU-stack,\"\",@progbits\n";

#[test]
fn assembler_sources_compile_as_is_and_reach_gensrc_only_when_changed() {
    let tmp = scratch("asm");
    let dir = tmp.path();
    std::fs::write(dir.join("raw.s"), ASM).unwrap();
    std::fs::write(
        dir.join("pre.S"),
        format!("#define X 1\n{ASM}").replace("answer", "pre"),
    )
    .unwrap();
    let compile = |stage: Option<&str>, gensrc: &str| {
        let mut ok = true;
        for (src, obj) in [("raw.s", "raw.o"), ("pre.S", "pre.o")] {
            let mut cmd = Command::new(tool("libcare-cc"));
            cmd.current_dir(dir)
                .args(["-g", "-c", src, "-o", obj])
                .env_remove("KPATCH_STAGE")
                .env("KPATCH_GENSRC", gensrc);
            if let Some(stage) = stage {
                cmd.env("KPATCH_STAGE", stage);
            }
            ok &= cmd.status().unwrap().success();
        }
        ok
    };
    let objects = || -> Vec<Vec<u8>> {
        ["raw.o", "pre.o"]
            .iter()
            .map(|o| std::fs::read(dir.join(o)).unwrap())
            .collect()
    };
    assert!(compile(None, "/bin/false"));
    let plain = objects();
    assert!(compile(Some("original"), "/bin/false"));
    assert!(
        objects() == plain,
        "original stage changed an assembler object"
    );
    assert!(dir.join(".kpatch_raw.original.s").exists());
    assert!(dir.join(".kpatch_pre.original.s").exists());
    // Unchanged: compiled as is, gensrc (here /bin/false) never runs.
    assert!(compile(Some("patched"), "/bin/false"));
    assert!(
        objects() == plain,
        "patched stage changed an unchanged assembler object"
    );
    // Changed: it must go through gensrc.
    std::fs::write(dir.join("raw.s"), ASM.replace("$42", "$43")).unwrap();
    assert!(!compile(Some("patched"), "/bin/false"));
}

/// A fix that only touches a header, in a Makefile that knows nothing about
/// headers and whose `clean` also wipes libcare-cc's files: the patched
/// build must still rebuild the object and find its original assembly.
#[test]
fn patch_make_rebuilds_objects_of_a_changed_header() {
    let tmp = scratch("patch-make-header");
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        (
            "Makefile",
            "CFLAGS ?= -O2 -g\nall: greet\n\
             greet: main.o greet.o\n\t$(CC) $(CFLAGS) -o $@ main.o greet.o\n\
             %.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\
             install: greet\n\tinstall -D -m 0755 greet $(DESTDIR)/usr/bin/greet\n\
             clean:\n\trm -f greet *.o .kpatch_*\n",
        ),
        ("greet.h", "#define GREETING \"hello\"\n"),
        (
            "greet.c",
            "#include <stdio.h>\n#include \"greet.h\"\n\
             __attribute__((noipa)) void greet(void) { puts(GREETING); }\n",
        ),
        (
            "main.c",
            "void greet(void);\nint main(void) { greet(); return 0; }\n",
        ),
        (
            "fix.diff",
            "--- a/greet.h\n+++ b/greet.h\n@@ -1 +1 @@\n\
             -#define GREETING \"hello\"\n+#define GREETING \"hello, patched\"\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let out = patch_make(&dir, "-O2 -g", &["--clean", "fix.diff"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let id = build_id(&dir.join("lpmake/usr/bin/greet"));
    assert!(dir.join("patchroot").join(format!("{id}.kpatch")).exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("greet.h")).unwrap(),
        "#define GREETING \"hello\"\n"
    );
}

/// `install -s` drops the symbols a patch is made from; the patch is made
/// from the unstripped files of the build tree with the same BuildIDs.
#[test]
fn patch_make_takes_binaries_stripped_by_make_install_from_the_build_tree() {
    let case = Case::load("seed");
    let tmp = scratch("patch-make-stripped");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    let makefile = std::fs::read_to_string(proj.join("Makefile")).unwrap();
    std::fs::write(
        proj.join("Makefile"),
        makefile.replace("install -D -m 0755", "install -s -D -m 0755"),
    )
    .unwrap();
    let out = patch_make(&proj, "-O0", &["--clean", "fix.diff"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = proj.join("lpmake/usr/bin/foo");
    assert!(!has_section(&installed, ".symtab"));
    let id = build_id(&installed);
    assert!(proj.join("patchroot").join(format!("{id}.kpatch")).exists());
    assert_eq!(
        std::fs::read(case.dir.join("foo.c")).unwrap(),
        std::fs::read(proj.join("foo.c")).unwrap()
    );
}

/// LibCare's environment: the three directories, an `lpmakefile` that wins
/// over the Makefile, `IS_LIBCARE_CC=y` for the build to see, and the
/// caller's `MAKEFLAGS` (here a dry run) not passed on. Then `-u` remakes
/// the patch from those installs without building.
#[test]
fn patch_make_follows_libcare_environment_and_update() {
    let case = Case::load("seed");
    let tmp = scratch("patch-make-env");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    let makefile = std::fs::read_to_string(proj.join("Makefile")).unwrap();
    std::fs::write(
        proj.join("lpmakefile"),
        format!("ifneq ($(IS_LIBCARE_CC),y)\n$(error IS_LIBCARE_CC is not y)\nendif\n{makefile}"),
    )
    .unwrap();
    std::fs::write(proj.join("Makefile"), "all install clean:\n\tfalse\n").unwrap();
    let dirs = ["orig", "patched", "root"].map(|d| tmp.path().join(d));
    let run = |args: &[&str]| {
        let out = Command::new(tool("libcare-patch-make"))
            .current_dir(&proj)
            .args(args)
            .env("CFLAGS", "-O0")
            .env("MAKEFLAGS", "n")
            .env("MAKELEVEL", "3")
            .env("LPMAKE_ORIGINAL_DIR", &dirs[0])
            .env("LPMAKE_PATCHED_DIR", &dirs[1])
            .env("LPMAKE_PATCHROOT", &dirs[2])
            .env_remove("KPATCH_STAGE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["-c", "fix.diff"]);
    let id = build_id(&dirs[0].join("usr/bin/foo"));
    assert!(dirs[1].join("usr/bin/foo").exists());
    let kpatch = dirs[2].join(format!("{id}.kpatch"));
    assert!(kpatch.exists());
    std::fs::remove_file(&kpatch).unwrap();
    let stdout = run(&["-u"]);
    assert!(kpatch.exists(), "{stdout}");
    assert!(!stdout.contains("original build"), "{stdout}");
}

/// Ctrl-C in the middle of the patched build: the build is stopped, the
/// source patches are reverted and the run fails.
#[test]
fn patch_make_interrupted_during_the_build_restores_the_tree() {
    let case = Case::load("seed");
    let tmp = scratch("patch-make-ctrl-c");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    let makefile = std::fs::read_to_string(proj.join("Makefile")).unwrap();
    std::fs::write(
        proj.join("Makefile"),
        makefile.replace(
            "foo.o: foo.c\n",
            "foo.o: foo.c\n\tif [ \"$$KPATCH_STAGE\" = patched ]; then sleep 60; fi\n",
        ),
    )
    .unwrap();
    let mut child = Command::new(tool("libcare-patch-make"))
        .current_dir(&proj)
        .args(["--clean", "fix.diff"])
        .env("CFLAGS", "-O0")
        .env_remove("KPATCH_STAGE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let stdout = child.stdout.take().unwrap();
    // Read on a thread to the end: the tool keeps printing after the signal.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("patched build") {
            break;
        }
    }
    assert!(seen.contains("patched build"), "{seen}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(proj.join(".libcare-patch-make.applied").exists());
    let started = std::time::Instant::now();
    run_ok(Command::new("kill").args(["-INT", &pid]));
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the build was not stopped"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted"), "{err}");
    std::fs::remove_file(proj.join("Makefile")).unwrap();
    std::fs::write(proj.join("Makefile"), makefile).unwrap();
    assert_sources_untouched(&case, &proj);
}

/// Two patches, the second on top of the first, with the project, the
/// original install and the output directory all given on the command line.
#[test]
fn patch_make_applies_several_patches_in_order_and_reverts_them_all() {
    let case = Case::load("seed");
    let tmp = scratch("patch-make-two");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    let fix = std::fs::read_to_string(proj.join("fix.diff")).unwrap();
    let patched_line = "printf(\"you patched my %s\\n\", \"tralala\");";
    let more = format!(
        "--- a/foo.c\n+++ b/foo.c\n@@ -11 +11 @@\n-\t{patched_line}\n+\t{}\n",
        patched_line.replace("tralala", "trololo")
    );
    assert!(fix.contains(patched_line));
    let diffs = tmp.path().join("diffs");
    std::fs::create_dir_all(&diffs).unwrap();
    std::fs::write(diffs.join("more.diff"), more).unwrap();
    std::fs::write(diffs.join("fix.diff"), fix).unwrap();
    let out = Command::new(tool("libcare-patch-make"))
        .current_dir(&proj)
        .args(["--clean", "--lpmake", "../orig", "--patchroot", "../out"])
        .args(["../diffs/fix.diff", "../diffs/more.diff"])
        .env("CFLAGS", "-O0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let id = build_id(&tmp.path().join("orig/usr/bin/foo"));
    let kpatch = std::fs::read(tmp.path().join("out").join(format!("{id}.kpatch"))).unwrap();
    let has = |s: &str| kpatch.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has("trololo") && !has("tralala"));
    assert_sources_untouched(&case, &proj);
}

#[test]
fn libcare_cc_refuses_lto_in_a_patch_build() {
    let tmp = scratch("lto");
    write_sources(tmp.path());
    let out = cc(
        tmp.path(),
        Some("original"),
        &["-O2", "-flto", "-c", "src/b.c"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-flto"), "{err}");
    assert!(!tmp.path().join("b.o").exists());
    let out = cc(tmp.path(), None, &["-O2", "-flto", "-c", "src/b.c"]);
    assert!(out.status.success());
}

/// Files gcc names after the compile's auxiliary base (`.dwo`, `.su`) get
/// the same names and contents as in a direct compile, and the object
/// records the same `.dwo` name.
#[test]
fn original_stage_keeps_auxiliary_file_names() {
    let tmp = scratch("aux-names");
    let split: &[&str] = &[
        "-O2",
        "-g",
        "-gsplit-dwarf",
        "-fstack-usage",
        "-c",
        "src/a.c",
        "-o",
        "out/a.o",
    ];
    let link: &[&str] = &[
        "-O0",
        "-fstack-usage",
        "src/a.c",
        "src/b.c",
        "-o",
        "out/prog",
    ];
    let keep = [
        "out/a.o",
        "out/a.dwo",
        "out/a.su",
        "out/prog",
        "out/prog-a.su",
        "out/prog-b.su",
    ];
    let plain = plain_then_wrapped(&tmp, &[split, link], &keep);
    let dir = tmp.path().join("proj");
    assert_same_files(&dir, &keep, &plain);
    let stray: Vec<_> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kpatch_") && !n.ends_with(".s"))
        .collect();
    assert!(stray.is_empty(), "files named after our .s: {stray:?}");
}

#[test]
fn patch_make_reverts_the_tree_when_the_patched_build_fails() {
    let case = Case::load("seed");
    let tmp = scratch("patch-make-broken");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    let fix = std::fs::read_to_string(proj.join("fix.diff")).unwrap();
    std::fs::write(
        proj.join("broken.diff"),
        fix.replace("\"tralala\");", "\"tralala\") /* missing semicolon */"),
    )
    .unwrap();
    let out = patch_make(&proj, "-O0", &["--clean", "broken.diff"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KPATCH_STAGE=patched"), "{err}");
    // Which file, the compiler's own words, and where the whole log is.
    assert!(err.contains("first error in foo.c"), "{err}");
    assert!(err.contains("  | "), "{err}");
    assert!(err.contains(".lpmaketmp/build.log"), "{err}");
    std::fs::remove_file(proj.join("broken.diff")).unwrap();
    assert_sources_untouched(&case, &proj);
    assert!(!proj.join("patchroot").exists());
}

/// A run killed while its patches were applied (simulated: the patch is
/// applied and journaled by hand) is cleaned up by the next run.
#[test]
fn patch_make_reverts_what_an_interrupted_run_left_applied() {
    let case = Case::load("seed");
    let tmp = scratch("patch-make-interrupted");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    apply_fix(&proj);
    let journal = proj.join(".libcare-patch-make.applied");
    std::fs::create_dir_all(&journal).unwrap();
    std::fs::copy(proj.join("fix.diff"), journal.join("0.diff")).unwrap();
    let out = patch_make(&proj, "-O0", &["--clean", "fix.diff"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("interrupted run"));
    assert!(!journal.exists());
    assert_sources_untouched(&case, &proj);
    // The patch was made from the original source, not from a tree that
    // already had the fix in it.
    let id = build_id(&proj.join("lpmake/usr/bin/foo"));
    assert!(proj.join("patchroot").join(format!("{id}.kpatch")).exists());
}

/// A compile from standard input (`cat x.c | $(CC) -x c -c - -o x.o`):
/// libcare-cc reads it once into the original assembly, named after the
/// object, and the patched stage diffs it like any other. The original
/// stage still builds what plain gcc builds. Failed with "compiled
/// nothing ... run with --clean" while stdin went straight to gcc.
#[test]
fn patch_make_diffs_a_compile_from_standard_input() {
    let tmp = scratch("patch-make-stdin");
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        (
            "Makefile",
            "CFLAGS ?= -O2 -g\nall: greet\n\
             greet: main.o greet.o\n\t$(CC) $(CFLAGS) -o $@ main.o greet.o\n\
             greet.o: greet.c\n\tcat greet.c | $(CC) $(CFLAGS) -x c -c - -o $@\n\
             main.o: main.c\n\t$(CC) $(CFLAGS) -c -o $@ main.c\n\
             install: greet\n\tinstall -D -m 0755 greet $(DESTDIR)/usr/bin/greet\n\
             clean:\n\trm -f greet *.o\n",
        ),
        (
            "greet.c",
            "#include <stdio.h>\n\
             __attribute__((noipa)) void greet(void) { puts(\"hello\"); }\n",
        ),
        (
            "main.c",
            "void greet(void);\nint main(void) { greet(); return 0; }\n",
        ),
        (
            "fix.diff",
            "--- a/greet.c\n+++ b/greet.c\n@@ -1,2 +1,2 @@\n\
             \x20#include <stdio.h>\n\
             -__attribute__((noipa)) void greet(void) { puts(\"hello\"); }\n\
             +__attribute__((noipa)) void greet(void) { puts(\"hello, patched\"); }\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    make(&dir, Path::new("gcc"), "-O2 -g", None, &[]);
    let users_id = build_id(&dir.join("greet"));
    make(&dir, Path::new("gcc"), "-O2 -g", None, &["clean"]);

    let out = patch_make(&dir, "-O2 -g", &["--clean", "fix.diff"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 patch(es) made"), "{stdout}");
    assert_eq!(build_id(&dir.join("lpmake/usr/bin/greet")), users_id);
    let kpatch = dir.join("patchroot").join(format!("{users_id}.kpatch"));
    let data = std::fs::read(&kpatch).unwrap();
    let needle = b"hello, patched";
    assert!(
        data.windows(needle.len()).any(|w| w == needle),
        "{} lacks the new text",
        kpatch.display()
    );
}

/// A patched function shorter than the 5-byte jump (`mov %edi,%eax; ret`):
/// the doctor would refuse it at apply time; libcare-patch-make names it
/// while building, and still makes the patch.
#[test]
fn patch_make_warns_about_a_function_shorter_than_the_jump() {
    let tmp = scratch("patch-make-short");
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        (
            "Makefile",
            "CFLAGS ?= -O2 -g\nall: tiny\n\
             tiny: tiny.c\n\t$(CC) $(CFLAGS) -o $@ tiny.c\n\
             install: tiny\n\tinstall -D -m 0755 tiny $(DESTDIR)/usr/bin/tiny\n\
             clean:\n\trm -f tiny\n",
        ),
        (
            "tiny.c",
            "__attribute__((noipa)) int same(int x) { return x; }\n\
             int main(int argc, char **argv) { (void)argv; return same(argc); }\n",
        ),
        (
            "fix.diff",
            "--- a/tiny.c\n+++ b/tiny.c\n@@ -1,2 +1,2 @@\n\
             -__attribute__((noipa)) int same(int x) { return x; }\n\
             +__attribute__((noipa)) int same(int x) { return x + 1; }\n\
             \x20int main(int argc, char **argv) { (void)argv; return same(argc); }\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let out = patch_make(&dir, "-O2 -g", &["--clean", "fix.diff"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("warning"))
        .unwrap_or_else(|| panic!("no warning in: {err}"));
    assert!(
        warning.contains("same") && warning.contains("3 byte(s)"),
        "{warning}"
    );
}

/// One source compiled twice into one directory under different object
/// names (static `b.o`, shared `b.os` with `-DSHARED`, as glibc does): each
/// keeps its own original assembly, so the patched stage of the unchanged
/// source compares like with like and adds no patch section.
#[test]
fn libcare_cc_keeps_one_original_per_object_name() {
    let tmp = scratch("object-names");
    write_sources(tmp.path());
    std::fs::write(
        tmp.path().join("src/b.c"),
        "#ifdef SHARED\nint mode = 2;\n#else\nint mode = 1;\n#endif\nint b(void) { return 42 + mode; }\n",
    )
    .unwrap();
    let static_o: &[&str] = &["-O2", "-c", "src/b.c", "-o", "b.o"];
    let shared_o: &[&str] = &["-O2", "-DSHARED", "-fPIC", "-c", "src/b.c", "-o", "b.os"];
    for stage in ["original", "patched"] {
        for argv in [static_o, shared_o] {
            let out = cc(tmp.path(), Some(stage), argv);
            assert!(
                out.status.success(),
                "{stage} {argv:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(tmp.path().join(".kpatch_b.original.s").exists());
    assert!(tmp.path().join(".kpatch_b.os.original.s").exists());
    for object in ["b.o", "b.os"] {
        assert!(!has_section(&tmp.path().join(object), ".kpatch.info"));
    }
}

/// Objects built with gcov counters (`make all` of memcached builds such a
/// `memcached-debug`) are compiled as is in both stages: an unchanged file
/// builds and yields no patch, and `KPATCH_STAGE=configure` is a plain
/// compiler, as LibCare documents for configure runs.
#[test]
fn libcare_cc_compiles_instrumented_objects_as_is() {
    let tmp = scratch("gcov");
    write_sources(tmp.path());
    let argv: &[&str] = &[
        "-O2",
        "-fprofile-arcs",
        "-ftest-coverage",
        "-c",
        "src/b.c",
        "-o",
        "b-debug.o",
    ];
    for stage in ["configure", "original", "patched"] {
        let out = cc(tmp.path(), Some(stage), argv);
        assert!(
            out.status.success(),
            "{stage}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!tmp.path().join(".kpatch_b-debug.original.s").exists());
    assert!(!has_section(&tmp.path().join("b-debug.o"), ".kpatch.info"));
}

/// The shape of LibCare's own test makefiles, which its libcare-patch-make
/// builds: the program is linked against the library of the original
/// install in the patched stage (`-L$(LPMAKE_ORIGINAL_DIR)`, exported to
/// the build), nothing makes the program wait for the library (make runs
/// serially, in the order of `all`), and `make clean` removes `.lpmaketmp`
/// with everything else. The patch for the library applies live.
#[test]
fn patch_make_builds_libcares_test_makefile_shape() {
    let case = Case::load("shlib");
    let tmp = scratch("patch-make-libcare-shape");
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    std::fs::write(
        proj.join("Makefile"),
        "all: libfoo.so main\n\
         ifeq ($(KPATCH_STAGE),patched)\n\
         LIBDIR := $(LPMAKE_ORIGINAL_DIR)\n\
         else\n\
         LIBDIR := .\n\
         endif\n\
         libfoo.so: libfoo.c\n\t$(CC) $(CFLAGS) -fPIC -shared -o $@ libfoo.c\n\
         main: main.c\n\t$(CC) $(CFLAGS) -o $@ main.c -lfoo -L$(LIBDIR)\n\
         install: all\n\tmkdir -p $(DESTDIR)\n\tcp main libfoo.so $(DESTDIR)\n\
         clean:\n\trm -rf main libfoo.so .kpatch*.s .lpmaketmp lpmake\n",
    )
    .unwrap();
    let out = patch_make(&proj, "-O2", &["-c", "fix.diff"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lpmake = proj.join("lpmake");
    let built = support::Built {
        program: lpmake.join("main"),
        lib_dir: lpmake.clone(),
        patch: proj.join("patchroot"),
        targets: vec![build_id(&lpmake.join("libfoo.so"))],
        log: String::new(),
        dir: tmp,
    };
    support::patch_and_unpatch(&case, &built);
}
