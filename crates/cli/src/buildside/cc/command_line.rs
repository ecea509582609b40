//! A gcc/g++ command line, read just deeply enough to find the sources, the
//! output and the mode, while every flag we do not understand stays a token
//! that is handed back to the real compiler byte for byte and in order.

use std::path::Path;

/// What the driver was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `-c`: compile (or assemble) each input to an object.
    Compile,
    /// No mode flag: compile any sources, then link.
    Link,
    /// `-S`, `-E`, `-M`, `-fsyntax-only`, `--version`, `-print-*`, ...:
    /// nothing for us to do, the real compiler runs unchanged.
    Other,
}

/// The language gcc gives an input, either by `-x` or by its suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Language {
    /// Compiled to assembly by cc1/cc1plus: the inputs we split in two steps.
    Compiled(String),
    /// Hand-written assembly; `preprocessed` for `.S` (run through cpp).
    Assembler { preprocessed: bool },
    /// Objects, archives, linker scripts, anything else.
    Other,
}

/// One input file and how gcc would treat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: String,
    pub language: Language,
    /// The `-x` value in force when the input was named, if any.
    pub explicit_x: Option<String>,
}

/// The dependency-file options (`-MD`, `-MMD`, `-MF`, `-MT`, `-MQ`, `-MP`):
/// they must be honoured by exactly one of the commands we run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepFlags {
    /// The tokens as given, in order.
    pub tokens: Vec<String>,
    /// `-MD` or `-MMD` was given: a `.d` file is written as a side effect.
    pub side_effect: bool,
    /// `-MF` was given: the file name is fixed by the user.
    pub has_file: bool,
    /// `-MT` or `-MQ` was given: the target name is fixed by the user.
    pub has_target: bool,
}

/// One piece of the command line, in its original position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A flag with any separate value it takes (`-I dir` is one token).
    Flag(Vec<String>),
    /// `-x LANG` (or `-xLANG`).
    Language(Vec<String>),
    /// `-o FILE` (or `-oFILE`).
    Output(Vec<String>),
    /// `-c` or another mode flag.
    Mode(String),
    /// A dependency-file flag.
    Dep(Vec<String>),
    Input(Input),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub tokens: Vec<Token>,
    pub mode: Mode,
    pub output: Option<String>,
    pub deps: DepFlags,
}

/// Flags whose value may come as the next argument. Everything else either
/// carries its value joined (`-O2`, `-Wl,-q`, `-std=c99`) or has none.
const SEPARATE_VALUE: &[&str] = &[
    "-o",
    "-x",
    "-MF",
    "-MT",
    "-MQ",
    "-I",
    "-D",
    "-U",
    "-include",
    "-imacros",
    "-iquote",
    "-isystem",
    "-idirafter",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-isysroot",
    "-imultilib",
    "-L",
    "-l",
    "-T",
    "-Xlinker",
    "-Xassembler",
    "-Xpreprocessor",
    "-u",
    "-e",
    "-z",
    "-A",
    "-B",
    "-G",
    "-aux-info",
    "-dumpbase",
    "-dumpbase-ext",
    "-dumpdir",
    "-wrapper",
    "--param",
];

/// Flags after which the driver does not compile-and-link at all.
fn is_other_mode(flag: &str) -> bool {
    matches!(
        flag,
        "-S" | "-E"
            | "-M"
            | "-MM"
            | "-fsyntax-only"
            | "-###"
            | "--version"
            | "--help"
            | "-dumpversion"
            | "-dumpfullversion"
            | "-dumpmachine"
            | "-dumpspecs"
            | "--target-help"
    ) || flag.starts_with("-print-")
        || flag.starts_with("--help=")
}

/// gcc's language for a file name without `-x`.
pub fn language_by_suffix(path: &str) -> Language {
    let ext = Path::new(path).extension().and_then(|e| e.to_str());
    let lang = match ext {
        Some("c") => "c",
        Some("i") => "cpp-output",
        Some("cc" | "cp" | "cxx" | "cpp" | "CPP" | "c++" | "C") => "c++",
        Some("ii") => "c++-cpp-output",
        Some("s") => {
            return Language::Assembler {
                preprocessed: false,
            };
        }
        Some("S" | "sx") => return Language::Assembler { preprocessed: true },
        _ => return Language::Other,
    };
    Language::Compiled(lang.to_string())
}

fn language_by_x(x: &str) -> Option<Language> {
    match x {
        "none" => None,
        "c" | "cpp-output" | "c++" | "c++-cpp-output" => Some(Language::Compiled(x.to_string())),
        "assembler" => Some(Language::Assembler {
            preprocessed: false,
        }),
        "assembler-with-cpp" => Some(Language::Assembler { preprocessed: true }),
        _ => Some(Language::Other),
    }
}

impl CommandLine {
    pub fn parse(args: &[String]) -> CommandLine {
        let mut tokens = Vec::new();
        let mut mode = Mode::Link;
        let mut output = None;
        let mut deps = DepFlags::default();
        let mut x: Option<String> = None;
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if !arg.starts_with('-') || arg == "-" {
                // Standard input cannot be read twice; it is split only
                // under `-c` with a compiled `-x` language (see below),
                // where the `-S` step reads it once and keeps its assembly.
                let language = if arg == "-" {
                    x.as_deref()
                        .and_then(language_by_x)
                        .filter(|l| matches!(l, Language::Compiled(_)))
                        .unwrap_or(Language::Other)
                } else {
                    x.as_deref()
                        .and_then(language_by_x)
                        .unwrap_or_else(|| language_by_suffix(arg))
                };
                tokens.push(Token::Input(Input {
                    path: arg.clone(),
                    language,
                    explicit_x: x.clone(),
                }));
                continue;
            }
            let mut group = vec![arg.clone()];
            if SEPARATE_VALUE.contains(&arg.as_str()) && i < args.len() {
                group.push(args[i].clone());
                i += 1;
            }
            let value = |prefix: &str| -> String {
                if group.len() > 1 {
                    group[1].clone()
                } else {
                    group[0][prefix.len()..].to_string()
                }
            };
            if arg == "-c" {
                if mode == Mode::Link {
                    mode = Mode::Compile;
                }
                tokens.push(Token::Mode(arg.clone()));
            } else if is_other_mode(arg) {
                mode = Mode::Other;
                tokens.push(Token::Mode(arg.clone()));
            } else if arg.starts_with("-o") {
                output = Some(value("-o"));
                tokens.push(Token::Output(group));
            } else if arg.starts_with("-x") {
                let lang = value("-x");
                x = if lang == "none" { None } else { Some(lang) };
                tokens.push(Token::Language(group));
            } else if matches!(arg.as_str(), "-MD" | "-MMD" | "-MP")
                || ["-MF", "-MT", "-MQ"].iter().any(|p| arg.starts_with(p))
            {
                deps.side_effect |= arg == "-MD" || arg == "-MMD";
                deps.has_file |= arg.starts_with("-MF");
                deps.has_target |= arg.starts_with("-MT") || arg.starts_with("-MQ");
                deps.tokens.extend(group.iter().cloned());
                tokens.push(Token::Dep(group));
            } else {
                tokens.push(Token::Flag(group));
            }
        }
        if mode != Mode::Compile {
            // A compile-and-link would read standard input in the link
            // step too: the real compiler gets it in one go.
            for token in &mut tokens {
                if let Token::Input(input) = token
                    && input.path == "-"
                {
                    input.language = Language::Other;
                }
            }
        }
        CommandLine {
            tokens,
            mode,
            output,
            deps,
        }
    }

    pub fn inputs(&self) -> impl Iterator<Item = &Input> {
        self.tokens.iter().filter_map(|t| match t {
            Token::Input(input) => Some(input),
            _ => None,
        })
    }

    pub fn has_compiled_sources(&self) -> bool {
        self.inputs()
            .any(|i| matches!(i.language, Language::Compiled(_)))
    }

    pub fn has_assembler_sources(&self) -> bool {
        self.inputs()
            .any(|i| matches!(i.language, Language::Assembler { .. }))
    }

    /// Whether link-time optimisation is on (the last of `-flto*` and
    /// `-fno-lto` wins): the assembly of an LTO object is not the code that
    /// will run, so no patch can be built from it.
    pub fn lto(&self) -> bool {
        let mut on = false;
        for token in &self.tokens {
            if let Token::Flag(group) = token {
                let flag = group[0].as_str();
                if flag == "-flto" || flag.starts_with("-flto=") {
                    on = true;
                } else if flag == "-fno-lto" {
                    on = false;
                }
            }
        }
        on
    }

    /// The first flag that instruments the code with counters or profiling
    /// calls (`-fprofile-arcs`, `--coverage`, `-pg`, `-fprofile-generate`),
    /// unless switched off again later on the line.
    pub fn instrumented(&self) -> Option<&str> {
        let mut found = None;
        for token in &self.tokens {
            if let Token::Flag(group) = token {
                let flag = group[0].as_str();
                match flag {
                    "-fprofile-arcs" | "--coverage" | "-pg" | "-p" => found = Some(flag),
                    _ if flag.starts_with("-fprofile-generate") => found = Some(flag),
                    "-fno-profile-arcs" => found = None,
                    _ => {}
                }
            }
        }
        found
    }

    /// The plain flags (no inputs, output, mode, language or dependency
    /// flags), in their original order.
    pub fn plain_flags(&self) -> Vec<String> {
        self.tokens
            .iter()
            .filter_map(|t| match t {
                Token::Flag(group) => Some(group.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> CommandLine {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        CommandLine::parse(&args)
    }

    #[test]
    fn compile_with_separate_values() {
        let cl = parse("-I inc -O2 -c -o out/foo.o src/foo.c -D X=1");
        assert_eq!(cl.mode, Mode::Compile);
        assert_eq!(cl.output.as_deref(), Some("out/foo.o"));
        let inputs: Vec<_> = cl.inputs().collect();
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].path, "src/foo.c");
        assert_eq!(inputs[0].language, Language::Compiled("c".into()));
        assert_eq!(cl.plain_flags(), ["-I", "inc", "-O2", "-D", "X=1"]);
    }

    #[test]
    fn x_language_applies_to_following_inputs_only() {
        let cl = parse("a.s -x c b.txt -x none c.cpp d.o");
        let langs: Vec<_> = cl.inputs().map(|i| i.language.clone()).collect();
        assert_eq!(
            langs,
            [
                Language::Assembler {
                    preprocessed: false
                },
                Language::Compiled("c".into()),
                Language::Compiled("c++".into()),
                Language::Other
            ]
        );
    }

    #[test]
    fn other_modes_win_over_compile() {
        assert_eq!(parse("-c -S foo.c").mode, Mode::Other);
        assert_eq!(parse("-E foo.c").mode, Mode::Other);
        assert_eq!(parse("--version").mode, Mode::Other);
        assert_eq!(parse("foo.o -o prog").mode, Mode::Link);
    }

    #[test]
    fn lto_last_flag_wins() {
        assert!(parse("-O2 -flto -c a.c").lto());
        assert!(parse("-flto=auto a.o -o prog").lto());
        assert!(!parse("-flto -fno-lto -c a.c").lto());
        assert!(!parse("-flto-partition=none -c a.c").lto());
    }

    #[test]
    fn stdin_is_split_only_when_compiled_to_an_object() {
        assert!(parse("-x c -c - -o out.o").has_compiled_sources());
        assert!(parse("-x c - -c -o out.o").has_compiled_sources());
        assert!(!parse("-x c - -o prog").has_compiled_sources());
        assert!(!parse("-x assembler -c - -o out.o").has_assembler_sources());
        assert!(!parse("-c - -o out.o").has_compiled_sources());
    }

    #[test]
    fn dependency_flags_are_collected() {
        let cl = parse("-MD -MP -MF dep.d -c foo.c -ofoo.o");
        assert!(cl.deps.side_effect && cl.deps.has_file && !cl.deps.has_target);
        assert_eq!(cl.deps.tokens, ["-MD", "-MP", "-MF", "dep.d"]);
        assert_eq!(cl.output.as_deref(), Some("foo.o"));
        assert!(cl.plain_flags().is_empty());
    }
}
