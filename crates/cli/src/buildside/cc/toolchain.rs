//! Where the real compiler and `kpatch_gensrc` are, and which stage runs,
//! all read from the environment the build system gives us.

use std::path::{Path, PathBuf};

use super::plan::Stage;

/// Set in the environment of every command we start, so that a real
/// compiler setting that points back at us is caught instead of recursing.
pub const ACTIVE_MARK: &str = "LIBCARE_CC_ACTIVE";

use anyhow::{Result, bail};

/// `KPATCH_STAGE`; `None` when unset, empty or `configure` (the value
/// LibCare documents for `./configure` runs): plain passthrough, so that
/// configure's probes see the real compiler.
pub fn stage_from(value: Option<String>) -> Result<Option<Stage>> {
    match value.as_deref() {
        None | Some("" | "configure") => Ok(None),
        Some("original") => Ok(Some(Stage::Original)),
        Some("patched") => Ok(Some(Stage::Patched)),
        Some(other) => bail!(
            "KPATCH_STAGE={other:?} is not a stage (use \"original\", \"patched\" or \"configure\", or unset it)"
        ),
    }
}

/// Whether we were invoked under a C++ name (`libcare-c++`, `libcare-cxx`,
/// `libcare-g++`), as make's `CXX` would call us.
pub fn is_cxx_name(argv0: &str) -> bool {
    let name = Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.contains("c++") || name.contains("cxx") || name.contains("g++")
}

/// The real compiler as program plus leading arguments (`KPATCH_CC="ccache
/// gcc"` works). `CC` itself is not read: make exports `CC=libcare-cc`.
pub fn real_compiler(cxx: bool, var_value: Option<String>) -> Result<Vec<String>> {
    let (var, default) = if cxx {
        ("KPATCH_CXX", "g++")
    } else {
        ("KPATCH_CC", "gcc")
    };
    match var_value {
        None => Ok(vec![default.to_string()]),
        Some(v) => {
            let words: Vec<String> = v.split_whitespace().map(String::from).collect();
            if words.is_empty() {
                bail!("{var} is set but empty")
            } else {
                Ok(words)
            }
        }
    }
}

/// `$KPATCH_GENSRC`, else `kpatch_gensrc` next to our own executable.
pub fn gensrc_path(var_value: Option<String>, own_exe: Option<PathBuf>) -> PathBuf {
    if let Some(v) = var_value.filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    match own_exe.as_deref().and_then(Path::parent) {
        Some(dir) => dir.join("kpatch_gensrc"),
        None => PathBuf::from("kpatch_gensrc"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_values() {
        assert_eq!(stage_from(None).unwrap(), None);
        assert_eq!(stage_from(Some(String::new())).unwrap(), None);
        assert_eq!(
            stage_from(Some("patched".into())).unwrap(),
            Some(Stage::Patched)
        );
        assert_eq!(stage_from(Some("configure".into())).unwrap(), None);
        assert!(stage_from(Some("orig".into())).is_err());
    }

    #[test]
    fn compiler_choice() {
        assert_eq!(real_compiler(false, None).unwrap(), ["gcc"]);
        assert_eq!(real_compiler(true, None).unwrap(), ["g++"]);
        assert_eq!(
            real_compiler(false, Some("ccache gcc-12".into())).unwrap(),
            ["ccache", "gcc-12"]
        );
        assert!(real_compiler(false, Some(" ".into())).is_err());
        assert!(is_cxx_name("/usr/bin/libcare-c++"));
        assert!(!is_cxx_name("libcare-cc"));
    }

    #[test]
    fn gensrc_next_to_us() {
        assert_eq!(
            gensrc_path(None, Some("/opt/lc/bin/libcare-cc".into())),
            PathBuf::from("/opt/lc/bin/kpatch_gensrc")
        );
        assert_eq!(
            gensrc_path(Some("/x/g".into()), None),
            PathBuf::from("/x/g")
        );
    }
}
