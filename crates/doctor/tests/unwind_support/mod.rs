//! Live-test support for the unwinder: build a C program, run it, hold its
//! threads with ptrace, build unwind tables from its maps, name its frames.
//! Every process started here is killed by PID when its guard drops.

#![allow(dead_code)] // each test target uses a different part

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use doctor::unwind::{Frame, ProcessMemory, Registers, Tables, load_bias};
use nix::sys::ptrace;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use object::{Object, ObjectSymbol, SymbolKind};

/// Compiles `source` with gcc and `flags`; the binary lives as long as the
/// returned directory.
pub fn compile(name: &str, source: &str, flags: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join(format!("{name}.c"));
    let bin = dir.path().join(name);
    std::fs::write(&src, source).expect("write C source");
    let out = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .arg("-pthread")
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {flags:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, bin)
}

/// A child process, killed and reaped (with every thread we traced) on drop.
pub struct Patient {
    child: Child,
    stdout: BufReader<ChildStdout>,
    traced: Vec<Pid>,
}

impl Patient {
    pub fn spawn(bin: &Path) -> Patient {
        let mut child = Command::new(bin)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn test program");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Patient {
            child,
            stdout,
            traced: Vec::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the program to print `line`.
    pub fn expect_line(&mut self, line: &str) {
        let mut got = String::new();
        self.stdout.read_line(&mut got).expect("read child stdout");
        assert_eq!(
            got.trim_end(),
            line,
            "unexpected output from the test program"
        );
    }

    /// The next line the program prints.
    pub fn read_line(&mut self) -> String {
        let mut got = String::new();
        self.stdout.read_line(&mut got).expect("read child stdout");
        got.trim_end().to_owned()
    }

    pub fn threads(&self) -> Vec<i32> {
        let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .expect("read task dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort();
        tids
    }

    /// Waits until thread `tid` is blocked in one of the system calls `nrs`.
    pub fn wait_in_syscall(&self, tid: i32, nrs: &[u64]) {
        let path = format!("/proc/{}/task/{tid}/syscall", self.pid());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let nr = text.split_whitespace().next().and_then(|n| n.parse().ok());
            if nr.is_some_and(|nr| nrs.contains(&nr)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "thread {tid} never blocked in {nrs:?}: {text}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Seizes and interrupts thread `tid`; returns its registers.
    pub fn hold(&mut self, tid: i32) -> Registers {
        let pid = Pid::from_raw(tid);
        if !self.traced.contains(&pid) {
            ptrace::seize(pid, ptrace::Options::empty()).expect("PTRACE_SEIZE");
            self.traced.push(pid);
        }
        ptrace::interrupt(pid).expect("PTRACE_INTERRUPT");
        match waitpid(pid, Some(WaitPidFlag::__WALL)).expect("waitpid") {
            WaitStatus::PtraceEvent(..) | WaitStatus::Stopped(..) => {}
            other => panic!("thread {tid} did not stop: {other:?}"),
        }
        Registers::from(ptrace::getregs(pid).expect("PTRACE_GETREGS"))
    }

    /// Lets a held thread run again.
    pub fn resume(&self, tid: i32) {
        ptrace::cont(Pid::from_raw(tid), None).expect("PTRACE_CONT");
    }

    pub fn memory(&self) -> ProcessMemory {
        ProcessMemory::open(self.pid()).expect("open /proc/PID/mem")
    }
}

impl Drop for Patient {
    fn drop(&mut self) {
        let leader = Pid::from_raw(self.pid());
        let _ = kill(leader, Signal::SIGKILL);
        // Traced threads report their death to us, the tracer, and the
        // leader's exit only comes once they are reaped. The leader itself is
        // reaped through `Child`, so its PID is never waited on after reuse.
        // Polling with a deadline keeps a surprise from hanging the run.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut pending: Vec<Pid> = self
            .traced
            .iter()
            .copied()
            .filter(|t| *t != leader)
            .collect();
        while !pending.is_empty() && Instant::now() < deadline {
            pending.retain(|tid| {
                matches!(
                    waitpid(*tid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)),
                    Ok(WaitStatus::StillAlive
                        | WaitStatus::Stopped(..)
                        | WaitStatus::PtraceEvent(..))
                )
            });
            std::thread::sleep(Duration::from_millis(1));
        }
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                _ => break,
            }
        }
    }
}

/// One mapped object: its runtime code range, bias and function symbols.
struct Mapped {
    path: String,
    bias: u64,
    code: Vec<(u64, u64)>,
    /// (file address, size, name)
    symbols: Vec<(u64, u64, String)>,
}

/// Unwind tables and a symbolizer for one process, built from its maps.
pub struct Process {
    pub tables: Tables,
    objects: Vec<Mapped>,
    pub vdso: (u64, u64),
}

struct MapLine {
    start: u64,
    end: u64,
    perms: String,
    offset: u64,
    path: String,
}

fn maps(pid: i32) -> Vec<MapLine> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?.to_owned();
            let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
            let path = fields.nth(2).unwrap_or("").to_owned();
            Some(MapLine {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                perms,
                offset,
                path,
            })
        })
        .collect()
}

impl Process {
    /// Reads the maps of a held process and loads the `.eh_frame` of every
    /// mapped executable object and of the vDSO.
    pub fn load(patient: &Patient) -> Process {
        let pid = patient.pid();
        let mut tables = Tables::new();
        let mut objects: Vec<Mapped> = Vec::new();
        let mut vdso = (0, 0);
        let memory = patient.memory();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for map in maps(pid) {
            if map.path == "[vdso]" {
                tables
                    .add_vdso(&memory, map.start, map.end)
                    .expect("vDSO tables");
                let mut image = vec![0u8; (map.end - map.start) as usize];
                doctor::unwind::Memory::read(&memory, map.start, &mut image).expect("read vDSO");
                let bias = load_bias(&image, map.start, 0).expect("vDSO bias");
                objects.push(Mapped {
                    path: map.path.clone(),
                    bias,
                    code: vec![(map.start, map.end)],
                    symbols: symbols(&image),
                });
                vdso = (map.start, map.end);
                continue;
            }
            if !map.path.starts_with('/') || !map.perms.contains('x') {
                continue;
            }
            if let Some(&i) = seen.get(&map.path) {
                objects[i].code.push((map.start, map.end));
                continue;
            }
            let file = format!("/proc/{pid}/map_files/{:x}-{:x}", map.start, map.end);
            let elf = std::fs::read(&file).expect("read mapped file");
            let bias = load_bias(&elf, map.start, map.offset).expect("load bias");
            tables
                .add_elf(&map.path, &elf, bias)
                .expect("object tables");
            seen.insert(map.path.clone(), objects.len());
            objects.push(Mapped {
                path: map.path.clone(),
                bias,
                code: vec![(map.start, map.end)],
                symbols: symbols(&elf),
            });
        }
        Process {
            tables,
            objects,
            vdso,
        }
    }

    /// Function names for `frame` (aliases joined by '/'), `?<object>` when
    /// the object has no symbol covering it, `??` outside every object.
    pub fn name(&self, frame: &Frame) -> String {
        let pc = frame.lookup_pc();
        let Some(object) = self
            .objects
            .iter()
            .find(|o| o.code.iter().any(|(s, e)| (*s..*e).contains(&pc)))
        else {
            return "??".into();
        };
        let at = pc.wrapping_sub(object.bias);
        let names: Vec<&str> = object
            .symbols
            .iter()
            .filter(|(addr, size, _)| (*addr..addr + (*size).max(1)).contains(&at))
            .map(|(_, _, name)| name.as_str())
            .collect();
        if names.is_empty() {
            let base = object.path.rsplit('/').next().unwrap_or(&object.path);
            format!("?{base}")
        } else {
            names.join("/")
        }
    }

    pub fn names(&self, frames: &[Frame]) -> Vec<String> {
        frames.iter().map(|f| self.name(f)).collect()
    }
}

fn symbols(elf: &[u8]) -> Vec<(u64, u64, String)> {
    let file = object::File::parse(elf).expect("parse ELF for symbols");
    let mut out: Vec<(u64, u64, String)> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether `names` contains `chain` as consecutive frames (each entry may be
/// one of several aliases).
pub fn has_chain(names: &[String], chain: &[&str]) -> bool {
    names.windows(chain.len()).any(|window| {
        window
            .iter()
            .zip(chain)
            .all(|(name, want)| name.split('/').any(|alias| alias == *want))
    })
}
