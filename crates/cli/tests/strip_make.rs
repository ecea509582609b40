//! kpatch_strip and kpatch_make as a user runs them: the seed's recipe
//! through the real binaries, usage errors, and bad inputs that must leave
//! no output behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const STRIP: &str = env!("CARGO_BIN_EXE_kpatch_strip");
const MAKE: &str = env!("CARGO_BIN_EXE_kpatch_make");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../elfpatch/tests/fixtures")
        .join(name)
}

fn tool(dir: &Path, prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok(dir: &Path, prog: &str, args: &[&str]) -> String {
    let out = tool(dir, prog, args);
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a one-line failure mentioning every `needle`.
fn fails(dir: &Path, prog: &str, args: &[&str], needles: &[&str]) {
    let out = tool(dir, prog, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{prog} {args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{prog} {args:?}: {err:?} lacks {n:?}");
    }
}

/// foo (original), foobar (linked with -q), foo.nq (linked without).
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["gotpcrel_orig.s", "gotpcrel_patched.s"] {
        std::fs::copy(fixture(f), d.join(f)).unwrap();
    }
    ok(d, "gcc", &["-o", "foo", "gotpcrel_orig.s"]);
    ok(d, "gcc", &["-o", "foobar", "gotpcrel_patched.s", "-Wl,-q"]);
    ok(d, "gcc", &["-o", "foo.nq", "gotpcrel_patched.s"]);
    dir
}

#[test]
fn seed_recipe_through_the_binaries() {
    let dir = setup();
    let d = dir.path();
    ok(d, STRIP, &["--strip", "foobar", "foobar.stripped"]);
    ok(d, STRIP, &["--rel-fixup", "foo", "foobar.stripped"]);
    ok(d, "strip", &["--strip-unneeded", "foobar.stripped"]);
    ok(d, STRIP, &["--undo-link", "foo", "foobar.stripped"]);
    let id = ok(d, STRIP, &["--build-id", "foo"]).trim().to_string();
    let readelf = ok(d, "readelf", &["-n", "foo"]);
    assert!(readelf.contains(&format!("Build ID: {id}")), "{readelf}");
    ok(
        d,
        MAKE,
        &[
            "-b",
            &id,
            "-n",
            "foo",
            "-l",
            "2",
            "foobar.stripped",
            "-o",
            "foo.kpatch",
        ],
    );

    let elf = std::fs::read(d.join("foobar.stripped")).unwrap();
    let file = std::fs::read(d.join("foo.kpatch")).unwrap();
    let k = kpatch_file::KpatchFile::parse(&file).unwrap();
    assert_eq!(k.header.build_id, id);
    assert_eq!(k.header.modulename, "foo");
    assert_eq!(k.header.user_level, 2);
    assert_ne!(k.header.csum, 0, "kpatch_make writes a real checksum");
    assert_eq!(k.header.kpatch_offset as usize, kpatch_file::HEADER_SIZE);
    assert_eq!(
        file.len(),
        kpatch_file::HEADER_SIZE + elf.len().div_ceil(16) * 16
    );
    assert_eq!(&k.elf[..elf.len()], &elf[..]);

    let dump = ok(d, STRIP, &["--dump", "foobar.stripped"]);
    assert!(
        dump.contains("relocations .rela.kpatch.info -> .kpatch.info"),
        "{dump}"
    );
    assert!(
        dump.contains("R_X86_64_64 i_m_being_patched.kpatch +0x0"),
        "{dump}"
    );
    assert!(!dump.contains("PLT32"), "{dump}");
    assert!(
        dump.contains(
            "info [0] i_m_being_patched.kpatch: daddr i_m_being_patched+0x0 \
             saddr i_m_being_patched.kpatch+0x0 dlen 0x16 slen 0x3e"
        ),
        "{dump}"
    );
}

#[test]
fn help_and_usage() {
    let d = Path::new("/");
    for prog in [STRIP, MAKE] {
        let out = tool(d, prog, &["--help"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
        assert_eq!(tool(d, prog, &[]).status.code(), Some(2));
    }
    assert_eq!(tool(d, STRIP, &["--strip", "a"]).status.code(), Some(2));
    assert_eq!(
        tool(d, STRIP, &["--strip", "--dump", "a", "b"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        tool(d, STRIP, &["--rel-fixup", "a", "b", "c"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(tool(d, MAKE, &["x.elf", "-o", "y"]).status.code(), Some(2));
}

#[test]
fn strip_refusals_write_nothing() {
    let dir = setup();
    let d = dir.path();
    std::fs::write(d.join("notes.txt"), "hello\n").unwrap();
    fails(
        d,
        STRIP,
        &["--strip", "notes.txt", "out"],
        &["notes.txt", "not an ELF file"],
    );
    fails(
        d,
        STRIP,
        &["--strip", "foo", "out"],
        &["foo:", "no .kpatch.* sections"],
    );
    fails(
        d,
        STRIP,
        &["--strip", "foo.nq", "out"],
        &["foo.nq", "-Wl,-q"],
    );
    fails(d, STRIP, &["--strip", "missing", "out"], &["missing"]);
    assert!(!d.join("out").exists());
    // An existing output survives a failed run untouched.
    std::fs::write(d.join("out"), "old").unwrap();
    fails(d, STRIP, &["--strip", "foo", "out"], &["foo"]);
    assert_eq!(std::fs::read(d.join("out")).unwrap(), b"old");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn in_place_refusals_leave_the_patch_alone() {
    let dir = setup();
    let d = dir.path();
    std::fs::write(d.join("notes.txt"), "hello\n").unwrap();
    ok(d, STRIP, &["--strip", "foobar", "p"]);
    let before = std::fs::read(d.join("p")).unwrap();
    fails(
        d,
        STRIP,
        &["--rel-fixup", "notes.txt", "p"],
        &["notes.txt", "not an ELF"],
    );
    fails(
        d,
        STRIP,
        &["--rel-fixup", "foo", "foo.nq"],
        &["foo.nq", "-Wl,-q"],
    );
    fails(d, STRIP, &["--undo-link", "notes.txt"], &["notes.txt"]);
    fails(d, STRIP, &["--build-id", "notes.txt"], &["notes.txt"]);
    ok(
        d,
        "gcc",
        &["-o", "noid", "gotpcrel_orig.s", "-Wl,--build-id=none"],
    );
    fails(
        d,
        STRIP,
        &["--build-id", "noid"],
        &["noid", "no GNU BuildID"],
    );
    assert_eq!(std::fs::read(d.join("p")).unwrap(), before);
}

#[test]
fn kpatch_make_refusals_write_nothing() {
    let dir = setup();
    let d = dir.path();
    std::fs::write(d.join("notes.txt"), "hello\n").unwrap();
    let id = "0123456789abcdef";
    fails(
        d,
        MAKE,
        &["-b", id, "notes.txt", "-o", "k"],
        &["notes.txt", "not an ELF"],
    );
    fails(
        d,
        MAKE,
        &["-b", id, "foobar", "-o", "k"],
        &["foobar", "--strip"],
    );
    ok(d, STRIP, &["--strip", "foobar", "p"]);
    fails(d, MAKE, &["-b", id, "p", "-o", "k"], &["p:", "--undo-link"]);
    ok(d, STRIP, &["--undo-link", "p"]);
    fails(d, MAKE, &["-b", "not-hex", "p", "-o", "k"], &["not-hex"]);
    assert!(!d.join("k").exists());
    ok(d, MAKE, &["-b", id, "p", "-o", "k"]);
    assert!(d.join("k").exists());
}

// ---- the whole build side through kpatch_gensrc ----

const GENSRC: &str = env!("CARGO_BIN_EXE_kpatch_gensrc");

/// The seed's recipe from C sources with gcc, patching `i_m_being_patched`;
/// returns the dump of the finished patch ELF.
fn full_recipe(
    d: &Path,
    orig_src: &str,
    patched_src: &str,
    cflags: &[&str],
    gensrc_flags: &[&str],
) -> String {
    let dump = full_recipe_with(d, "gcc", orig_src, patched_src, cflags, gensrc_flags);
    let info = dump
        .split("relocations .rela.kpatch.info -> .kpatch.info\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no .rela.kpatch.info: {dump}"));
    // The patch code's unwind info comes along, against the patch code.
    let cfi = dump
        .split("relocations .rela.kpatch.eh_frame -> .kpatch.eh_frame\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no .rela.kpatch.eh_frame: {dump}"));
    assert!(
        cfi.lines()
            .next()
            .is_some_and(|l| l.contains("R_X86_64_PC32 .kpatch.text")),
        "{dump}"
    );
    let mut lines = info.lines();
    assert_eq!(
        lines.next(),
        Some("  0x0 R_X86_64_64 i_m_being_patched +0x0"),
        "{dump}"
    );
    assert_eq!(
        lines.next(),
        Some("  0x8 R_X86_64_64 i_m_being_patched.kpatch +0x0"),
        "{dump}"
    );
    dump
}

/// gcc -S (or g++ -S) both sources, kpatch_gensrc, link with -q, strip,
/// rel-fixup, binutils strip, undo-link, kpatch_make; checks the results
/// and returns the dump of the finished patch ELF.
fn full_recipe_with(
    d: &Path,
    cc: &str,
    orig_src: &str,
    patched_src: &str,
    cflags: &[&str],
    gensrc_flags: &[&str],
) -> String {
    let shared = cflags.contains(&"-shared");
    for (src, out) in [(orig_src, "foo.s"), (patched_src, "bar.s")] {
        let src = fixture(src);
        let mut a: Vec<&str> = cflags.iter().copied().filter(|f| *f != "-shared").collect();
        a.extend(["-S", src.to_str().unwrap(), "-o", out]);
        ok(d, cc, &a);
    }
    let mut g = vec!["--os=rhel6", "-i", "foo.s", "-i", "bar.s", "-o", "foobar.s"];
    g.extend_from_slice(gensrc_flags);
    ok(d, GENSRC, &g);
    let orig = if shared { "libfoo.so" } else { "foo" };
    let mut a = cflags.to_vec();
    a.extend(["-o", orig, "foo.s"]);
    ok(d, cc, &a);
    let mut a = cflags.to_vec();
    a.extend(["-o", "foobar", "foobar.s", "-Wl,-q"]);
    ok(d, cc, &a);
    ok(d, STRIP, &["--strip", "foobar", "foobar.stripped"]);
    ok(d, STRIP, &["--rel-fixup", orig, "foobar.stripped"]);
    ok(d, "strip", &["--strip-unneeded", "foobar.stripped"]);
    ok(d, STRIP, &["--undo-link", orig, "foobar.stripped"]);
    let id = ok(d, STRIP, &["--build-id", orig]).trim().to_string();
    ok(d, MAKE, &["-b", &id, "foobar.stripped", "-o", "foo.kpatch"]);
    let file = std::fs::read(d.join("foo.kpatch")).unwrap();
    let k = kpatch_file::KpatchFile::parse(&file).unwrap();
    assert_eq!(k.header.build_id, id);
    elfpatch::check_patch_elf(k.elf).unwrap();
    let readelf = tool(d, "readelf", &["-a", "-W", "foobar.stripped"]);
    let err = String::from_utf8_lossy(&readelf.stderr);
    assert!(
        readelf.status.success() && err.trim().is_empty(),
        "readelf: {err}"
    );
    let dump = ok(d, STRIP, &["--dump", "foobar.stripped"]);
    assert!(!dump.contains("PLT32"), "{dump}");
    // The only relocations left as NONE are the thread-pointer offsets
    // --rel-fixup checked equal to the original's (the code has them).
    for line in dump.lines().filter(|l| l.contains("R_X86_64_NONE")) {
        let sym = line.split_whitespace().nth(2).unwrap_or("");
        assert!(
            dump.lines()
                .any(|l| l.starts_with("symbol [") && l.contains(&format!("] {sym} TLS "))),
            "{line}\n{dump}"
        );
    }
    assert!(dump.contains("relocations .rela.kpatch.info"), "{dump}");
    dump
}

#[test]
fn through_gensrc_seed_example_every_build() {
    for cflags in [
        &[][..],
        &["-fno-pie", "-no-pie"][..],
        &["-O2", "-g"][..],
        &["-O2", "-g", "-fno-pie", "-no-pie"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        full_recipe(dir.path(), "foo.c", "bar.c", cflags, &[]);
    }
}

#[test]
fn through_gensrc_shared_library() {
    for cflags in [
        &["-shared", "-fPIC"][..],
        &["-shared", "-fPIC", "-O2", "-g"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        full_recipe(dir.path(), "libfoo.c", "libbar.c", cflags, &[]);
    }
}

/// `--force-gotpcrel` makes every reference to the original's data go
/// through the GOT; after rel-fixup none is left on a defined symbol, and
/// the static `hidden` is addressed through its section.
#[test]
fn through_gensrc_force_gotpcrel() {
    for cflags in [
        &[][..],
        &["-fno-pie", "-no-pie"][..],
        &["-shared", "-fPIC"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let dump = full_recipe(
            dir.path(),
            "counter_foo.c",
            "counter_bar.c",
            cflags,
            &["--force-gotpcrel"],
        );
        let text = dump
            .split("relocations .rela.kpatch.text -> .kpatch.text\n")
            .nth(1)
            .unwrap()
            .split("relocations")
            .next()
            .unwrap();
        assert!(!text.contains("GOTPCREL"), "{cflags:?}: {dump}");
        let counter = text.lines().find(|l| l.contains(" counter ")).unwrap();
        assert!(
            counter.contains("R_X86_64_PC32") || counter.contains("R_X86_64_32S"),
            "{counter}"
        );
        assert!(text.contains(" .data "), "hidden via .data: {dump}");
        assert!(!text.contains(" hidden "), "{dump}");
    }
}

// ---- live: the patch's references to the original's data hold at run time ----

const CTL: &str = env!("CARGO_BIN_EXE_libcare-ctl");

/// A started patient, killed by PID when the test ends however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn complete_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if !text.ends_with('\n') {
        lines.pop();
    }
    lines
}

fn wait_for(path: &Path, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let lines = complete_lines(path);
        if pred(&lines) {
            return lines;
        }
        let tail = &lines[lines.len().saturating_sub(8)..];
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: ...{tail:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Starts `prog` in `d`, patches it with foo.kpatch, unpatches it, and
/// checks that the patched function printed the new text with the same
/// `counter` and `hidden` sequence the original code keeps advancing.
fn patch_live(d: &Path, prog: &str) {
    let out_path = d.join("out.txt");
    let out = std::fs::File::create(&out_path).unwrap();
    let child = Command::new(d.join(prog))
        .current_dir(d)
        .stdout(out)
        .spawn()
        .unwrap();
    let patient = Running(child);
    let pid = patient.0.id().to_string();
    let unpatched = |l: &String| l.starts_with("i'm unpatched!");
    let patched = |l: &String| l.starts_with("you patched my");
    wait_for(&out_path, "two unpatched lines", |ls| {
        ls.iter().filter(|l| unpatched(l)).count() >= 2
    });
    ok(d, CTL, &["patch", "-p", &pid, "foo.kpatch"]);
    wait_for(&out_path, "two patched lines", |ls| {
        ls.iter().filter(|l| patched(l)).count() >= 2
    });
    ok(d, CTL, &["unpatch", "-p", &pid]);
    let lines = wait_for(&out_path, "unpatched again", |ls| {
        let last_patched = ls.iter().rposition(patched);
        last_patched.is_some_and(|i| ls[i + 1..].iter().any(unpatched))
    });
    drop(patient);
    // Every number a line prints is advanced by one per iteration by the
    // original code; the patched function must print the same sequence.
    let values: Vec<Vec<i64>> = lines
        .iter()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.trim_end_matches('!').parse::<i64>().ok())
                .collect()
        })
        .collect();
    for (i, w) in values.windows(2).enumerate() {
        assert!(!w[0].is_empty(), "no numbers in {lines:?}");
        let steps: Vec<i64> = w[1].iter().zip(&w[0]).map(|(b, a)| b - a).collect();
        assert!(
            w[0].len() == w[1].len() && steps.iter().all(|&d| d == 1),
            "numbers jumped between lines {i} and {}: {lines:?}",
            i + 1
        );
    }
}

#[test]
fn live_force_gotpcrel_executables() {
    for cflags in [&[][..], &["-fno-pie", "-no-pie"][..]] {
        let dir = tempfile::tempdir().unwrap();
        full_recipe(
            dir.path(),
            "counter_foo.c",
            "counter_bar.c",
            cflags,
            &["--force-gotpcrel"],
        );
        patch_live(dir.path(), "foo");
    }
}

/// In a library ld leaves the GOT load of `counter` in place; rel-fixup's
/// mov -> lea is what makes the patch read the library's `counter`.
#[test]
fn live_force_gotpcrel_shared_library() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    full_recipe(
        d,
        "counter_lib_foo.c",
        "counter_lib_bar.c",
        &["-shared", "-fPIC"],
        &["--force-gotpcrel"],
    );
    let rpath = format!("-Wl,-rpath,{}", d.display());
    let main = fixture("counter_main.c");
    ok(
        d,
        "gcc",
        &["-o", "main", main.to_str().unwrap(), "-L.", "-lfoo", &rpath],
    );
    patch_live(d, "main");
}

/// The main program's thread-locals, one in .tdata and one in .tbss: the
/// patch reads them at the thread-pointer offsets of the original.
#[test]
fn live_thread_locals() {
    for cflags in [&[][..], &["-fno-pie", "-no-pie"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let dump = full_recipe(dir.path(), "tls_live_foo.c", "tls_live_bar.c", cflags, &[]);
        // Checked against the original at build time: the linker's offset
        // in the code stays, nothing is left for the doctor to relocate.
        assert!(dump.contains("R_X86_64_NONE tls_bss +0x0"), "{dump}");
        patch_live(dir.path(), "foo");
    }
}

/// C++: a member function with a try/catch (LSDA, typeinfo, DW.ref
/// indirections, calls into libstdc++), and at -O2 a .cold part.
#[test]
fn live_cxx_member_function() {
    for cflags in [&[][..], &["-O2", "-g"][..]] {
        let dir = tempfile::tempdir().unwrap();
        full_recipe_with(
            dir.path(),
            "g++",
            "greeter_foo.cpp",
            "greeter_bar.cpp",
            cflags,
            &[],
        );
        patch_live(dir.path(), "foo");
    }
}

/// `-no-pie` C++ with a local that has a destructor: the patch's CFI names
/// the personality routine through a jump table slot (GOTPCREL), which the
/// doctor must accept and fill; the patch applies and reverts.
#[test]
fn live_cxx_cleanup_no_pie() {
    for cflags in [
        &["-fno-pie", "-no-pie"][..],
        &["-O2", "-fno-pie", "-no-pie"][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let dump = full_recipe_with(
            dir.path(),
            "g++",
            "cleanup_foo.cpp",
            "cleanup_bar.cpp",
            cflags,
            &[],
        );
        assert!(
            dump.contains("R_X86_64_GOTPCREL __gxx_personality_v0"),
            "{dump}"
        );
        patch_live(dir.path(), "foo");
    }
}

// ---- the doctor's stack walker reads the patch's .kpatch.eh_frame ----

/// ELF gABI symbol type of a function (cli tests have no ELF crate).
const STT_FUNC: u8 = 2;

/// A thread's stack for the unwinder: `bytes` from `at` on, nothing else.
struct FakeStack {
    at: u64,
    bytes: Vec<u8>,
}

impl doctor::unwind::Memory for FakeStack {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), doctor::unwind::MemoryError> {
        let fail = || doctor::unwind::MemoryError {
            addr,
            len: buf.len(),
            reason: "outside the fake stack".into(),
        };
        let from = addr.checked_sub(self.at).ok_or_else(fail)? as usize;
        let src = self.bytes.get(from..from + buf.len()).ok_or_else(fail)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// The doctor's own path for a patch region, without a process: parse the
/// .kpatch, lay it out, relocate it at a base, give the relocated
/// `.kpatch.eh_frame` to its unwind tables for the region's code, and walk
/// a thread stopped at the entry of each patch function (and, where the
/// code is the -O0 frame-pointer prologue, inside its body).
#[test]
fn doctor_unwinds_patch_frames_from_kpatch_eh_frame() {
    use doctor::patch::Place;
    use doctor::resolve::Value;
    use doctor::unwind::{Registers, Tables};

    for cflags in [&[][..], &["-O2", "-g"][..], &["-fno-pie", "-no-pie"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        full_recipe(d, "foo.c", "bar.c", cflags, &[]);
        let patch = doctor::patch::load(&d.join("foo.kpatch")).unwrap();
        let layout = doctor::layout::plan(&patch);
        // Low enough for -no-pie's 32-bit absolute references to the
        // original, within PC32 reach of it.
        let base = 0x2000_0000u64;
        let values: Vec<Value> = patch
            .symbols
            .iter()
            .map(|s| {
                let addr = match s.place {
                    Place::Section(i) => match layout.section_offset.get(i).copied().flatten() {
                        Some(off) => base + off + s.value,
                        None => 0x40_0000 + i as u64 * 0x1_0000 + s.value,
                    },
                    _ => 0x7f99_0000_0000,
                };
                let imported = matches!(s.place, Place::Undefined);
                Value {
                    addr,
                    imported,
                    kind: if imported { STT_FUNC } else { s.kind },
                }
            })
            .collect();
        let image = doctor::relocate::build_image(&patch, &layout, base, &values, 0).unwrap();
        let index = |name: &str| {
            patch
                .sections
                .iter()
                .position(|s| s.name == name)
                .unwrap_or_else(|| panic!("{name} in the patch"))
        };
        let (eh, text) = (index(".kpatch.eh_frame"), index(".kpatch.text"));
        let eh_off = layout.section_offset[eh].unwrap();
        let eh_bytes = image[eh_off as usize..(eh_off + patch.sections[eh].size) as usize].to_vec();
        let text_off = layout.section_offset[text].unwrap();
        let code = base + text_off..base + text_off + patch.sections[text].size;
        let mut tables = Tables::new();
        tables
            .add_code("patch", code, eh_bytes, base + eh_off)
            .unwrap();
        let functions: Vec<_> = patch
            .symbols
            .iter()
            .filter(|s| s.place == Place::Section(text) && s.size > 0 && s.kind == STT_FUNC)
            .collect();
        assert!(!functions.is_empty());
        assert_eq!(tables.fde_count(), functions.len(), "{cflags:?}");

        let rsp = 0x7ffd_0000_1000u64;
        let mut inside = 0;
        for f in &functions {
            let entry = base + text_off + f.value;
            // At the entry the return address (0: outermost) is at rsp.
            let stack = FakeStack {
                at: rsp,
                bytes: vec![0; 64],
            };
            let regs = Registers {
                rip: entry,
                rsp,
                ..Default::default()
            };
            let frames = doctor::unwind::unwind(&regs, &stack, &tables, 8)
                .unwrap_or_else(|e| panic!("{cflags:?} {}: {e}", f.name));
            assert_eq!(frames[0].object.as_deref(), Some("patch"), "{frames:?}");
            assert_eq!(frames[0].cfa, Some(rsp + 8), "{}: {frames:?}", f.name);
            // After push %rbp; mov %rsp,%rbp the CFA is rbp + 16.
            let at = (text_off + f.value) as usize;
            if image[at..at + 4] == [0x55, 0x48, 0x89, 0xe5] {
                let regs = Registers {
                    rip: entry + 4,
                    rsp: rsp - 0x20,
                    rbp: rsp,
                    ..Default::default()
                };
                let frames = doctor::unwind::unwind(&regs, &stack, &tables, 8)
                    .unwrap_or_else(|e| panic!("{cflags:?} {} body: {e}", f.name));
                assert_eq!(frames[0].cfa, Some(rsp + 16), "{}: {frames:?}", f.name);
                inside += 1;
            }
        }
        if !cflags.contains(&"-O2") {
            assert!(inside > 0, "{cflags:?}: no -O0 prologue found");
        }
    }
}
