//! Looking at a patient and at a tool's answer: the code and mappings to
//! compare before and after a command, and the shape of a refusal.

/// The patient's code and mappings, to compare before and after a command.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes of every executable file-backed mapping.
    pub text: Vec<(String, u64, Vec<u8>)>,
    /// Every mapping's range and permissions.
    pub maps: Vec<String>,
}

pub fn snapshot(pid: u32) -> Snapshot {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut text = Vec::new();
    let mut ranges = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        ranges.push(format!("{} {}", f[0], f[1]));
        if f.len() < 6 || !f[1].contains('x') || !f[5].starts_with('/') {
            continue;
        }
        let (s, e) = f[0].split_once('-').unwrap();
        let s = u64::from_str_radix(s, 16).unwrap();
        let e = u64::from_str_radix(e, 16).unwrap();
        let mut buf = vec![0u8; (e - s) as usize];
        std::os::unix::fs::FileExt::read_exact_at(&mem, &mut buf, s).unwrap();
        text.push((f[5].to_string(), s, buf));
    }
    // Thread stacks and the heap may grow; compare the code-bearing and
    // anonymous executable mappings only.
    ranges.retain(|r| r.contains('x'));
    Snapshot { text, maps: ranges }
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a refusal: non-zero exit, one line on stderr containing `why`.
pub fn refused(out: &std::process::Output, why: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success:\n{err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line on stderr:\n{err}"
    );
    assert!(err.contains(why), "stderr should mention {why:?}:\n{err}");
}
