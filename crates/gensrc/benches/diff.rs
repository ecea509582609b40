//! Bench: diff a large real translation unit against a one-line change of
//! it and print wall time, peak memory and what would be patched.
//!
//! `GENSRC_BENCH_ORIG=a.s GENSRC_BENCH_PATCHED=b.s cargo bench -p gensrc`
//! diffs the given files (e.g. the sqlite3 amalgamation at `-O2 -g`, see
//! the crate README note in `lib.rs`); without them a generated C file of a
//! few thousand functions is compiled with `gcc -O2 -g -S` twice.
//! Figures are printed, never asserted.

use std::process::Command;
use std::time::Instant;

/// Counts what the differ writes, like a file would take it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A C file with `n` functions using switch tables, strings, statics and
/// `__LINE__`; `edit` adds one line to a helper near the top that only
/// `f0` inlines, so `f0` changes and every other function differs only in
/// its `__LINE__`.
fn generated_unit(n: usize, edit: bool) -> String {
    let mut s = String::from("#include <stdio.h>\nvoid report(int line, const char *f);\n");
    s.push_str("static inline int helper(int x)\n{\n");
    if edit {
        s.push_str("\tx ^= 1;\n");
    }
    s.push_str("\treturn x * 3;\n}\n");
    for i in 0..n {
        s.push_str(&format!(
            "int f{i}(int x)\n{{\n\tstatic int calls;\n\tcalls++;\n\tif (x < 0) report(__LINE__, __func__);\n\
             \tswitch (x & 7) {{\n\tcase 0: return {i} + calls;\n\tcase 1: puts(\"one {i}\"); return 1;\n\
             \tcase 2: return x * {i};\n\tcase 3: return x - {i};\n\tcase 4: return x / ({i} + 1);\n\
             \tcase 5: return {h};\n\tcase 6: return calls * 2;\n\t}}\n\treturn {i};\n}}\n",
            h = if i == 0 { "helper(x)" } else { "x + 5" }
        ));
    }
    s
}

fn compile(dir: &std::path::Path, name: &str, src: &str) -> std::path::PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).expect("write C");
    let s = dir.join(format!("{name}.s"));
    let st = Command::new("gcc")
        .args(["-O2", "-g", "-S", "-o"])
        .arg(&s)
        .arg(&c)
        .status()
        .expect("run gcc");
    assert!(st.success(), "gcc failed");
    s
}

/// Diffs two files, printing wall time and peak memory.
fn measure(orig_path: &std::path::Path, patched_path: &std::path::Path, run_as: bool) {
    // Reset the peak-RSS watermark so each measurement stands alone.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let orig = std::fs::read_to_string(orig_path).expect("read original");
    let patched = std::fs::read_to_string(patched_path).expect("read patched");
    let mb = |n: usize| n as f64 / (1024.0 * 1024.0);
    let t = Instant::now();
    let mut sink = Counter(0);
    let report = gensrc::diff_to(
        &orig_path.to_string_lossy(),
        &orig,
        &patched_path.to_string_lossy(),
        &patched,
        &gensrc::Options::default(),
        &mut sink,
    )
    .expect("diff");
    let wall = t.elapsed().as_secs_f64();
    let peak = peak_rss_kib() as f64 / 1024.0;
    println!(
        "inputs: {:.1} MiB + {:.1} MiB ({} + {} lines)",
        mb(orig.len()),
        mb(patched.len()),
        orig.lines().count(),
        patched.lines().count()
    );
    println!(
        "diff wall time: {wall:.3} s ({:.1} ms per MiB of one input)",
        wall * 1000.0 / mb(orig.len())
    );
    println!(
        "peak RSS: {peak:.1} MiB, {:.2}x one input (the two inputs alone are 2x)",
        peak / mb(orig.len())
    );
    println!("output: {:.1} MiB (streamed)", mb(sink.0));
    // Long lists (a header change touches everything) are cut short.
    for line in report.to_text().lines() {
        match line.match_indices(", ").nth(9) {
            Some((cut, _)) => println!(
                "{} ... ({} in all)",
                &line[..cut],
                line.matches(", ").count() + 1
            ),
            None => println!("{line}"),
        }
    }
    if run_as {
        let obj = std::env::temp_dir().join(format!("gensrc-bench-{}.o", std::process::id()));
        let t = Instant::now();
        let st = Command::new("as")
            .arg("-o")
            .arg(&obj)
            .arg(orig_path)
            .status()
            .expect("run as");
        let _ = std::fs::remove_file(&obj);
        if st.success() {
            println!(
                "as on the original, for comparison: {:.3} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: run
    // one small unit quickly then.
    let full = std::env::args().any(|a| a == "--bench");
    if let (Some(a), Some(b)) = (
        std::env::var_os("GENSRC_BENCH_ORIG"),
        std::env::var_os("GENSRC_BENCH_PATCHED"),
    ) {
        measure(a.as_ref(), b.as_ref(), full);
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let sizes: &[usize] = if full { &[750, 1500, 3000] } else { &[50] };
    for &n in sizes {
        println!("--- generated unit, {n} functions, gcc -O2 -g ---");
        let dir = tmp.path().join(n.to_string());
        std::fs::create_dir_all(&dir).expect("mkdir");
        let a = compile(&dir, "orig", &generated_unit(n, false));
        let b = compile(&dir, "patched", &generated_unit(n, true));
        measure(&a, &b, full);
    }
}
