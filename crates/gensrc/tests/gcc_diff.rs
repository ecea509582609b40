//! Real `gcc -S` output in, augmented assembly out, assembled and linked
//! with `-Wl,-q`, checked with readelf and by running the program.

use std::path::{Path, PathBuf};
use std::process::Command;

use gensrc::{Options, Outcome};

struct Case {
    dir: tempfile::TempDir,
}

/// One build configuration: compiler flags and link flags.
#[derive(Clone, Copy)]
struct Build {
    cflags: &'static [&'static str],
    lflags: &'static [&'static str],
}

const PIE_O0: Build = Build {
    cflags: &["-O0"],
    lflags: &[],
};
const PIE_O2G: Build = Build {
    cflags: &["-O2", "-g"],
    lflags: &[],
};
const NOPIE_O0: Build = Build {
    cflags: &["-O0", "-fno-pie"],
    lflags: &["-no-pie"],
};
const NOPIE_O2G: Build = Build {
    cflags: &["-O2", "-g", "-fno-pie"],
    lflags: &["-no-pie"],
};
const SHARED_O2G: Build = Build {
    cflags: &["-O2", "-g", "-fPIC"],
    lflags: &["-shared"],
};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Case {
    fn new() -> Self {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `gcc -S` of `src` saved as `name.c`; returns the assembly text.
    fn asm(&self, name: &str, src: &str, b: Build) -> String {
        let c = self.path(&format!("{name}.c"));
        std::fs::write(&c, src).unwrap();
        let s = self.path(&format!("{name}.s"));
        run(Command::new("gcc")
            .args(b.cflags)
            .arg("-S")
            .arg(&c)
            .arg("-o")
            .arg(&s)
            .current_dir(self.dir.path()));
        std::fs::read_to_string(s).unwrap()
    }

    /// Assembles and links `text` as `name` with `-Wl,-q`.
    fn link(&self, name: &str, text: &str, b: Build) -> PathBuf {
        let s = self.path(&format!("{name}.s"));
        std::fs::write(&s, text).unwrap();
        let exe = self.path(name);
        run(Command::new("gcc")
            .args(b.lflags)
            .arg("-o")
            .arg(&exe)
            .arg(&s)
            .arg("-Wl,-q"));
        exe
    }
}

fn diff(orig: &str, patched: &str, opts: &Options) -> Outcome {
    gensrc::diff("orig.s", orig, "patched.s", patched, opts)
        .unwrap_or_else(|e| panic!("gensrc failed: {e}"))
}

/// (daddr, saddr) of every `.kpatch.info` entry in the output.
fn info_entries(out: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = out.lines().collect();
    let mut v = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.ends_with(".Lpi:") {
            let q = |s: &str| s.trim().strip_prefix(".quad").unwrap().trim().to_string();
            v.push((q(lines[i + 1]), q(lines[i + 2])));
        }
    }
    v
}

/// Original names of the functions the patch replaces.
fn patched_functions(out: &str) -> Vec<String> {
    let mut v: Vec<String> = info_entries(out)
        .into_iter()
        .filter(|(d, _)| d != "0")
        .map(|(d, _)| d)
        .collect();
    v.sort();
    v
}

/// The text the patch adds after the original.
fn patch_part(out: &str) -> &str {
    out.find("#---------- kpatch begin")
        .map_or("", |i| &out[i..])
}

/// The output without the patch and without the end labels: must be the
/// original, byte for byte.
fn original_part(out: &str) -> String {
    let head = out
        .find("#---------- kpatch begin")
        .map_or(out, |i| &out[..i]);
    head.split_inclusive('\n')
        .filter(|l| !l.trim_end().ends_with(".Lfe:"))
        .collect()
}

fn readelf(args: &[&str], file: &Path) -> String {
    run(Command::new("readelf").args(args).arg(file))
}

fn assert_patch_sections(file: &Path) {
    let s = readelf(&["-SW"], file);
    for sec in [".kpatch.text", ".kpatch.info", ".kpatch.strtab"] {
        assert!(s.contains(sec), "{sec} missing:\n{s}");
    }
    let r = readelf(&["-rW"], file);
    assert!(
        r.contains("'.rela.kpatch.info'"),
        "no .rela.kpatch.info:\n{r}"
    );
}

// ---- the seed's walk-through ----

const SEED_FOO: &str = r#"#include <stdio.h>
#include <unistd.h>
void i_m_being_patched(void)
{
	printf("i'm unpatched!\n");
}
int main(void)
{
	while (1) {
		i_m_being_patched();
		sleep(1);
	}
}
"#;

fn seed_bar() -> String {
    SEED_FOO.replace(
        r#"printf("i'm unpatched!\n");"#,
        r#"printf("you patched my %s\n", "tralala");"#,
    )
}

/// A finite version of the seed program, so the linked result can run.
const FINITE_FOO: &str = r#"#include <stdio.h>
void i_m_being_patched(void)
{
	printf("i'm unpatched!\n");
}
int main(void)
{
	for (int i = 0; i < 2; i++)
		i_m_being_patched();
	return 0;
}
"#;

fn seed_case(b: Build, force_gotpcrel: bool) {
    let c = Case::new();
    let orig = c.asm("foo", SEED_FOO, b);
    let bar = c.asm("bar", &seed_bar(), b);
    let opts = Options {
        force_gotpcrel,
        ..Options::default()
    };
    let out = diff(&orig, &bar, &opts);
    let funcs = patched_functions(&out.text);
    assert!(
        funcs.contains(&"i_m_being_patched".to_string()),
        "{funcs:?}"
    );
    // At -O0 nothing is inlined, so main is untouched.
    if b.cflags.contains(&"-O0") {
        assert_eq!(funcs, ["i_m_being_patched"]);
    }
    assert_eq!(original_part(&out.text), orig, "original text not kept");
    assert!(out.text.contains("i_m_being_patched.Lfe:"));
    let exe = c.link("foobar", &out.text, b);
    assert_patch_sections(&exe);

    // The finite program: the original code path still runs unchanged.
    let c2 = Case::new();
    let ffoo = c2.asm("foo", FINITE_FOO, b);
    let fbar = c2.asm(
        "bar",
        &FINITE_FOO.replace(
            r#"printf("i'm unpatched!\n");"#,
            r#"printf("you patched my %s\n", "tralala");"#,
        ),
        b,
    );
    let out = diff(&ffoo, &fbar, &opts);
    let orig = c2.link("foo", &ffoo, b);
    let patched = c2.link("foobar", &out.text, b);
    assert_patch_sections(&patched);
    let a = run(&mut Command::new(&orig));
    let p = run(&mut Command::new(&patched));
    assert_eq!(a, "i'm unpatched!\ni'm unpatched!\n");
    assert_eq!(a, p);
}

#[test]
fn seed_example_pie_o0() {
    seed_case(PIE_O0, false);
}

#[test]
fn seed_example_pie_o2_g() {
    seed_case(PIE_O2G, false);
}

#[test]
fn seed_example_nopie_o0() {
    seed_case(NOPIE_O0, false);
}

#[test]
fn seed_example_nopie_o2_g() {
    seed_case(NOPIE_O2G, false);
}

#[test]
fn seed_example_force_gotpcrel_pie_and_nopie() {
    seed_case(PIE_O2G, true);
    seed_case(NOPIE_O0, true);
}

#[test]
fn identical_inputs_give_the_original_back() {
    let c = Case::new();
    for b in [PIE_O0, NOPIE_O2G] {
        let orig = c.asm("foo", SEED_FOO, b);
        let out = diff(&orig, &orig, &Options::default());
        assert_eq!(out.text, orig);
        assert!(out.report.changed.is_empty());
    }
}

// ---- renumbering and variables ----

const COUNTERS: &str = r#"#include <stdio.h>
int global_total = 3;
static int file_static;
__attribute__((noinline)) int first(int x)
{
	static int count;
	count += x;
	return count;
}
__attribute__((noinline)) int second(int x)
{
	static int count;
	count += 2 * x;
	file_static++;
	printf("second %d %d\n", count, global_total);
	return count;
}
__attribute__((noinline)) int third(int x)
{
	static int count = 5;
	count++;
	global_total += x + file_static;
	printf("third %d\n", count);
	return count + global_total;
}
int main(void)
{
	first(1);
	second(2);
	third(3);
	printf("%d %d\n", global_total, file_static);
	return 0;
}
"#;

/// `first` gains a second static local (renumbering every later
/// `count.N`) and a new string; `third` changes its message.
fn counters_patched() -> String {
    COUNTERS
        .replace(
            "\tstatic int count;\n\tcount += x;\n\treturn count;",
            "\tstatic int count;\n\tstatic int extra;\n\textra++;\n\tcount += x;\n\tif (extra > 100) puts(\"many\");\n\treturn count;",
        )
        .replace("\"third %d\\n\"", "\"third: %d\\n\"")
}

#[test]
fn renumbered_names_are_not_changes_and_variables_are_not_duplicated() {
    for b in [PIE_O0, PIE_O2G, NOPIE_O2G] {
        let c = Case::new();
        let o = c.asm("o", COUNTERS, b);
        let p = c.asm("p", &counters_patched(), b);
        let out = diff(&o, &p, &Options::default());
        let funcs = patched_functions(&out.text);
        assert_eq!(funcs, ["first", "third"], "{:?}", b.cflags);
        let part = patch_part(&out.text);
        // Existing variables are referenced, never defined again.
        for v in [
            "global_total:",
            "file_static:",
            "count.0:",
            "count.1:",
            "count.2:",
        ] {
            assert!(!part.contains(&format!("\n{v}")), "{v} duplicated:\n{part}");
        }
        // The new static local is new data in the patch.
        assert_eq!(out.report.new_variables.len(), 1, "{:?}", out.report);
        assert!(out.report.new_variables[0].starts_with("extra."));
        // third's counter is referred to by its original name.
        let third_orig = o
            .lines()
            .rfind(|l| l.contains("count.") && l.contains("(%rip)"))
            .and_then(|l| {
                l.split(|c: char| c.is_whitespace() || c == ',' || c == '(')
                    .find(|t| t.starts_with("count."))
            })
            .unwrap()
            .to_string();
        assert!(
            part.contains(&format!("{third_orig}(%rip)")),
            "{third_orig} not used:\n{part}"
        );
        let orig = c.link("o", &o, b);
        let patched = c.link("op", &out.text, b);
        assert_patch_sections(&patched);
        assert_eq!(
            run(&mut Command::new(&orig)),
            run(&mut Command::new(&patched))
        );
    }
}

#[test]
fn changed_initial_value_is_refused_with_name_and_lines() {
    let c = Case::new();
    let o = c.asm("o", COUNTERS, PIE_O2G);
    let p = c.asm(
        "p",
        &COUNTERS.replace("global_total = 3", "global_total = 4"),
        PIE_O2G,
    );
    let e = gensrc::diff("o.s", &o, "p.s", &p, &Options::default())
        .err()
        .expect("must refuse")
        .to_string();
    assert!(
        e.contains("global_total") && e.contains("original line") && e.contains("patched line"),
        "{e}"
    );
    // --ignore-changes accepts it and keeps the original object.
    let opts = Options {
        ignore_changes: vec!["global_total".into()],
        ..Options::default()
    };
    let out = diff(&o, &p, &opts);
    assert_eq!(out.report.ignored_variables, ["global_total"]);
}

// ---- -O2 shapes: jump tables, cold parts, clones ----

const SWITCH: &str = r#"#include <stdio.h>
#include <stdlib.h>
static int count;
int g = 5;
__attribute__((noinline)) static int helper(int x, int y) { return x * y + g; }
int sw(int x)
{
	static int calls;
	calls++;
	switch (x) {
	case 0: return helper(x, 3) + 1;
	case 1: puts("one"); return 7;
	case 2: return 9 + count;
	case 3: return 22;
	case 4: return 33;
	case 5: return 44;
	case 6: if (x > g + 10) abort(); return 1;
	}
	if (__builtin_expect(x == 100, 0)) { fprintf(stderr, "bad %d\n", x); exit(1); }
	return calls;
}
int main(int argc, char **argv)
{
	(void)argv;
	count = argc;
	int s = 0;
	for (int i = 0; i < 8; i++)
		s += sw(i);
	printf("%d\n", s);
	return 0;
}
"#;

#[test]
fn jump_table_and_cold_part_travel_with_their_function() {
    for b in [PIE_O2G, NOPIE_O2G, PIE_O0] {
        let c = Case::new();
        let o = c.asm("o", SWITCH, b);
        let p = c.asm(
            "p",
            &SWITCH.replace("case 3: return 22;", "case 3: return 23;"),
            b,
        );
        for gotpcrel in [false, true] {
            let opts = Options {
                force_gotpcrel: gotpcrel,
                ..Options::default()
            };
            let out = diff(&o, &p, &opts);
            let mut funcs = patched_functions(&out.text);
            funcs.retain(|f| f != "sw.cold");
            assert_eq!(funcs, ["sw"], "{:?}", b.cflags);
            let orig = c.link("o", &o, b);
            let patched = c.link("op", &out.text, b);
            assert_patch_sections(&patched);
            assert_eq!(
                run(&mut Command::new(&orig)),
                run(&mut Command::new(&patched))
            );
        }
    }
}

#[test]
fn shared_library_patch_links() {
    let c = Case::new();
    let lib = "int counter;\nint bump(int x) { counter += x; return counter * 2; }\nint keep(void) { return counter; }\n";
    let o = c.asm("o", lib, SHARED_O2G);
    let p = c.asm("p", &lib.replace("counter * 2", "counter * 3"), SHARED_O2G);
    for gotpcrel in [false, true] {
        let opts = Options {
            force_gotpcrel: gotpcrel,
            ..Options::default()
        };
        let out = diff(&o, &p, &opts);
        assert_eq!(patched_functions(&out.text), ["bump"]);
        let so = c.link("libop.so", &out.text, SHARED_O2G);
        assert_patch_sections(&so);
    }
}

#[test]
fn new_function_and_new_variable_go_to_the_patch() {
    let c = Case::new();
    let src = "#include <stdio.h>\nint work(int x) { return x + 1; }\nint main(void) { printf(\"%d\\n\", work(1)); return 0; }\n";
    let patched = "#include <stdio.h>\nint new_calls = 7;\n__attribute__((noinline)) int added(int x) { new_calls++; return x * 10; }\nint work(int x) { return added(x) + 1; }\nint main(void) { printf(\"%d\\n\", work(1)); return 0; }\n";
    for b in [PIE_O0, PIE_O2G, NOPIE_O2G] {
        let o = c.asm("o", src, b);
        let p = c.asm("p", patched, b);
        let out = diff(&o, &p, &Options::default());
        let entries = info_entries(&out.text);
        assert!(
            entries.contains(&("0".into(), "added".into())),
            "{entries:?}"
        );
        assert!(entries.iter().any(|(d, _)| d == "work"), "{entries:?}");
        assert_eq!(out.report.new_variables, ["new_calls"]);
        let part = patch_part(&out.text);
        let var_at = part.find("\nnew_calls:").expect("new variable defined");
        let before = &part[..var_at];
        assert!(before.rfind(".kpatch.data").unwrap() > before.rfind(".popsection").unwrap_or(0));
        let exe = c.link("op", &out.text, b);
        assert_patch_sections(&exe);
        let syms = readelf(&["-sW"], &exe);
        assert!(syms.contains(" added") && syms.contains(" new_calls"));
    }
}

#[test]
fn line_shift_only_patches_nothing() {
    let c = Case::new();
    let o = c.asm("o", SWITCH, PIE_O2G);
    let p = c.asm("p", &format!("\n\n/* moved down */\n{SWITCH}"), PIE_O2G);
    let out = diff(&o, &p, &Options::default());
    assert!(out.report.changed.is_empty(), "{:?}", out.report);
    assert_eq!(out.text, o);
}

#[test]
fn dbg_filter_output_assembles_without_debug_info() {
    let c = Case::new();
    let o = c.asm("o", SWITCH, PIE_O2G);
    let f = gensrc::dbg_filter("o.s", &o).unwrap();
    assert!(!f.contains(".loc ") && !f.contains(".debug_info"));
    let exe = c.link("f", &f, PIE_O2G);
    let orig = c.link("o", &o, PIE_O2G);
    assert_eq!(run(&mut Command::new(&orig)), run(&mut Command::new(&exe)));
}

#[test]
fn unparseable_text_names_file_and_line() {
    let e = gensrc::diff(
        "a.s",
        "\t.text\n",
        "b.s",
        "\t.text\n\tnop\n\t\"oops\n",
        &Options::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.starts_with("b.s:3:"), "{e}");
}

// ---- --force-gotpcrel: the rewritten code computes what the patched code does ----

const GOT_FORMS: &str = r#"
int counter = 1;
long big = 5;
double scale = 2.5;
static int hidden_state = 3;
int (*hook)(int);
unsigned char flag = 1;
int calls;
int leaf(int x)
{
	int a[8];
	calls++;
	for (int i = 0; i < 8; i++)
		a[i] = x + i + counter;
	counter += 2;
	if (counter > big)
		big++;
	hidden_state ^= x;
	flag = x > 3;
	if (x < counter)
		x += 100;
	return a[x & 7] + (int)(scale * x) + hidden_state + flag;
}
int via_hook(int x) { return hook ? hook(x) : -1; }
"#;

const GOT_DRIVER: &str = r#"
#include <stdio.h>
extern int counter, calls;
extern long big;
extern int (*hook)(int);
extern int LEAF(int) __asm__(LEAF_SYM);
extern int HOOK(int) __asm__(HOOK_SYM);
static int twice(int x) { return 2 * x; }
int main(void)
{
	int s = 0;
	for (int i = 0; i < 10; i++)
		s += LEAF(i);
	hook = twice;
	s += HOOK(21);
	printf("%d %d %ld %d\n", s, counter, big, calls);
	return 0;
}
"#;

#[test]
fn force_gotpcrel_code_behaves_like_the_patched_code() {
    // Without unwind tables there is no CFI to keep (regression: the
    // rewrite once emitted .cfi_adjust_cfa_offset outside any .cfi_startproc).
    const NO_UNWIND: Build = Build {
        cflags: &["-O2", "-fno-asynchronous-unwind-tables"],
        lflags: &[],
    };
    for b in [PIE_O2G, PIE_O0, NOPIE_O2G, NO_UNWIND] {
        let c = Case::new();
        let o = c.asm("o", GOT_FORMS, b);
        let patched_src = GOT_FORMS
            .replace("counter += 2;", "counter += 3;")
            .replace("hook(x) : -1", "hook(x) + 1 : -1");
        let p = c.asm("p", &patched_src, b);
        let opts = Options {
            force_gotpcrel: true,
            ..Options::default()
        };
        let out = diff(&o, &p, &opts);
        assert_eq!(patched_functions(&out.text), ["leaf", "via_hook"]);
        let part = patch_part(&out.text);
        assert!(part.contains("counter@GOTPCREL(%rip)"), "{part}");
        assert!(
            !part.contains("counter(%rip)"),
            "direct access left:\n{part}"
        );
        std::fs::write(c.path("aug.s"), &out.text).unwrap();
        std::fs::write(c.path("drv.c"), GOT_DRIVER).unwrap();
        let build = |exe: &str, asm: &str, leaf: &str, hook: &str| {
            run(Command::new("gcc")
                .args(b.cflags)
                .args(b.lflags)
                .arg(format!("-DLEAF_SYM=\"{leaf}\""))
                .arg(format!("-DHOOK_SYM=\"{hook}\""))
                .arg("-o")
                .arg(c.path(exe))
                .arg(c.path("drv.c"))
                .arg(c.path(asm))
                .arg("-Wl,-q"));
            run(&mut Command::new(c.path(exe)))
        };
        let expected = build("want", "p.s", "leaf", "via_hook");
        let got = build("got", "aug.s", "leaf.kpatch", "via_hook.kpatch");
        assert_eq!(expected, got, "{:?}", b.cflags);
    }
}

// ---- C++: mangled names, COMDAT groups, vtables, exception tables ----

const CXX_UNIT: &str = r#"
#include <stdexcept>
#include <string>
struct Shape { virtual ~Shape() {} virtual int area() const = 0; };
struct Sq : Shape { int s; explicit Sq(int x) : s(x) {} int area() const override { return s * s; } };
template <typename T> T twice(T x) { return x + x; }
int risky(int x)
{
	std::string msg = "neg";
	if (x < 0)
		throw std::runtime_error(msg);
	return twice(x);
}
int use_shape(int n)
{
	Sq q(n);
	Shape *s = &q;
	int r;
	try {
		r = risky(-n);
	} catch (const std::exception &e) {
		r = (int)e.what()[0];
	}
	return s->area() + r;
}
"#;

const CXX_DRIVER: &str = r#"
#include <cstdio>
#include <stdexcept>
extern int RISKY(int) __asm__(RISKY_SYM);
extern int use_shape(int);
int main()
{
	try {
		RISKY(-1);
	} catch (const std::runtime_error &e) {
		std::printf("caught %s\n", e.what());
	}
	std::printf("%d %d\n", RISKY(4), use_shape(3));
	return 0;
}
"#;

#[test]
fn cxx_exception_tables_travel_and_comdat_code_is_matched() {
    for b in [PIE_O2G, PIE_O0] {
        let c = Case::new();
        let asm = |name: &str, src: &str| {
            let cc = c.path(&format!("{name}.cc"));
            std::fs::write(&cc, src).unwrap();
            let s = c.path(&format!("{name}.s"));
            run(Command::new("g++")
                .args(b.cflags)
                .arg("-S")
                .arg(&cc)
                .arg("-o")
                .arg(&s));
            std::fs::read_to_string(s).unwrap()
        };
        let o = asm("o", CXX_UNIT);
        let p = asm("p", &CXX_UNIT.replace("\"neg\"", "\"negative\""));
        let out = diff(&o, &p, &Options::default());
        let funcs = patched_functions(&out.text);
        assert!(funcs.contains(&"_Z5riskyi".to_string()), "{funcs:?}");
        assert!(
            !funcs
                .iter()
                .any(|f| f.contains("Sq") || f.contains("twice")),
            "{funcs:?}"
        );
        std::fs::write(c.path("aug.s"), &out.text).unwrap();
        std::fs::write(c.path("drv.cc"), CXX_DRIVER).unwrap();
        let build = |exe: &str, asm: &str, sym: &str| {
            run(Command::new("g++")
                .args(b.cflags)
                .arg(format!("-DRISKY_SYM=\"{sym}\""))
                .arg("-o")
                .arg(c.path(exe))
                .arg(c.path("drv.cc"))
                .arg(c.path(asm))
                .arg("-Wl,-q"));
            run(&mut Command::new(c.path(exe)))
        };
        let want = build("want", "p.s", "_Z5riskyi");
        assert!(want.starts_with("caught negative"), "{want}");
        assert_eq!(
            want,
            build("got", "aug.s", "_Z5riskyi.kpatch"),
            "{:?}",
            b.cflags
        );
        assert_patch_sections(&c.path("got"));
    }
}

#[test]
fn cxx_new_virtual_function_refuses_the_vtable_change() {
    let c = Case::new();
    let asm = |name: &str, src: &str| {
        let cc = c.path(&format!("{name}.cc"));
        std::fs::write(&cc, src).unwrap();
        let s = c.path(&format!("{name}.s"));
        run(Command::new("g++")
            .args(["-O2", "-S"])
            .arg(&cc)
            .arg("-o")
            .arg(&s));
        std::fs::read_to_string(s).unwrap()
    };
    // Base::f is the key function: the vtable is emitted in this unit.
    let unit = "struct Base { virtual ~Base(); virtual int f() const; };\n\
                Base::~Base() {}\nint Base::f() const { return 1; }\n";
    let o = asm("o", unit);
    let p = asm(
        "p",
        &unit
            .replace(
                "virtual int f() const;",
                "virtual int f() const; virtual int g() const;",
            )
            .replace(
                "return 1; }",
                "return 1; }\nint Base::g() const { return 2; }",
            ),
    );
    let e = gensrc::diff("o.s", &o, "p.s", &p, &Options::default())
        .err()
        .expect("a vtable change must be refused")
        .to_string();
    assert!(e.contains("_ZTV"), "{e}");
}

#[test]
fn function_and_data_sections() {
    let b = Build {
        cflags: &["-O2", "-g", "-ffunction-sections", "-fdata-sections"],
        lflags: &[],
    };
    let c = Case::new();
    let o = c.asm("o", COUNTERS, b);
    let p = c.asm("p", &counters_patched(), b);
    let out = diff(&o, &p, &Options::default());
    assert_eq!(patched_functions(&out.text), ["first", "third"]);
    let orig = c.link("o", &o, b);
    let patched = c.link("op", &out.text, b);
    assert_patch_sections(&patched);
    assert_eq!(
        run(&mut Command::new(&orig)),
        run(&mut Command::new(&patched))
    );
}

// ---- issue 6: only real changes become patches ----

const LINES: &str = r#"#include <stdio.h>
__attribute__((noinline)) void report(int line) { printf("line %d\n", line); }
static inline int helper(int x)
{
	return x * 3;
}
__attribute__((noinline)) int caller_a(int x) { return helper(x) + 1; }
__attribute__((noinline)) int caller_b(int x) { return helper(x) - 1; }
__attribute__((noinline)) int checks(int x)
{
	if (x > 1000)
		report(__LINE__);
	return x;
}
__attribute__((noinline)) int checks2(int x)
{
	if (x < -1000)
		report(__LINE__);
	return x + 1;
}
int main(void) { return caller_a(1) + caller_b(2) + checks(3000) + checks2(4) - 3014; }
"#;

fn lines_patched() -> String {
    LINES.replace("\treturn x * 3;\n", "\tx += 1;\n\treturn x * 3;\n")
}

#[test]
fn line_number_only_changes_are_not_patched() {
    let c = Case::new();
    let o = c.asm("o", LINES, PIE_O2G);
    let p = c.asm("p", &lines_patched(), PIE_O2G);
    let out = diff(&o, &p, &Options::default());
    assert_eq!(patched_functions(&out.text), ["caller_a", "caller_b"]);
    let mut lo = out.report.line_only.clone();
    lo.sort();
    assert_eq!(lo, ["checks", "checks2"]);
    // Both callers changed only through the inlined helper (line 5).
    let inl: Vec<_> = out
        .report
        .inlined
        .iter()
        .map(|i| i.function.as_str())
        .collect();
    assert_eq!(inl, ["caller_a", "caller_b"]);
    assert!(
        out.report.inlined.iter().all(|i| i.lines.contains(&6)),
        "{:?}",
        out.report.inlined
    );
    let text = out.report.to_text();
    assert!(
        text.contains("not patched, only line numbers changed: checks"),
        "{text}"
    );
    let exe = c.link("op", &out.text, PIE_O2G);
    assert_patch_sections(&exe);

    // --keep-line-changes patches them anyway.
    let keep = Options {
        keep_line_changes: true,
        ..Options::default()
    };
    let out = diff(&o, &p, &keep);
    assert_eq!(
        patched_functions(&out.text),
        ["caller_a", "caller_b", "checks", "checks2"]
    );
}

#[test]
fn line_number_and_code_change_is_patched() {
    let c = Case::new();
    let o = c.asm("o", LINES, PIE_O2G);
    let p = c.asm(
        "p",
        &lines_patched().replace("return x + 1;", "return x + 2;"),
        PIE_O2G,
    );
    let out = diff(&o, &p, &Options::default());
    assert_eq!(
        patched_functions(&out.text),
        ["caller_a", "caller_b", "checks2"]
    );
    assert_eq!(out.report.line_only, ["checks"]);
    let orig = c.link("o", &o, PIE_O2G);
    let patched = c.link("op", &out.text, PIE_O2G);
    assert_eq!(
        run(&mut Command::new(&orig)),
        run(&mut Command::new(&patched))
    );
}

#[test]
fn changed_callee_with_its_own_body_is_named() {
    let c = Case::new();
    let src = LINES.replace("static inline int helper", "int helper");
    let o = c.asm("o", &src, PIE_O2G);
    let p = c.asm(
        "p",
        &src.replace("\treturn x * 3;\n", "\treturn x * 5;\n"),
        PIE_O2G,
    );
    let out = diff(&o, &p, &Options::default());
    assert_eq!(
        patched_functions(&out.text),
        ["caller_a", "caller_b", "helper"]
    );
    for i in &out.report.inlined {
        assert_eq!(i.callees, ["helper"], "{:?}", out.report.inlined);
    }
    assert_eq!(out.report.inlined.len(), 2);
}

// ---- new variables of every kind; --ignore-changes, --must-adapt, --unlink-symbols ----

const VARS_ORIG: &str = r#"#include <stdio.h>
int shown = 1;
__attribute__((noinline)) int show(int x) { return x + shown; }
__attribute__((noinline)) int quiet(int x) { return x * 2; }
int main(void) { printf("%d %d\n", show(1), quiet(2)); return 0; }
"#;

const VARS_PATCHED: &str = r#"#include <stdio.h>
int shown = 1;
static int s_bss;
static int s_init = 7;
int g_bss;
int g_init = 9;
const char *const names[] = { "a", "b" };
static const int table[4] = { 1, 2, 3, 4 };
__attribute__((noinline)) int show(int x)
{
	static int calls;
	calls++;
	s_bss += x;
	g_bss++;
	return x + shown + s_bss + s_init + g_bss + g_init + calls + names[x & 1][0] + table[x & 3];
}
__attribute__((noinline)) int quiet(int x) { return x * 2; }
int main(void) { printf("%d %d\n", show(1), quiet(2)); return 0; }
"#;

#[test]
fn new_variables_of_every_kind_live_in_the_patch() {
    for b in [
        PIE_O0,
        PIE_O2G,
        NOPIE_O2G,
        Build {
            cflags: &["-O2", "-fcommon"],
            lflags: &[],
        },
    ] {
        let c = Case::new();
        let o = c.asm("o", VARS_ORIG, b);
        let p = c.asm("p", VARS_PATCHED, b);
        let out = diff(&o, &p, &Options::default());
        // main may differ in register choice at -O2; quiet never changes.
        let funcs = patched_functions(&out.text);
        assert!(funcs.contains(&"show".to_string()), "{funcs:?}");
        assert!(!funcs.contains(&"quiet".to_string()), "{funcs:?}");
        let mut vars = out.report.new_variables.clone();
        vars.retain(|v| !v.starts_with("calls."));
        vars.sort();
        // -O2 folds the constant ones (s_init, table) away.
        for v in ["g_bss", "g_init", "names", "s_bss"] {
            assert!(
                vars.iter().any(|x| x == v),
                "{v} missing: {vars:?} {:?}",
                b.cflags
            );
        }
        for v in &vars {
            assert!(
                ["g_bss", "g_init", "names", "s_bss", "s_init", "table"].contains(&v.as_str()),
                "{v}"
            );
        }
        let want = vars;
        // Every new variable is defined after a switch to .kpatch.data,
        // or .kpatch.rodata when gcc put it in read-only data (a const
        // pointer array is .data.rel.ro, writable, in PIE code).
        let part = patch_part(&out.text);
        let nopie = b.lflags.contains(&"-no-pie");
        for v in &want {
            let at = part
                .find(&format!("\n{v}:"))
                .unwrap_or_else(|| panic!("{v} not defined:\n{part}"));
            let sec = part[..at].rfind(".pushsection").unwrap();
            let read_only = v == "table" || (v == "names" && nopie);
            let want_sec = if read_only {
                ".pushsection\t.kpatch.rodata,\"aR\""
            } else {
                ".pushsection\t.kpatch.data,\"awR\""
            };
            assert!(
                part[sec..at].starts_with(want_sec),
                "{v} {:?}: {}",
                b.cflags,
                &part[sec..at]
            );
        }
        let orig = c.link("o", &o, b);
        let patched = c.link("op", &out.text, b);
        assert_patch_sections(&patched);
        assert!(readelf(&["-SW"], &patched).contains(".kpatch.data"));
        assert_eq!(
            run(&mut Command::new(&orig)),
            run(&mut Command::new(&patched))
        );
    }
}

#[test]
fn new_thread_local_variable_is_refused_by_name() {
    let c = Case::new();
    let o = c.asm("o", VARS_ORIG, PIE_O2G);
    let p = c.asm(
        "p",
        &VARS_ORIG
            .replace("int shown = 1;", "int shown = 1;\n__thread int per_thread;")
            .replace("return x + shown;", "return x + shown + per_thread++;"),
        PIE_O2G,
    );
    let e = gensrc::diff("o.s", &o, "p.s", &p, &Options::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("per_thread") && e.contains("thread-local") && e.contains("patched line"),
        "{e}"
    );
}

#[test]
fn ignore_changes_and_must_adapt_choose_functions() {
    let c = Case::new();
    let o = c.asm("o", VARS_ORIG, PIE_O2G);
    let p = c.asm("p", &VARS_ORIG.replace("x + shown", "x - shown"), PIE_O2G);
    let opts = Options {
        ignore_changes: vec!["show".into()],
        must_adapt: vec!["quiet".into()],
        ..Options::default()
    };
    let out = diff(&o, &p, &opts);
    assert_eq!(patched_functions(&out.text), ["quiet"]);
    assert_eq!(out.report.ignored_functions, ["show"]);
    assert_eq!(out.report.adapted, ["quiet"]);
    let text = out.report.to_text();
    assert!(
        text.contains("changed functions not patched (--ignore-changes): show"),
        "{text}"
    );
    assert!(
        text.contains("patched without changes (--must-adapt): quiet"),
        "{text}"
    );
    let e = gensrc::diff(
        "o.s",
        &o,
        "p.s",
        &p,
        &Options {
            must_adapt: vec!["nosuch".into()],
            ..Options::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("--must-adapt") && e.contains("nosuch"), "{e}");
}

#[test]
fn unlink_symbols_gives_a_changed_variable_its_own_copy() {
    let c = Case::new();
    let b = PIE_O2G;
    let o = c.asm("o", VARS_ORIG, b);
    let p = c.asm(
        "p",
        &VARS_ORIG.replace("int shown = 1;", "int shown = 40;"),
        b,
    );
    assert!(gensrc::diff("o.s", &o, "p.s", &p, &Options::default()).is_err());
    let opts = Options {
        unlink_symbols: vec!["shown".into()],
        ..Options::default()
    };
    let out = diff(&o, &p, &opts);
    // Every user of the variable moves to the copy.
    assert!(patched_functions(&out.text).contains(&"show".to_string()));
    let part = patch_part(&out.text);
    assert!(part.contains("\nshown.kpatch:"), "{part}");
    assert!(part.contains("shown.kpatch(%rip)"), "{part}");
    // The copy holds the patched initial value: call the new show().
    std::fs::write(c.path("aug.s"), out.text.replace("main", "orig_main")).unwrap();
    std::fs::write(
        c.path("drv.c"),
        "#include <stdio.h>\nextern int show_k(int) __asm__(\"show.kpatch\");\nint main(void) { printf(\"%d\\n\", show_k(2)); return 0; }\n",
    )
    .unwrap();
    run(Command::new("gcc")
        .arg("-o")
        .arg(c.path("drv"))
        .arg(c.path("drv.c"))
        .arg(c.path("aug.s")));
    assert_eq!(run(&mut Command::new(c.path("drv"))), "42\n");
}

// ---- distro build flags ----

#[test]
fn distro_flags_build_links_and_runs() {
    const FLAGS: &[&str] = &[
        "-O2",
        "-g",
        "-fstack-protector-strong",
        "-D_FORTIFY_SOURCE=2",
        "-fcf-protection",
        "-ffunction-sections",
        "-fdata-sections",
        "-fno-plt",
    ];
    for (extra, lflags) in [
        (&["-fPIE"][..], &[][..]),
        (&["-fPIC"][..], &["-shared"][..]),
    ] {
        let mut cflags: Vec<&'static str> = FLAGS.to_vec();
        cflags.extend_from_slice(extra);
        let b = Build {
            cflags: Box::leak(cflags.into_boxed_slice()),
            lflags,
        };
        let c = Case::new();
        let (o_src, p_src) = if lflags.is_empty() {
            (
                SWITCH.to_string(),
                SWITCH.replace("case 3: return 22;", "case 3: return 23;"),
            )
        } else {
            let lib = COUNTERS.replace("int main(void)", "int not_main(void)");
            (
                lib.clone(),
                lib.replace("\"third %d\\n\"", "\"third: %d\\n\""),
            )
        };
        let o = c.asm("o", &o_src, b);
        let p = c.asm("p", &p_src, b);
        for gotpcrel in [false, true] {
            let opts = Options {
                force_gotpcrel: gotpcrel,
                ..Options::default()
            };
            let out = diff(&o, &p, &opts);
            let mut funcs = patched_functions(&out.text);
            funcs.retain(|f| !f.ends_with(".cold"));
            let want = if lflags.is_empty() { "sw" } else { "third" };
            assert_eq!(funcs, [want], "{:?}", b.cflags);
            let linked = c.link(
                if lflags.is_empty() { "op" } else { "libop.so" },
                &out.text,
                b,
            );
            assert_patch_sections(&linked);
            if lflags.is_empty() {
                let orig = c.link("o", &o, b);
                assert_eq!(
                    run(&mut Command::new(&orig)),
                    run(&mut Command::new(&linked))
                );
            }
        }
    }
}

#[test]
fn cxx_new_class_brings_its_constructor_aliases() {
    let c = Case::new();
    let asm = |name: &str, src: &str| {
        let cc = c.path(&format!("{name}.cc"));
        std::fs::write(&cc, src).unwrap();
        let s = c.path(&format!("{name}.s"));
        run(Command::new("g++")
            .args(["-O2", "-g", "-S"])
            .arg(&cc)
            .arg("-o")
            .arg(&s));
        std::fs::read_to_string(s).unwrap()
    };
    let o = asm(
        "o",
        "#include <cstdio>\nint work(int x) { return x + 1; }\n",
    );
    let p = asm(
        "p",
        "#include <cstdio>\nstruct Guard { int v; explicit Guard(int x) : v(x) {} ~Guard(); };\n\
         __attribute__((noinline)) Guard::~Guard() { std::printf(\"bye %d\\n\", v); }\n\
         int work(int x) { Guard g(x); return x + 1; }\n",
    );
    let out = diff(&o, &p, &Options::default());
    assert_eq!(out.report.new_functions, ["_ZN5GuardD2Ev"]);
    // The D1 destructor is a .set alias of D2: it must come along.
    assert!(out.text.contains(".set\t_ZN5GuardD1Ev, _ZN5GuardD2Ev"));
    std::fs::write(c.path("aug.s"), &out.text).unwrap();
    std::fs::write(
        c.path("drv.cc"),
        "extern int work_k(int) __asm__(\"_Z4worki.kpatch\");\nint main() { return work_k(41) == 42 ? 0 : 1; }\n",
    )
    .unwrap();
    run(Command::new("g++")
        .arg("-o")
        .arg(c.path("drv"))
        .arg(c.path("drv.cc"))
        .arg(c.path("aug.s")));
    assert_eq!(run(&mut Command::new(c.path("drv"))), "bye 41\n");
}

#[test]
fn existing_thread_local_is_referenced_in_every_tls_model() {
    let src = "#include <stdio.h>\n__thread int tv = 3;\n\
               __attribute__((noinline)) int bump(int x) { tv += x; return tv; }\n\
               int main(void) { printf(\"%d\\n\", bump(1)); return 0; }\n";
    let patched = src.replace("tv += x;", "tv += 2 * x;");
    for b in [PIE_O2G, NOPIE_O2G, PIE_O0] {
        let c = Case::new();
        let o = c.asm("o", src, b);
        let p = c.asm("p", &patched, b);
        for gotpcrel in [false, true] {
            let opts = Options {
                force_gotpcrel: gotpcrel,
                ..Options::default()
            };
            let out = diff(&o, &p, &opts);
            assert_eq!(patched_functions(&out.text), ["bump"]);
            let part = patch_part(&out.text);
            assert!(part.contains("%fs:tv@tpoff"), "{part}");
            assert!(!part.contains("\ntv:"), "TLS variable duplicated:\n{part}");
            let orig = c.link("o", &o, b);
            let linked = c.link("op", &out.text, b);
            assert_eq!(
                run(&mut Command::new(&orig)),
                run(&mut Command::new(&linked))
            );
        }
    }
    // -fPIC: the general-dynamic sequence (data16 leaq x@tlsgd) is copied
    // byte for byte and links into a shared library.
    let c = Case::new();
    let lib = src.replace("int main(void)", "int not_main(void)");
    let o = c.asm("o", &lib, SHARED_O2G);
    let p = c.asm("p", &lib.replace("tv += x;", "tv += 2 * x;"), SHARED_O2G);
    let out = diff(
        &o,
        &p,
        &Options {
            force_gotpcrel: true,
            ..Options::default()
        },
    );
    assert!(patch_part(&out.text).contains("data16\tleaq\ttv@tlsgd(%rip), %rdi"));
    assert_patch_sections(&c.link("libop.so", &out.text, SHARED_O2G));
}

// ---- read-only data the patch copies stays read-only ----

const CXX_GUARDED: &str = r#"
#include <cstdio>
#include <stdexcept>
__attribute__((noinline)) int check(int x)
{
	if (x < 0)
		throw std::runtime_error("negative");
	return x * 2;
}
__attribute__((noinline)) int guarded(int x)
{
	try {
		return check(x);
	} catch (const std::exception &e) {
		std::printf("caught %s\n", e.what());
		return -1;
	}
}
"#;

const CXX_GUARDED_DRIVER: &str = r#"
#include <cstdio>
extern int guarded_k(int) __asm__("_Z7guardedi.kpatch");
int main()
{
	std::printf("%d\n", guarded_k(-3));
	std::printf("%d\n", guarded_k(5));
	return 0;
}
"#;

/// Section flags (readelf `-S` "Flg" column) of `name` in `file`.
fn section_flags(file: &Path, name: &str) -> Option<String> {
    let s = readelf(&["-SW"], file);
    let line = s.lines().find(|l| {
        l.split_whitespace()
            .any(|w| w == name || w.trim_start_matches(']') == name)
    })?;
    // "[Nr] Name Type Address Off Size ES Flg Lk Inf Al": Flg is the 8th
    // field after the bracketed number, absent when empty.
    let fields: Vec<&str> = line.split(']').nth(1)?.split_whitespace().collect();
    (fields.len() == 10).then(|| fields[6].to_string())
}

#[test]
fn cxx_try_catch_patch_links_and_catches_without_pie() {
    const NOPIE_CXX_O2G: Build = Build {
        cflags: &["-O2", "-g", "-fno-pie"],
        lflags: &["-no-pie"],
    };
    for b in [NOPIE_CXX_O2G, NOPIE_O0, PIE_O2G, SHARED_O2G] {
        let c = Case::new();
        let asm = |name: &str, src: &str| {
            let cc = c.path(&format!("{name}.cc"));
            std::fs::write(&cc, src).unwrap();
            let s = c.path(&format!("{name}.s"));
            run(Command::new("g++")
                .args(b.cflags)
                .arg("-S")
                .arg(&cc)
                .arg("-o")
                .arg(&s));
            std::fs::read_to_string(s).unwrap()
        };
        let o = asm("o", CXX_GUARDED);
        let p = asm("p", &CXX_GUARDED.replace("caught %s", "rescued %s"));
        let out = diff(&o, &p, &Options::default());
        let mut funcs = patched_functions(&out.text);
        funcs.retain(|f| f != "_Z7guardedi.cold");
        assert_eq!(funcs, ["_Z7guardedi"]);
        let part = patch_part(&out.text);
        assert!(
            part.contains(".kpatch.rodata"),
            "LSDA and string not in read-only patch data:\n{part}"
        );
        std::fs::write(c.path("aug.s"), &out.text).unwrap();
        if b.lflags == ["-shared"] {
            let so = c.path("libaug.so");
            run(Command::new("g++")
                .args(b.lflags)
                .arg("-o")
                .arg(&so)
                .arg(c.path("aug.s"))
                .arg("-Wl,-q"));
            assert_patch_sections(&so);
            let d = readelf(&["-dW"], &so);
            assert!(!d.contains("TEXTREL"), "text relocations:\n{d}");
            let flags = section_flags(&so, ".kpatch.rodata").unwrap();
            assert!(flags.contains('A') && !flags.contains('W'), "{flags}");
            continue;
        }
        std::fs::write(c.path("drv.cc"), CXX_GUARDED_DRIVER).unwrap();
        let exe = c.path("got");
        run(Command::new("g++")
            .args(b.cflags)
            .args(b.lflags)
            .arg("-o")
            .arg(&exe)
            .arg(c.path("drv.cc"))
            .arg(c.path("aug.s"))
            .arg("-Wl,-q"));
        assert_patch_sections(&exe);
        // "A", plus "o" (readelf's name for SHF_GNU_RETAIN in a linked
        // file): never "W".
        let flags = section_flags(&exe, ".kpatch.rodata").unwrap();
        assert!(flags.contains('A') && !flags.contains('W'), "{flags}");
        assert_eq!(
            run(&mut Command::new(&exe)),
            "rescued negative\n-1\n10\n",
            "{:?}",
            b.cflags
        );
    }
}

// ---- a `.cold` part only one side has ----

/// `work` with an `abort()` path, which gcc -O2 splits into `work.cold`.
const WORK_COLD: &str = "#include <stdlib.h>\nint g;\n\
    __attribute__((noinline)) int work(int x)\n{\n\tif (x > g + 1000)\n\t\tabort();\n\treturn x * MUL;\n}\n";
/// The same `work` without the cold path.
const WORK_PLAIN: &str = "#include <stdlib.h>\nint g;\n\
    __attribute__((noinline)) int work(int x)\n{\n\treturn x * MUL;\n}\n";
/// Calls `WORK_SYM` with an ordinary argument, then with one that takes
/// the cold path when there is one.
const WORK_DRIVER: &str = "#include <stdio.h>\nextern int work_k(int) __asm__(WORK_SYM);\n\
    int main(void) { printf(\"%d\\n\", work_k(2)); fflush(stdout); printf(\"%d\\n\", work_k(5000)); return 0; }\n";

/// Builds `drv.c` with `asm` (a file in the case dir), calling `sym`;
/// returns (stdout, the signal that ended it).
fn run_work(c: &Case, b: Build, exe: &str, asm: &str, sym: &str) -> (String, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    std::fs::write(c.path("drv.c"), WORK_DRIVER).unwrap();
    run(Command::new("gcc")
        .args(b.cflags)
        .args(b.lflags)
        .arg(format!("-DWORK_SYM=\"{sym}\""))
        .arg("-o")
        .arg(c.path(exe))
        .arg(c.path("drv.c"))
        .arg(c.path(asm))
        .arg("-Wl,-q"));
    let out = Command::new(c.path(exe)).output().unwrap();
    (String::from_utf8(out.stdout).unwrap(), out.status.signal())
}

/// The section (readelf `-S` name) that symbol `sym` of `file` is defined in.
fn symbol_section(file: &Path, sym: &str) -> Vec<String> {
    let secs = readelf(&["-SW"], file);
    let name_of = |ndx: &str| -> String {
        let tag = format!("[{ndx:>2}]");
        secs.lines()
            .find_map(|l| {
                let l = l.trim_start();
                l.strip_prefix(&tag)
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("no section {ndx}:\n{secs}"))
    };
    readelf(&["-sW"], file)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 8 && f[7] == sym).then(|| name_of(f[6]))
        })
        .collect()
}

#[test]
fn cold_part_only_in_the_original_stays_with_the_original() {
    for b in [PIE_O2G, NOPIE_O2G] {
        let c = Case::new();
        let o = c.asm("o", &WORK_COLD.replace("MUL", "3"), b);
        let p = c.asm("p", &WORK_PLAIN.replace("MUL", "4"), b);
        assert!(o.contains("work.cold:") && !p.contains(".cold"));
        let out = diff(&o, &p, &Options::default());
        // One entry: the parent is replaced as a whole; the old cold part
        // is reached only from the old parent and stays as it is.
        assert_eq!(
            info_entries(&out.text),
            [("work".to_string(), "work.kpatch".to_string())]
        );
        assert_eq!(out.report.changed, ["work"]);
        assert!(out.report.new_functions.is_empty(), "{:?}", out.report);
        assert_eq!(original_part(&out.text), o);
        assert!(!patch_part(&out.text).contains("cold"));
        std::fs::write(c.path("aug.s"), &out.text).unwrap();
        let want = run_work(&c, b, "want", "p.s", "work");
        assert_eq!(want, ("8\n20000\n".to_string(), None));
        assert_eq!(want, run_work(&c, b, "got", "aug.s", "work.kpatch"));
        // The original still has its cold part, where it was (ld puts
        // .text.unlikely into .text), and the patch has none.
        let (_, sig) = run_work(&c, b, "old", "aug.s", "work");
        assert_eq!(sig, Some(libc_sigabrt()));
        assert_eq!(symbol_section(&c.path("old"), "work.cold"), [".text"]);
        assert_eq!(
            symbol_section(&c.path("old"), "work.kpatch"),
            [".kpatch.text"]
        );
    }
}

#[test]
fn cold_part_new_in_the_patched_version_travels_with_its_parent() {
    for b in [PIE_O2G, NOPIE_O2G] {
        let c = Case::new();
        let o = c.asm("o", &WORK_PLAIN.replace("MUL", "3"), b);
        let p = c.asm("p", &WORK_COLD.replace("MUL", "4"), b);
        assert!(!o.contains(".cold") && p.contains("work.cold:"));
        let out = diff(&o, &p, &Options::default());
        assert_eq!(patched_functions(&out.text), ["work"]);
        assert_eq!(out.report.changed, ["work"]);
        assert_eq!(original_part(&out.text), o);
        let part = patch_part(&out.text);
        let at = part.find("\nwork.cold:").expect("cold part in the patch");
        let sec = part[..at].rfind(".section").unwrap();
        assert!(
            part[sec..at].starts_with(".section\t.kpatch.text,\"axR\",@progbits\n\t.subsection 1"),
            "{part}"
        );
        std::fs::write(c.path("aug.s"), &out.text).unwrap();
        let want = run_work(&c, b, "want", "p.s", "work");
        assert_eq!(want, ("8\n".to_string(), Some(libc_sigabrt())));
        assert_eq!(want, run_work(&c, b, "got", "aug.s", "work.kpatch"));
        assert_eq!(
            symbol_section(&c.path("got"), "work.cold"),
            [".kpatch.text"]
        );
        // The original never had one and is unchanged.
        assert_eq!(
            run_work(&c, b, "old", "aug.s", "work"),
            ("6\n15000\n".to_string(), None)
        );
    }
}

fn libc_sigabrt() -> i32 {
    6
}

#[test]
fn trap_only_cold_part_gets_no_entry_the_doctor_would_refuse() {
    // `__builtin_trap()` makes a `.cold` part that is one `ud2`: 2 bytes,
    // too short for the doctor's 5-byte jump, and a place where no thread
    // can wait. An `abort()` call keeps its entry (a thread may be inside
    // the call: the doctor's stack check must see the range).
    let trap = WORK_COLD.replace("abort()", "__builtin_trap()");
    for b in [PIE_O2G, NOPIE_O2G] {
        let c = Case::new();
        let o = c.asm("o", &trap.replace("MUL", "3"), b);
        let p = c.asm("p", &trap.replace("MUL", "4"), b);
        assert!(o.contains("work.cold:") && p.contains("work.cold:"));
        let out = diff(&o, &p, &Options::default());
        assert_eq!(
            info_entries(&out.text),
            [("work".to_string(), "work.kpatch".to_string())]
        );
        // The cold part still travels with its parent.
        assert!(patch_part(&out.text).contains("\nwork.cold.kpatch:"));
        std::fs::write(c.path("aug.s"), &out.text).unwrap();
        let want = run_work(&c, b, "want", "p.s", "work");
        assert_eq!(want.0, "8\n");
        assert_eq!(want, run_work(&c, b, "got", "aug.s", "work.kpatch"));

        let o = c.asm("o", &WORK_COLD.replace("MUL", "3"), b);
        let p = c.asm("p", &WORK_COLD.replace("MUL", "4"), b);
        let out = diff(&o, &p, &Options::default());
        assert_eq!(patched_functions(&out.text), ["work", "work.cold"]);
    }
}

// ---- links that collect unreferenced sections ----

/// `-Wl,--gc-sections` (common in real projects) must keep every section
/// the patch adds: nothing in the program references them, the doctor
/// finds them by name. The new function lives in `.kpatch.text` and a new
/// variable in `.kpatch.data`, kept with them.
fn gc_sections_case(b: Build) {
    const SRC: &str = r#"#include <stdio.h>
__attribute__((noipa)) const char *greeting(void)
{
	return "greetings v1";
}
int main(void)
{
	puts(greeting());
	return 0;
}
"#;
    let c = Case::new();
    let orig = c.asm("orig", SRC, b);
    let patched = c.asm(
        "patched",
        &SRC.replace(
            "\treturn \"greetings v1\";",
            "\tstatic int calls;\n\tcalls++;\n\treturn calls > 0 ? \"greetings v2\" : \"x\";",
        ),
        b,
    );
    let out = diff(&orig, &patched, &Options::default());
    assert_eq!(patched_functions(&out.text), ["greeting"]);
    let s = c.path("gc.s");
    std::fs::write(&s, &out.text).unwrap();
    let exe = c.path("gc");
    run(Command::new("gcc")
        .args(b.lflags)
        .arg("-o")
        .arg(&exe)
        .arg(&s)
        .args(["-Wl,-q", "-Wl,--gc-sections"]));
    assert_patch_sections(&exe);
    let secs = readelf(&["-SW"], &exe);
    let r = readelf(&["-rW"], &exe);
    assert!(secs.contains(".kpatch.data"), "{:?}:\n{secs}", b.lflags);
    for sec in [".kpatch.text", ".kpatch.info"] {
        assert!(
            r.contains(&format!("'.rela{sec}'")),
            "no .rela{sec} {:?}:\n{r}",
            b.lflags
        );
    }
}

#[test]
fn gc_sections_link_keeps_the_patch_sections() {
    gc_sections_case(PIE_O2G);
    gc_sections_case(NOPIE_O2G);
    gc_sections_case(SHARED_O2G);
}

// ---- changed read-only tables ----

const TABLES: &str = r#"#include <stdio.h>
static const int max_len[4] = { 16, 32, 64, 4096 };
__attribute__((noipa)) int limit_for(int kind)
{
	return max_len[kind & 3];
}
__attribute__((noipa)) int step(int k)
{
	static const short steps[3] = { 1, 10, 100 };
	return steps[k % 3];
}
__attribute__((noipa)) int twice(int x)
{
	return 2 * x;
}
int main(void)
{
	printf("%d %d %d\n", limit_for(3), step(2), twice(4));
	return 0;
}
"#;

fn tables_patched() -> String {
    TABLES
        .replace("64, 4096 }", "64, 128 }")
        .replace("10, 100 }", "10, 7 }")
}

const TABLES_DRIVER: &str = r#"#include <stdio.h>
extern int limit_for(int);
extern int limit_k(int) __asm__("limit_for.kpatch");
extern int step_k(int) __asm__("step.kpatch");
int main(void)
{
	printf("%d %d %d\n", limit_for(3), limit_k(3), step_k(2));
	return 0;
}
"#;

/// A changed `static const` table (file scope, and a static local of a
/// function) gets a new copy in `.kpatch.rodata`; exactly the functions
/// that read it are patched, and their copies read the new values.
fn const_table_case(b: Build) {
    let c = Case::new();
    let o = c.asm("o", TABLES, b);
    let p = c.asm("p", &tables_patched(), b);
    let out = diff(&o, &p, &Options::default());
    assert_eq!(
        patched_functions(&out.text),
        ["limit_for", "step"],
        "{:?}",
        b.cflags
    );
    let copies: Vec<(&str, Vec<&str>)> = out
        .report
        .read_only_copies
        .iter()
        .map(|r| {
            (
                r.variable.as_str(),
                r.readers.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert!(
        copies.contains(&("max_len", vec!["limit_for"])),
        "{copies:?}"
    );
    assert!(
        copies
            .iter()
            .any(|(v, r)| v.starts_with("steps.") && r == &["step"]),
        "{copies:?}"
    );
    let text = out.report.to_text();
    assert!(
        text.contains(
            "read-only variable max_len changed: new copy in the patch; \
             functions patched because they read it: limit_for"
        ),
        "{text}"
    );
    assert!(out.report.new_variables.is_empty(), "{text}");
    let json = serde_json::to_string(&out.report).unwrap();
    assert!(json.contains("\"read_only_copies\""), "{json}");
    let part = patch_part(&out.text);
    let at = part.find("\nmax_len.kpatch:").expect(part);
    let sec = part[..at].rfind(".pushsection").unwrap();
    assert!(
        part[sec..at].starts_with(".pushsection\t.kpatch.rodata,"),
        "{}",
        &part[sec..at]
    );
    assert!(part.contains("max_len.kpatch"), "{part}");
    assert_eq!(original_part(&out.text), o, "original text not kept");

    let aug = c.path("aug.s");
    std::fs::write(&aug, out.text.replace("main", "orig_main")).unwrap();
    let drv = c.path("drv.c");
    std::fs::write(&drv, TABLES_DRIVER).unwrap();
    let exe = c.path("drv");
    if b.lflags == ["-shared"] {
        let so = c.path("libaug.so");
        run(Command::new("gcc")
            .args(b.lflags)
            .arg("-o")
            .arg(&so)
            .arg(&aug)
            .arg("-Wl,-q"));
        assert_patch_sections(&so);
        run(Command::new("gcc")
            .arg("-o")
            .arg(&exe)
            .arg(&drv)
            .arg(&so)
            .arg(format!("-Wl,-rpath,{}", c.dir.path().display())));
    } else {
        run(Command::new("gcc")
            .args(b.cflags)
            .args(b.lflags)
            .arg("-o")
            .arg(&exe)
            .arg(&drv)
            .arg(&aug)
            .arg("-Wl,-q"));
        assert_patch_sections(&exe);
    }
    assert_eq!(
        run(&mut Command::new(&exe)),
        "4096 128 7\n",
        "{:?}",
        b.cflags
    );
}

#[test]
fn changed_const_table_gets_a_copy_and_its_readers_are_patched() {
    const DATA_SECTIONS: Build = Build {
        cflags: &["-O2", "-g", "-fdata-sections", "-ffunction-sections"],
        lflags: &[],
    };
    const_table_case(PIE_O2G);
    const_table_case(NOPIE_O2G);
    const_table_case(SHARED_O2G);
    const_table_case(DATA_SECTIONS);
}

/// Writable or global variables keep being refused: other code (or the
/// running program) may hold state in them or name them.
#[test]
fn changed_writable_or_global_table_is_still_refused() {
    let c = Case::new();
    // gcc makes a static it never sees written read-only itself: write it.
    let writable = |s: &str| {
        s.replace("static const int max_len[4]", "static int max_len[4]")
            .replace(
                "__attribute__((noipa)) int twice",
                "__attribute__((noipa)) void grow(void) { max_len[0]++; }\n\
                 __attribute__((noipa)) int twice",
            )
    };
    let global = |s: &str| s.replace("static const int max_len[4]", "const int max_len[4]");
    let variants = [
        ("writable", writable(TABLES), writable(&tables_patched())),
        ("global", global(TABLES), global(&tables_patched())),
    ];
    for (what, os, ps) in variants {
        let o = c.asm("o", &os, PIE_O2G);
        let p = c.asm("p", &ps, PIE_O2G);
        let e = gensrc::diff("o.s", &o, "p.s", &p, &Options::default())
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(
            e.to_string().contains("variable `max_len` changed"),
            "{what}: {e}"
        );
    }
}

const NAMES: &str = r#"#include <stdio.h>
static const char *const names[3] = { "zero", "one", "two" };
static const int sizes[2] = { 8, 16 };
static const int *const size_tables[2] = { sizes, sizes };
__attribute__((noipa)) const char *name_of(int k)
{
	return names[k % 3];
}
__attribute__((noipa)) int size_of(int k)
{
	return size_tables[(k >> 1) & 1][k & 1];
}
int main(void)
{
	printf("%s %d\n", name_of(2), size_of(1));
	return 0;
}
"#;

const NAMES_DRIVER: &str = r#"#include <stdio.h>
extern const char *name_k(int) __asm__("name_of.kpatch");
extern int size_k(int) __asm__("size_of.kpatch");
int main(void)
{
	printf("%s %d\n", name_k(2), size_k(1));
	return 0;
}
"#;

/// A table of pointers (`.data.rel.ro` in PIC code: writable only while
/// the loader relocates it) is copied like a read-only table, and so is a
/// read-only table that points to a copied one.
fn pointer_table_case(b: Build) {
    let c = Case::new();
    let o = c.asm("o", NAMES, b);
    let p = c.asm(
        "p",
        &NAMES
            .replace("\"two\" }", "\"TWO\" }")
            .replace("8, 16 }", "8, 32 }"),
        b,
    );
    let out = diff(&o, &p, &Options::default());
    assert_eq!(
        patched_functions(&out.text),
        ["name_of", "size_of"],
        "{:?}",
        b.cflags
    );
    let mut vars: Vec<&str> = out
        .report
        .read_only_copies
        .iter()
        .map(|r| r.variable.as_str())
        .collect();
    vars.sort();
    assert_eq!(vars, ["names", "size_tables", "sizes"], "{:?}", b.cflags);
    let aug = c.path("aug.s");
    std::fs::write(&aug, out.text.replace("main", "orig_main")).unwrap();
    let drv = c.path("drv.c");
    std::fs::write(&drv, NAMES_DRIVER).unwrap();
    let exe = c.path("drv");
    run(Command::new("gcc")
        .args(b.cflags)
        .args(b.lflags)
        .arg("-o")
        .arg(&exe)
        .arg(&drv)
        .arg(&aug)
        .arg("-Wl,-q"));
    assert_patch_sections(&exe);
    assert_eq!(run(&mut Command::new(&exe)), "TWO 32\n", "{:?}", b.cflags);
}

#[test]
fn changed_pointer_tables_get_copies_too() {
    pointer_table_case(PIE_O2G);
    pointer_table_case(NOPIE_O2G);
}
