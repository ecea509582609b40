//! kpatch_gensrc: diff two `gcc -S` outputs of one translation unit into
//! the augmented assembly of a live patch (see `docs/patch-object.md`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};

#[derive(Parser, Debug)]
#[command(
    name = "kpatch_gensrc",
    about = "Compare original and patched assembly and write the augmented assembly of a live patch",
    after_help = "With two inputs (-i ORIGINAL -i PATCHED) the output is the original text, \
unchanged, plus the changed and new functions and data in .kpatch.* sections. \
Identical inputs give the original text back.\n\n\
--dbg-filter takes ONE input and prints it without debug information (.loc, numbered \
.file directives and .debug_* sections), so that two filtered files differ only where \
code or data differ; the result still assembles to the same code."
)]
struct Args {
    /// Input assembly: the original first, then the patched ("-" reads stdin).
    #[arg(short = 'i', long = "input", value_name = "FILE", required = true)]
    inputs: Vec<String>,
    /// Output assembly ("-" writes stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    output: String,
    /// Target OS name; accepted for compatibility, not used.
    #[arg(long = "os", value_name = "OS")]
    _os: Option<String>,
    /// Reach every variable outside the patch through a GOT entry.
    #[arg(long)]
    force_gotpcrel: bool,
    /// Make the patch's functions and variables global symbols.
    #[arg(long)]
    force_global: bool,
    /// Print the single input with its debug information removed.
    #[arg(long)]
    dbg_filter: bool,
    /// Patch functions even when only source line numbers (`__LINE__`) in
    /// their code changed; by default they are reported and left alone.
    #[arg(long)]
    keep_line_changes: bool,
    /// Print the report as JSON on stdout (instead of text on stderr);
    /// not with `-o -`.
    #[arg(long)]
    json: bool,
    /// Comma-separated symbols whose changes are ignored: a changed variable
    /// is accepted (the patch keeps using the original object), a changed
    /// function is not patched.
    #[arg(long, value_name = "FLIST", value_delimiter = ',')]
    ignore_changes: Vec<String>,
    /// Comma-separated functions to patch even though their code did not
    /// change.
    #[arg(long, value_name = "FLIST", value_delimiter = ',')]
    must_adapt: Vec<String>,
    /// Comma-separated symbols the patch gets its own copy of instead of
    /// using the original's (a variable starts from its patched initial
    /// value; a function is not redirected).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    unlink_symbols: Vec<String>,
}

fn read_input(name: &str) -> Result<String> {
    let bytes = if name == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .context("reading stdin")?;
        v
    } else {
        std::fs::read(name).with_context(|| format!("reading {name}"))?
    };
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!("{name}:{line}: not UTF-8 text")
    })
}

fn display_name(name: &str) -> &str {
    if name == "-" { "<stdin>" } else { name }
}

/// Writes next to the target and renames, so a failure leaves no file.
fn write_output(name: &str, produce: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    if name == "-" {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        produce(&mut out)?;
        return out.flush().context("writing stdout");
    }
    let path = Path::new(name);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let file_name = path
        .file_name()
        .with_context(|| format!("{name}: not a file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(file);
        produce(&mut w)?;
        w.flush()
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {name}", tmp.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Wrong usage: clap's message format and exit status 2.
fn usage_error(msg: &str) -> ! {
    Args::command()
        .error(clap::error::ErrorKind::ArgumentConflict, msg)
        .exit()
}

fn run(args: Args) -> Result<()> {
    if args.dbg_filter {
        if args.inputs.len() != 1 {
            usage_error(&gensrc::Error::DbgFilterInputs(args.inputs.len()).to_string());
        }
        let text = read_input(&args.inputs[0])?;
        let out = gensrc::dbg_filter(display_name(&args.inputs[0]), &text)?;
        return write_output(&args.output, |w| {
            w.write_all(out.as_bytes()).context("writing the output")
        });
    }
    if args.inputs.len() != 2 {
        usage_error(&format!(
            "expected two inputs (-i ORIGINAL -i PATCHED), got {}",
            args.inputs.len()
        ));
    }
    if args.json && args.output == "-" {
        usage_error("--json prints on stdout, so the output cannot be stdout too");
    }
    if args.inputs.iter().filter(|i| *i == "-").count() > 1 {
        usage_error("only one input can be stdin");
    }
    let orig = read_input(&args.inputs[0])?;
    let patched = read_input(&args.inputs[1])?;
    let opts = gensrc::Options {
        ignore_changes: args.ignore_changes,
        must_adapt: args.must_adapt,
        unlink_symbols: args.unlink_symbols,
        force_global: args.force_global,
        force_gotpcrel: args.force_gotpcrel,
        keep_line_changes: args.keep_line_changes,
    };
    let mut report = None;
    let written = write_output(&args.output, |w| {
        let r = gensrc::diff_to(
            display_name(&args.inputs[0]),
            &orig,
            display_name(&args.inputs[1]),
            &patched,
            &opts,
            w,
        );
        if let (true, Err(gensrc::Error::VariablesChanged(refused))) = (args.json, &r) {
            // The refusal is the report: say it in JSON too.
            let json = serde_json::json!({ "refused_variables": refused });
            println!("{json:#}");
        }
        report = Some(r?);
        Ok(())
    });
    written?;
    let report = report.expect("set on success");
    if args.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        println!("{json}");
    } else {
        eprint!("{}", report.to_text());
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("kpatch_gensrc: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_command_line_parses() {
        let a = Args::try_parse_from([
            "kpatch_gensrc",
            "--os=rhel6",
            "-i",
            "foo.s",
            "-i",
            "bar.s",
            "-o",
            "foobar.s",
            "--force-gotpcrel",
            "--ignore-changes=a,b",
        ])
        .unwrap();
        assert_eq!(a.inputs, ["foo.s", "bar.s"]);
        assert!(a.force_gotpcrel && !a.force_global);
        assert_eq!(a.ignore_changes, ["a", "b"]);
        assert!(Args::try_parse_from(["kpatch_gensrc", "-i", "x.s"]).is_err());
    }

    #[test]
    fn failure_leaves_no_output_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.s");
        let r = write_output(out.to_str().unwrap(), |w| {
            w.write_all(b"half").unwrap();
            anyhow::bail!("refused")
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        write_output(out.to_str().unwrap(), |w| Ok(w.write_all(b"whole")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "whole");
    }
}
