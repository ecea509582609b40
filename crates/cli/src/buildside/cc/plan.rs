//! Turns one compiler invocation into the commands a build stage runs.
//!
//! The original stage must produce objects that are identical to a direct
//! compile, or a patch built later would never match the binary users run.
//! So the `-S` step gets the user's flags unchanged (the `.file` directive and
//! `DW_AT_name` come from the source path, which we pass as given), the
//! assemble step gets the same flags plus the intermediate `.s`, and the
//! dependency side effect (`-MD`, `-MMD`) happens only in the `-S` step, with
//! the file and target names gcc would have chosen for the real output.
//!
//! Hand-written assembly (`.s`, `.S`) is always compiled from the user's
//! file, because `as` names the object's file symbol after its input; a copy
//! of its text is kept, and only a changed file goes through gensrc. In a
//! compile-and-link call it is left to the real compiler untracked.

use std::path::{Path, PathBuf};

use super::command_line::{CommandLine, Input, Language, Mode, Token};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Original,
    Patched,
}

/// One command to run, in order; the first failure stops the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The real compiler with these arguments.
    Compiler(Vec<String>),
    /// `kpatch_gensrc` on an original and a patched assembly file.
    Gensrc {
        original: PathBuf,
        patched: PathBuf,
        output: PathBuf,
    },
    /// Keep a copy of a hand-written `.s` file.
    Copy { from: PathBuf, to: PathBuf },
    /// A hand-written assembly source in the patched stage: unchanged, it
    /// is compiled as is (`direct`); changed, it goes through gensrc and the
    /// result is assembled (`assemble`).
    AsmPatch {
        original: PathBuf,
        patched: PathBuf,
        output: PathBuf,
        direct: Vec<String>,
        assemble: Vec<String>,
    },
}

/// How to carry out one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run the real compiler with these arguments and nothing else.
    Passthrough(Vec<String>),
    /// Run the steps; objects of a compile-and-link call go to a scratch
    /// directory that the caller creates before and removes after.
    Steps(Vec<Step>),
}

/// Everything the planner needs from outside the command line.
pub struct Context<'a> {
    pub stage: Stage,
    /// Scratch directory for objects of a compile-and-link call.
    pub scratch: &'a Path,
    /// Whether a file exists (the original `.s` of the patched stage).
    pub exists: &'a dyn Fn(&Path) -> bool,
}

/// The file names of one source's intermediate assembly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsmNames {
    pub original: PathBuf,
    pub patched: PathBuf,
    pub gensrc: PathBuf,
}

/// `.kpatch_<stem>.{original,patched,kpatch}.s` in `dir`.
pub fn asm_names(dir: &Path, stem: &str) -> AsmNames {
    let name = |what: &str| dir.join(format!(".kpatch_{stem}.{what}.s"));
    AsmNames {
        original: name("original"),
        patched: name("patched"),
        gensrc: name("kpatch"),
    }
}

fn file_stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

/// The name the kept assembly of a compile is keyed on: the whole object
/// file name, so that one source compiled twice into one directory
/// (`foo.o`, `foo.os` with `-DSHARED`, `foo.oS`) keeps two originals
/// instead of one the other build overwrites. Only the usual `.o` is
/// dropped, which keeps the familiar `.kpatch_foo.original.s`.
fn object_key(object: &str) -> String {
    let name = Path::new(object)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| object.to_string());
    match name.strip_suffix(".o") {
        Some(stem) if !stem.is_empty() => stem.to_string(),
        _ => name,
    }
}

fn parent_dir(path: &str) -> PathBuf {
    match Path::new(path).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `out/foo.o` -> `out/foo.d`, as gcc names the `-MD` file.
fn dep_file_for(output: &str) -> String {
    let path = Path::new(output);
    match path.extension() {
        Some(_) => path.with_extension("d").to_string_lossy().into_owned(),
        None => format!("{output}.d"),
    }
}

pub fn plan(cl: &CommandLine, args: &[String], ctx: &Context) -> Plan {
    let passthrough = || {
        let mut all = args.to_vec();
        if ctx.stage == Stage::Patched && cl.mode == Mode::Link {
            all.push("-Wl,-q".to_string());
        }
        Plan::Passthrough(all)
    };
    let asm_to_track = cl.mode == Mode::Compile && cl.has_assembler_sources();
    // Instrumented code (gcov counters, mcount calls) is compiled as is in
    // both stages: its counters are not code, and diffing them would
    // refuse or patch every function of an unchanged file.
    if cl.mode == Mode::Other
        || cl.instrumented().is_some()
        || !(cl.has_compiled_sources() || asm_to_track)
    {
        return passthrough();
    }
    let inputs: Vec<&Input> = cl.inputs().collect();
    match cl.mode {
        // gcc refuses -o with several inputs under -c; let it say so.
        Mode::Compile if cl.output.is_some() && inputs.len() > 1 => passthrough(),
        Mode::Compile => Plan::Steps(plan_compile(cl, &inputs, ctx)),
        Mode::Link => Plan::Steps(plan_link(cl, &inputs, ctx)),
        Mode::Other => passthrough(),
    }
}

fn plan_compile(cl: &CommandLine, inputs: &[&Input], ctx: &Context) -> Vec<Step> {
    let mut steps = Vec::new();
    for input in inputs {
        let object = cl
            .output
            .clone()
            .unwrap_or_else(|| format!("{}.o", file_stem(&input.path)));
        let names = asm_names(&parent_dir(&object), &object_key(&object));
        let mut direct = cl.plain_flags();
        direct.extend(cl.deps.tokens.iter().cloned());
        direct.push("-c".into());
        push_input(&mut direct, input);
        direct.extend(["-o".into(), object.clone()]);
        match input.language {
            Language::Other => steps.push(Step::Compiler(direct)),
            Language::Assembler { preprocessed } => steps.extend(assembler_steps(
                cl,
                input,
                preprocessed,
                &names,
                direct,
                &object,
                ctx,
            )),
            Language::Compiled(_) => {
                let mut side = dep_flags(cl, &dep_file_for(&object), &object);
                side.extend(aux_flags(cl, &strip_extension(&object)));
                steps.extend(two_steps(cl, input, &names, side, &object, ctx));
            }
        }
    }
    steps
}

/// Hand-written assembly is always compiled from the user's file (the file
/// name ends up in the object), with a copy of its text kept for the
/// patched stage to compare.
fn assembler_steps(
    cl: &CommandLine,
    input: &Input,
    preprocessed: bool,
    names: &AsmNames,
    direct: Vec<String>,
    object: &str,
    ctx: &Context,
) -> Vec<Step> {
    let keep = match ctx.stage {
        Stage::Original => &names.original,
        Stage::Patched => &names.patched,
    };
    let capture = if preprocessed {
        let mut argv = cl.plain_flags();
        argv.push("-E".into());
        push_input(&mut argv, input);
        argv.extend(["-o".into(), path_arg(keep)]);
        Step::Compiler(argv)
    } else {
        Step::Copy {
            from: PathBuf::from(&input.path),
            to: keep.clone(),
        }
    };
    let last = match ctx.stage {
        Stage::Patched if (ctx.exists)(&names.original) => {
            let mut assemble = cl.plain_flags();
            assemble.extend(["-c".into(), "-x".into(), "assembler".into()]);
            assemble.push(path_arg(&names.gensrc));
            assemble.extend(["-o".into(), object.to_string()]);
            Step::AsmPatch {
                original: names.original.clone(),
                patched: names.patched.clone(),
                output: names.gensrc.clone(),
                direct,
                assemble,
            }
        }
        _ => Step::Compiler(direct),
    };
    vec![capture, last]
}

fn plan_link(cl: &CommandLine, inputs: &[&Input], ctx: &Context) -> Vec<Step> {
    let mut steps = Vec::new();
    let output = cl.output.clone().unwrap_or_else(|| "a.out".to_string());
    let asm_dir = parent_dir(&output);
    let mut objects = Vec::new();
    for (n, input) in inputs.iter().enumerate() {
        let Language::Compiled(_) = input.language else {
            objects.push(None);
            continue;
        };
        let stem = file_stem(&input.path);
        let object = ctx
            .scratch
            .join(format!("{n}-{stem}.o"))
            .to_string_lossy()
            .into_owned();
        // gcc's own names for the .d of a compile-and-link call.
        let (dep_file, dep_target) = match &cl.output {
            Some(out) => (dep_file_for(out), out.clone()),
            None => (format!("a-{stem}.d"), format!("{stem}.o")),
        };
        let mut side = dep_flags(cl, &dep_file, &dep_target);
        let aux = match &cl.output {
            Some(out) => format!("{out}-{stem}"),
            None => format!("a-{stem}"),
        };
        side.extend(aux_flags(cl, &aux));
        let names = asm_names(&asm_dir, &stem);
        steps.extend(two_steps(cl, input, &names, side, &object, ctx));
        objects.push(Some(object));
    }

    let mut argv = Vec::new();
    let mut objects = objects.into_iter();
    for token in &cl.tokens {
        match token {
            Token::Input(input) => match objects.next().flatten() {
                // `-x none` only where a `-x` is in force: g++ stops adding
                // libstdc++ to the link once it sees any `-x none`.
                Some(object) => match &input.explicit_x {
                    Some(x) => {
                        argv.extend(["-x".into(), "none".into(), object, "-x".into(), x.clone()])
                    }
                    None => argv.push(object),
                },
                None => argv.push(input.path.clone()),
            },
            Token::Dep(_) => {}
            Token::Flag(g) | Token::Language(g) | Token::Output(g) => {
                argv.extend(g.iter().cloned())
            }
            Token::Mode(m) => argv.push(m.clone()),
        }
    }
    if ctx.stage == Stage::Patched {
        argv.push("-Wl,-q".into());
    }
    steps.push(Step::Compiler(argv));
    steps
}

/// The dependency flags for the `-S` step, with the names gcc would have
/// derived from the real output made explicit.
fn dep_flags(cl: &CommandLine, file: &str, target: &str) -> Vec<String> {
    let mut flags = cl.deps.tokens.clone();
    if cl.deps.side_effect && !cl.deps.has_file {
        flags.extend(["-MF".into(), file.to_string()]);
    }
    if cl.deps.side_effect && !cl.deps.has_target {
        flags.extend(["-MQ".into(), target.to_string()]);
    }
    flags
}

/// `-dumpbase AUX` for the `-S` step, so that files named after the
/// compile's auxiliary base (`-gsplit-dwarf`'s `.dwo` and its name in the
/// object, `--coverage`'s `.gcno`/`.gcda`, `-fstack-usage`'s `.su`) get the
/// names a direct compile gives them, not names from our `.s` file.
fn aux_flags(cl: &CommandLine, aux: &str) -> Vec<String> {
    let user_set = cl.tokens.iter().any(|t| match t {
        Token::Flag(g) => g[0].starts_with("-dumpbase") || g[0].starts_with("-dumpdir"),
        _ => false,
    });
    if user_set {
        Vec::new()
    } else {
        vec!["-dumpbase".into(), aux.to_string()]
    }
}

/// `out/foo.o` -> `out/foo`.
fn strip_extension(path: &str) -> String {
    Path::new(path)
        .with_extension("")
        .to_string_lossy()
        .into_owned()
}

fn push_input(argv: &mut Vec<String>, input: &Input) {
    if let Some(x) = &input.explicit_x {
        argv.extend(["-x".into(), x.clone()]);
    }
    argv.push(input.path.clone());
}

fn two_steps(
    cl: &CommandLine,
    input: &Input,
    names: &AsmNames,
    // Flags for side effects of the `-S` step only (dependency file,
    // auxiliary base name).
    side: Vec<String>,
    object: &str,
    ctx: &Context,
) -> Vec<Step> {
    let asm_out = match ctx.stage {
        Stage::Original => &names.original,
        Stage::Patched => &names.patched,
    };
    let mut to_asm = cl.plain_flags();
    to_asm.extend(side);
    to_asm.push("-S".into());
    push_input(&mut to_asm, input);
    to_asm.extend(["-o".into(), path_arg(asm_out)]);
    let mut steps = vec![Step::Compiler(to_asm)];

    let assemble_from = match ctx.stage {
        Stage::Patched if (ctx.exists)(&names.original) => {
            steps.push(Step::Gensrc {
                original: names.original.clone(),
                patched: names.patched.clone(),
                output: names.gensrc.clone(),
            });
            &names.gensrc
        }
        // A file new in the patch has no original: it builds as is.
        _ => asm_out,
    };
    let mut assemble = cl.plain_flags();
    assemble.extend(["-c".into(), "-x".into(), "assembler".into()]);
    assemble.push(path_arg(assemble_from));
    assemble.extend(["-o".into(), object.to_string()]);
    steps.push(Step::Compiler(assemble));
    steps
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    fn plan_for(line: &str, stage: Stage, original_exists: bool) -> Plan {
        let a = args(line);
        let cl = CommandLine::parse(&a);
        let exists = move |_: &Path| original_exists;
        let ctx = Context {
            stage,
            scratch: Path::new("/scratch"),
            exists: &exists,
        };
        plan(&cl, &a, &ctx)
    }

    fn compiler(line: &str) -> Step {
        Step::Compiler(args(line))
    }

    #[test]
    fn original_compile_goes_through_assembly_next_to_the_object() {
        let p = plan_for("-O2 -g -c src/foo.c -o out/foo.o", Stage::Original, false);
        assert_eq!(
            p,
            Plan::Steps(vec![
                compiler("-O2 -g -dumpbase out/foo -S src/foo.c -o out/.kpatch_foo.original.s"),
                compiler("-O2 -g -c -x assembler out/.kpatch_foo.original.s -o out/foo.o"),
            ])
        );
    }

    #[test]
    fn dependency_file_is_written_once_with_the_object_names() {
        let p = plan_for("-MMD -MP -c foo.c", Stage::Original, false);
        assert_eq!(
            p,
            Plan::Steps(vec![
                compiler(
                    "-MMD -MP -MF foo.d -MQ foo.o -dumpbase foo -S foo.c -o ./.kpatch_foo.original.s"
                ),
                compiler("-c -x assembler ./.kpatch_foo.original.s -o foo.o"),
            ])
        );
    }

    #[test]
    fn patched_compile_runs_gensrc_when_the_original_exists() {
        let p = plan_for("-c foo.c -o foo.o", Stage::Patched, true);
        let Plan::Steps(steps) = p else {
            panic!("expected steps")
        };
        assert_eq!(
            steps[0],
            compiler("-dumpbase foo -S foo.c -o ./.kpatch_foo.patched.s")
        );
        assert_eq!(
            steps[1],
            Step::Gensrc {
                original: "./.kpatch_foo.original.s".into(),
                patched: "./.kpatch_foo.patched.s".into(),
                output: "./.kpatch_foo.kpatch.s".into(),
            }
        );
        assert_eq!(
            steps[2],
            compiler("-c -x assembler ./.kpatch_foo.kpatch.s -o foo.o")
        );
    }

    #[test]
    fn patched_compile_of_a_new_file_skips_gensrc() {
        let Plan::Steps(steps) = plan_for("-c new.c", Stage::Patched, false) else {
            panic!("expected steps")
        };
        assert_eq!(steps.len(), 2);
        assert_eq!(
            steps[1],
            compiler("-c -x assembler ./.kpatch_new.patched.s -o new.o")
        );
    }

    #[test]
    fn link_steps_keep_relocations_only_when_patched() {
        assert_eq!(
            plan_for("foo.o bar.o -o prog", Stage::Patched, true),
            Plan::Passthrough(args("foo.o bar.o -o prog -Wl,-q"))
        );
        assert_eq!(
            plan_for("foo.o -o prog", Stage::Original, true),
            Plan::Passthrough(args("foo.o -o prog"))
        );
    }

    #[test]
    fn compile_and_link_replaces_sources_by_scratch_objects() {
        let Plan::Steps(steps) =
            plan_for("-O2 main.c lib.o -o bin/prog -lm", Stage::Original, false)
        else {
            panic!("expected steps")
        };
        assert_eq!(
            steps[0],
            compiler("-O2 -lm -dumpbase bin/prog-main -S main.c -o bin/.kpatch_main.original.s")
        );
        assert_eq!(
            steps[2],
            compiler("-O2 /scratch/0-main.o lib.o -o bin/prog -lm")
        );
    }

    #[test]
    fn explicit_language_is_switched_off_around_scratch_objects() {
        let Plan::Steps(steps) = plan_for("-x c main.txt -o prog", Stage::Original, false) else {
            panic!("expected steps")
        };
        assert_eq!(
            steps[0],
            compiler("-dumpbase prog-main -S -x c main.txt -o ./.kpatch_main.original.s")
        );
        assert_eq!(
            steps[2],
            compiler("-x c -x none /scratch/0-main.o -x c -o prog")
        );
    }

    #[test]
    fn kept_assembly_is_keyed_on_the_whole_object_name() {
        let first = |line: &str| match plan_for(line, Stage::Original, false) {
            Plan::Steps(steps) => steps[0].clone(),
            p => panic!("expected steps, got {p:?}"),
        };
        assert_eq!(
            first("-c foo.c -o out/foo.o"),
            compiler("-dumpbase out/foo -S foo.c -o out/.kpatch_foo.original.s")
        );
        assert_eq!(
            first("-DSHARED -c foo.c -o out/foo.os"),
            compiler("-DSHARED -dumpbase out/foo -S foo.c -o out/.kpatch_foo.os.original.s")
        );
        assert_eq!(
            first("-c foo.c -o out/foo.oS"),
            compiler("-dumpbase out/foo -S foo.c -o out/.kpatch_foo.oS.original.s")
        );
    }

    #[test]
    fn instrumented_compiles_pass_through_in_both_stages() {
        for line in [
            "-fprofile-arcs -ftest-coverage -c foo.c -o foo.o",
            "--coverage -c foo.c",
            "-pg -O2 -c foo.c",
        ] {
            for stage in [Stage::Original, Stage::Patched] {
                assert_eq!(
                    plan_for(line, stage, true),
                    Plan::Passthrough(args(line)),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn other_modes_pass_through() {
        let line = "-S foo.c -o foo.s";
        assert_eq!(
            plan_for(line, Stage::Original, false),
            Plan::Passthrough(args(line))
        );
        let line = "-c lib.o";
        assert_eq!(
            plan_for(line, Stage::Patched, true),
            Plan::Passthrough(args(line))
        );
    }

    #[test]
    fn assembler_is_compiled_as_is_and_its_text_kept() {
        let Plan::Steps(steps) = plan_for("-c start.S -o out/start.o", Stage::Original, false)
        else {
            panic!("expected steps")
        };
        assert_eq!(
            steps,
            [
                compiler("-E start.S -o out/.kpatch_start.original.s"),
                compiler("-c start.S -o out/start.o"),
            ]
        );
        let Plan::Steps(steps) = plan_for("-c raw.s", Stage::Patched, true) else {
            panic!("expected steps")
        };
        assert_eq!(
            steps[0],
            Step::Copy {
                from: "raw.s".into(),
                to: "./.kpatch_raw.patched.s".into()
            }
        );
        assert_eq!(
            steps[1],
            Step::AsmPatch {
                original: "./.kpatch_raw.original.s".into(),
                patched: "./.kpatch_raw.patched.s".into(),
                output: "./.kpatch_raw.kpatch.s".into(),
                direct: args("-c raw.s -o raw.o"),
                assemble: args("-c -x assembler ./.kpatch_raw.kpatch.s -o raw.o"),
            }
        );
    }
}
