//! `libcare-patch-make` on the build systems real servers use, driven with
//! LibCare's own interface: a PREFIX-only Makefile (`-c -s SRCDIR -d
//! PREFIX`), CMake build directories (Unix Makefiles and Ninja) with a
//! static library, a meson build directory with a versioned shared library,
//! a configured project with a gcov-instrumented extra target, and an
//! install that strips like dh_strip. Each test writes its project, builds
//! the patch, starts the installed original, patches it with libcare-ctl,
//! reads the new line, unpatches and reads the old one again.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::case::Case;
use support::{Built, build_id, patch_and_unpatch, run_ok, tool};
use tempfile::TempDir;

const BEFORE: &str = "hello from greet";
const AFTER: &str = "hello from greet, patched";

/// `greet()` prints a line; the program calls it in a loop. `noipa` keeps
/// gcc from inlining it into the loop, which no live patch could switch.
const GREET_C: &str = "#include <stdio.h>\n#include \"greet.h\"\n\
    __attribute__((noipa)) void greet(void)\n{\n\tprintf(\"%s\\n\", GREETING);\n}\n";
const GREET_H: &str = "#define GREETING \"hello from greet\"\nvoid greet(void);\n";
const MAIN_C: &str = "#include <unistd.h>\n#include \"greet.h\"\n\
    int main(void)\n{\n\tfor (;;) {\n\t\tgreet();\n\t\tusleep(1000000);\n\t}\n}\n";
/// The fix changes only the header: every object that includes it must be
/// rebuilt, whether or not the build tracks header dependencies.
const FIX_DIFF: &str = "--- a/greet.h\n+++ b/greet.h\n@@ -1,2 +1,2 @@\n\
    -#define GREETING \"hello from greet\"\n+#define GREETING \"hello from greet, patched\"\n\
    \x20void greet(void);\n";

fn scratch(what: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("lc-bs-{what}."))
        .tempdir()
        .unwrap()
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
}

fn case(name: &str) -> Case {
    Case {
        name: name.to_string(),
        dir: PathBuf::new(),
        before: BEFORE.to_string(),
        after: AFTER.to_string(),
        outputs: Vec::new(),
    }
}

/// Whether a tool the test needs is installed (`.ci/run` installs them).
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The environment of a configure step: the wrapper as a plain compiler.
fn configure_env(cmd: &mut Command) -> &mut Command {
    cmd.env("CC", tool("libcare-cc"))
        .env("KPATCH_STAGE", "configure")
        .env_remove("CFLAGS")
}

/// `libcare-patch-make ARGS` in `build_dir`; panics with its output unless
/// it succeeds.
fn patch_make(build_dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(tool("libcare-patch-make"))
        .current_dir(build_dir)
        .args(args)
        .env_remove("KPATCH_STAGE")
        .env_remove("LPMAKE_ORIGINAL_DIR")
        .env_remove("LPMAKE_PATCHED_DIR")
        .env_remove("LPMAKE_PATCHROOT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "libcare-patch-make {} in {}:\n{}{}",
        args.join(" "),
        build_dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What the test starts and patches: `program` installed under `lpmake/`,
/// with the `.kpatch` files of `patchroot/`.
fn built(tmp: TempDir, build_dir: &Path, program: &str, lib_dir: &str, out: &Output) -> Built {
    let patchroot = build_dir.join("patchroot");
    let targets: Vec<String> = std::fs::read_dir(&patchroot)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".kpatch").map(String::from))
        .collect();
    Built {
        program: build_dir.join("lpmake").join(program),
        lib_dir: build_dir.join("lpmake").join(lib_dir),
        patch: patchroot,
        targets,
        log: String::from_utf8_lossy(&out.stdout).into_owned(),
        dir: tmp,
    }
}

/// The source tree is back as it was, byte for byte.
fn assert_restored(src: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        assert_eq!(
            std::fs::read_to_string(src.join(name)).unwrap(),
            *text,
            "{name} was left changed"
        );
    }
}

/// The stdout line `libcare-patch-make` prints for the patch of `object`.
/// libcare-patch-make in a build directory apart from the sources
/// (`-s SRCDIR`, as CMake and meson trees are used): the fix applied and
/// reverted in SRCDIR, the install found under `usr/`.
fn patch_out_of_tree(tmp: TempDir, build: &Path, src: &Path, sources: &[(&str, &str)]) -> Built {
    let fix = tmp.path().join("fix.diff");
    std::fs::write(&fix, FIX_DIFF).unwrap();
    let out = patch_make(build, &["-s", src.to_str().unwrap(), fix.to_str().unwrap()]);
    assert_restored(src, sources);
    built(tmp, build, "usr/bin/hello", "usr/lib", &out)
}

fn patch_line<'a>(built: &'a Built, object: &str) -> &'a str {
    built
        .log
        .lines()
        .find(|l| l.contains("patch for ") && l.contains(object))
        .unwrap_or_else(|| panic!("no patch line for {object}:\n{}", built.log))
}

// ---- a Makefile that installs with PREFIX only (Redis's way) ----

#[test]
fn prefix_only_makefile_with_srcdir_and_destdir_variable() {
    let tmp = scratch("prefix");
    let root = tmp.path().join("proj");
    // PREFIX's default stays inside the test: an install that ignored `-d
    // PREFIX` lands there, not on the host.
    let makefile = "CFLAGS ?= -O2 -g\nPREFIX ?= $(CURDIR)/host-prefix\nVPATH = src\n\
        all: hello\n\
        hello: main.o greet.o\n\t$(CC) $(CFLAGS) -o $@ main.o greet.o\n\
        %.o: %.c\n\t$(CC) $(CFLAGS) -Isrc -c -o $@ $<\n\
        install: hello\n\tmkdir -p $(PREFIX)/bin\n\tcp hello $(PREFIX)/bin/hello\n\
        clean:\n\trm -f hello *.o\n.PHONY: all install clean\n";
    let sources = [
        ("src/greet.c", GREET_C),
        ("src/greet.h", GREET_H),
        ("src/main.c", MAIN_C),
    ];
    write(&root, &sources);
    write(&root, &[("Makefile", makefile), ("fix.diff", FIX_DIFF)]);
    let out = patch_make(&root, &["-c", "-s", "src", "-d", "PREFIX", "fix.diff"]);
    assert!(
        !root.join("host-prefix").exists(),
        "installed outside PREFIX"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("file(s) compiled"), "{stdout}");
    assert!(stdout.contains("build.log"), "{stdout}");
    assert_restored(&root, &sources);
    let built = built(tmp, &root, "bin/hello", "bin", &out);
    let id = build_id(&built.program);
    let line = patch_line(&built, "bin/hello");
    assert!(line.contains(&id) && line.contains("greet"), "{line}");
    patch_and_unpatch(&case("prefix"), &built);
}

// ---- CMake: a static library linked into the program ----

fn cmake_static_library(generator: &str, what: &str) {
    if !have("cmake") {
        panic!("cmake is not installed (apt-get install cmake ninja-build meson)");
    }
    let tmp = scratch(what);
    let src = tmp.path().join("src");
    let build = tmp.path().join("build");
    let lists = "cmake_minimum_required(VERSION 3.13)\nproject(hello C)\n\
        add_library(greet STATIC greet.c)\n\
        add_executable(hello main.c)\ntarget_link_libraries(hello greet)\n\
        install(TARGETS hello DESTINATION bin)\n";
    let sources = [
        ("greet.c", GREET_C),
        ("greet.h", GREET_H),
        ("main.c", MAIN_C),
        ("CMakeLists.txt", lists),
    ];
    write(&src, &sources);
    std::fs::create_dir_all(&build).unwrap();
    run_ok(
        configure_env(&mut Command::new("cmake"))
            .current_dir(&build)
            .arg("-G")
            .arg(generator)
            .args([
                "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                "-DCMAKE_INSTALL_PREFIX=/usr",
            ])
            .arg(&src),
    );
    let built = patch_out_of_tree(tmp, &build, &src, &sources);
    assert_eq!(built.targets, [build_id(&built.program)]);
    patch_and_unpatch(&case(what), &built);
}

#[test]
fn cmake_makefiles_static_library() {
    cmake_static_library("Unix Makefiles", "cmake-make");
}

#[test]
fn cmake_ninja_static_library() {
    cmake_static_library("Ninja", "cmake-ninja");
}

// ---- meson: a versioned shared library installed as a symlink chain ----

#[test]
fn meson_shared_library_symlink_chain() {
    if !have("meson") {
        panic!("meson is not installed (apt-get install cmake ninja-build meson)");
    }
    let tmp = scratch("meson");
    let src = tmp.path().join("src");
    let build = tmp.path().join("build");
    let meson_build = "project('hello', 'c')\n\
        greet = shared_library('greet', 'greet.c', version: '1.2.3', soversion: '1', \
        install: true)\n\
        executable('hello', 'main.c', link_with: greet, install: true)\n";
    let sources = [
        ("greet.c", GREET_C),
        ("greet.h", GREET_H),
        ("main.c", MAIN_C),
        ("meson.build", meson_build),
    ];
    write(&src, &sources);
    run_ok(
        configure_env(&mut Command::new("meson"))
            .current_dir(tmp.path())
            .args([
                "setup",
                "--prefix=/usr",
                "--libdir=lib",
                "--buildtype=debugoptimized",
            ])
            .arg(&build)
            .arg(&src),
    );
    let built = patch_out_of_tree(tmp, &build, &src, &sources);
    let lib = built.lib_dir.join("libgreet.so.1.2.3");
    assert!(built.lib_dir.join("libgreet.so.1").is_symlink());
    // The library changed (greet) and so did the program (main includes
    // the header too, though its code is the same): the library's patch
    // is the one that switches the line.
    assert!(
        built.targets.contains(&build_id(&lib)),
        "{:?}\n{}",
        built.targets,
        built.log
    );
    patch_line(&built, "libgreet.so.1.2.3");
    patch_and_unpatch(&case("meson"), &built);
}

// ---- a configured project: configure output kept, gcov target beside ----

/// A configure script in the autotools manner: it probes the compiler and
/// writes the Makefile, which `make clean` removes again (as nginx's does),
/// so a patched stage that cleaned would find no Makefile. `make all` also
/// builds a gcov-instrumented copy that is not installed, and the library
/// source is compiled twice into one directory (`greet.o`, and `greet.os`
/// with `-DSHARED`), whose kept assemblies must not overwrite each other.
#[test]
fn configured_project_with_gcov_target_and_two_objects_of_one_source() {
    let tmp = scratch("configured");
    let root = tmp.path().join("proj");
    let configure = "#!/bin/sh\nset -e\n\
        printf 'int main(void) { return 0; }\\n' > conftest.c\n\
        $CC -o conftest conftest.c || { echo 'C compiler cannot create executables' >&2; exit 77; }\n\
        rm -f conftest conftest.c\n\
        sed \"s|@CC@|$CC|\" Makefile.in > Makefile\n";
    let makefile_in = "CC = @CC@\nCFLAGS = -O2 -g\n\
        all: hello hello-debug libgreet.so\n\
        hello: main.o greet.o\n\t$(CC) $(CFLAGS) -o $@ main.o greet.o\n\
        libgreet.so: greet.os\n\t$(CC) $(CFLAGS) -shared -o $@ greet.os\n\
        hello-debug: main-debug.o greet-debug.o\n\
        \t$(CC) $(CFLAGS) --coverage -o $@ main-debug.o greet-debug.o\n\
        %.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\
        %.os: %.c\n\t$(CC) $(CFLAGS) -DSHARED -fPIC -c -o $@ $<\n\
        %-debug.o: %.c\n\t$(CC) $(CFLAGS) -fprofile-arcs -ftest-coverage -c -o $@ $<\n\
        install: hello libgreet.so\n\
        \tinstall -D -m 0755 hello $(DESTDIR)/usr/bin/hello\n\
        \tinstall -D -m 0755 libgreet.so $(DESTDIR)/usr/lib/libgreet.so\n\
        clean:\n\trm -rf Makefile hello hello-debug libgreet.so *.o *.os *.gcno *.gcda\n\
        .PHONY: all install clean\n";
    // The shared build has a different variable: diffing it against the
    // static build's assembly would refuse a changed variable.
    let greet_c = GREET_C.replace(
        "__attribute__",
        "#ifdef SHARED\nint greet_mode = 2;\n#else\nint greet_mode = 1;\n#endif\n__attribute__",
    );
    let sources = [
        ("configure", configure),
        ("Makefile.in", makefile_in),
        ("greet.c", greet_c.as_str()),
        ("greet.h", GREET_H),
        ("main.c", MAIN_C),
    ];
    write(&root, &sources);
    write(&root, &[("fix.diff", FIX_DIFF)]);
    run_ok(Command::new("chmod").arg("+x").arg(root.join("configure")));
    run_ok(configure_env(&mut Command::new("./configure")).current_dir(&root));
    let out = patch_make(&root, &["fix.diff"]);
    assert!(
        root.join("Makefile").exists(),
        "the configured tree was cleaned"
    );
    assert!(root.join(".kpatch_greet.original.s").exists());
    assert!(root.join(".kpatch_greet.os.original.s").exists());
    assert_restored(&root, &sources);
    let built = built(tmp, &root, "usr/bin/hello", "usr/lib", &out);
    let exe = build_id(&built.program);
    let lib = build_id(&built.lib_dir.join("libgreet.so"));
    let mut want = vec![exe, lib];
    want.sort();
    let mut got = built.targets.clone();
    got.sort();
    assert_eq!(got, want, "{}", built.log);
    patch_and_unpatch(&case("configured"), &built);
}

// ---- an install that strips like dh_strip ----

#[test]
fn stripped_install_with_debug_link() {
    let tmp = scratch("stripped");
    let root = tmp.path().join("proj");
    let makefile = "CFLAGS ?= -O2 -g\nall: hello\n\
        hello: main.o greet.o\n\t$(CC) $(CFLAGS) -o $@ main.o greet.o\n\
        %.o: %.c\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\
        install: hello\n\
        \tinstall -D -m 0755 hello $(DESTDIR)/usr/bin/hello\n\
        \tmkdir -p $(DESTDIR)/usr/lib/debug/usr/bin\n\
        \tobjcopy --only-keep-debug $(DESTDIR)/usr/bin/hello $(DESTDIR)/usr/lib/debug/usr/bin/hello.debug\n\
        \tobjcopy --strip-all --add-gnu-debuglink=$(DESTDIR)/usr/lib/debug/usr/bin/hello.debug \
        $(DESTDIR)/usr/bin/hello\n\
        clean:\n\trm -f hello *.o\n.PHONY: all install clean\n";
    let sources = [
        ("Makefile", makefile),
        ("greet.c", GREET_C),
        ("greet.h", GREET_H),
        ("main.c", MAIN_C),
    ];
    write(&root, &sources);
    write(&root, &[("fix.diff", FIX_DIFF)]);
    let out = patch_make(&root, &["--clean", "fix.diff"]);
    assert_restored(&root, &sources);
    let built = built(tmp, &root, "usr/bin/hello", "usr/lib", &out);
    assert!(
        !support::tools::has_section(&built.program, ".symtab"),
        "the install did not strip"
    );
    assert_eq!(built.targets, [build_id(&built.program)]);
    patch_and_unpatch(&case("stripped"), &built);
}
