//! One test case: a directory under `tests/cases/` with the C sources, a
//! Makefile with an install target, `fix.diff`, `expect` (the line printed
//! before the patch, then the line printed after) and `recipe` (how the
//! manual recipe builds it).

use std::path::{Path, PathBuf};

use super::tools::workspace_root;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exe,
    Lib,
}

/// One output of the manual recipe.
#[derive(Debug, Clone)]
pub struct Output {
    pub kind: Kind,
    pub name: String,
    pub sources: Vec<String>,
    pub link_flags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub before: String,
    pub after: String,
    pub outputs: Vec<Output>,
}

impl Case {
    pub fn load(name: &str) -> Case {
        let dir = workspace_root().join("tests/cases").join(name);
        let read = |file: &str| -> String {
            std::fs::read_to_string(dir.join(file))
                .unwrap_or_else(|e| panic!("case {name}: cannot read {file}: {e}"))
        };
        let expect = read("expect");
        let mut lines = expect.lines();
        let (Some(before), Some(after)) = (lines.next(), lines.next()) else {
            panic!("case {name}: expect must have two lines, before and after the patch");
        };
        let outputs = read("recipe")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_recipe_line(name, l))
            .collect();
        Case {
            name: name.to_string(),
            dir,
            before: before.to_string(),
            after: after.to_string(),
            outputs,
        }
    }

    /// The program a live test runs: the first executable of the recipe.
    pub fn program(&self) -> &str {
        &self
            .outputs
            .iter()
            .find(|o| o.kind == Kind::Exe)
            .unwrap_or_else(|| panic!("case {}: recipe has no exe", self.name))
            .name
    }

    /// Copies the case into `to` (files only; cases are flat).
    pub fn copy_to(&self, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
}

fn parse_recipe_line(case: &str, line: &str) -> Output {
    let (main, link) = match line.split_once(" -- ") {
        Some((m, l)) => (m, l.split_whitespace().map(String::from).collect()),
        None => (line, Vec::new()),
    };
    let mut words = main.split_whitespace();
    let kind = match words.next() {
        Some("exe") => Kind::Exe,
        Some("lib") => Kind::Lib,
        other => panic!("case {case}: recipe line {line:?}: unknown kind {other:?}"),
    };
    let name = words
        .next()
        .unwrap_or_else(|| panic!("case {case}: recipe line {line:?}: no output"))
        .to_string();
    let sources: Vec<String> = words.map(String::from).collect();
    assert!(
        !sources.is_empty(),
        "case {case}: recipe line {line:?}: no sources"
    );
    Output {
        kind,
        name,
        sources,
        link_flags: link,
    }
}
