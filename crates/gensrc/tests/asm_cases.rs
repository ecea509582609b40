//! Hand-written assembly for the cases gcc rarely or never emits.

use gensrc::Options;

fn func(name: &str, body: &str) -> String {
    format!(
        "\t.text\n\t.globl\t{name}\n\t.type\t{name}, @function\n{name}:\n\t.cfi_startproc\n{body}\t.cfi_endproc\n\t.size\t{name}, .-{name}\n"
    )
}

#[test]
fn lcomm_variable_becomes_zeroed_patch_data() {
    let o = func("f", "\tmovl\t$1, %eax\n\tret\n");
    let p = format!(
        "{}\t.lcomm\tfresh,16,8\n",
        func("f", "\taddl\t$1, fresh(%rip)\n\tmovl\t$1, %eax\n\tret\n")
    );
    let out = gensrc::diff("o.s", &o, "p.s", &p, &Options::default()).unwrap();
    assert_eq!(out.report.new_variables, ["fresh"]);
    let part = &out.text[out.text.find("kpatch begin").unwrap()..];
    let at = part.find("\nfresh:").expect("defined");
    assert!(part[..at].contains(".balign\t8"), "{part}");
    assert!(part[at..].starts_with("\nfresh:\n\t.zero\t16"), "{part}");
    // .lcomm is local: no .globl for it.
    assert!(!part.contains(".globl\tfresh"), "{part}");
}

#[test]
fn unknown_directives_are_carried_through() {
    let o = format!(
        "\t.my_vendor_thing 1, 2\n{}",
        func("f", "\t.weird_marker foo\n\tmovl\t$1, %eax\n\tret\n")
    );
    let p = format!(
        "\t.my_vendor_thing 1, 2\n{}",
        func("f", "\t.weird_marker foo\n\tmovl\t$2, %eax\n\tret\n")
    );
    let out = gensrc::diff("o.s", &o, "p.s", &p, &Options::default()).unwrap();
    assert!(out.text.starts_with("\t.my_vendor_thing 1, 2\n"));
    let part = &out.text[out.text.find("kpatch begin").unwrap()..];
    assert!(part.contains("\t.weird_marker\tfoo\n"), "{part}");
    assert!(part.contains("movl\t$2, %eax"), "{part}");
}

#[test]
fn refusals_name_block_lines_and_difference() {
    let var = |v: &str| {
        format!("\t.data\n\t.type\tcounter, @object\n\t.size\tcounter, 4\ncounter:\n\t.long\t{v}\n")
    };
    let o = format!("{}{}", func("f", "\tret\n"), var("1"));
    let p = format!("{}{}", func("f", "\tret\n"), var("2"));
    let e = gensrc::diff("o.s", &o, "p.s", &p, &Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("`counter`")
            && e.contains("initial value")
            && e.contains("original line 13")
            && e.contains("patched line 13")
            && e.contains("--ignore-changes"),
        "{e}"
    );

    // Every changed variable is named, not just the first.
    let two = |a: &str, b: &str| {
        format!(
            "{}\t.data\n\t.type\tfirst, @object\n\t.size\tfirst, 4\nfirst:\n\t.long\t{a}\n\t.type\tsecond, @object\n\t.size\tsecond, 4\nsecond:\n\t.long\t{b}\n",
            func("f", "\tret\n")
        )
    };
    let e = gensrc::diff(
        "o.s",
        &two("1", "2"),
        "p.s",
        &two("3", "4"),
        &Options::default(),
    )
    .err()
    .unwrap();
    let gensrc::Error::VariablesChanged(list) = &e else {
        panic!("{e}");
    };
    let names: Vec<_> = list.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["first", "second"]);
    assert!(e.to_string().contains("`second`"));

    // A function that became a variable.
    let p = format!(
        "{}\t.data\n\t.type\tg, @object\n\t.size\tg, 4\ng:\n\t.long 1\n",
        func("f", "\tret\n")
    );
    let o = format!("{}{}", func("f", "\tret\n"), func("g", "\tret\n"));
    let e = gensrc::diff("o.s", &o, "p.s", &p, &Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("`g`") && e.contains("original line") && e.contains("became a variable"),
        "{e}"
    );
}

#[test]
fn string_constant_change_copies_only_the_new_constant() {
    let rodata = |s: &str| {
        format!(
            "\t.section\t.rodata.str1.1,\"aMS\",@progbits,1\n.LC0:\n\t.string\t\"same\"\n.LC1:\n\t.string\t\"{s}\"\n"
        )
    };
    let body = "\tleaq\t.LC0(%rip), %rdi\n\tleaq\t.LC1(%rip), %rsi\n\tret\n";
    let o = format!("{}{}", rodata("old"), func("f", body));
    let p = format!("{}{}", rodata("new"), func("f", body));
    let out = gensrc::diff("o.s", &o, "p.s", &p, &Options::default()).unwrap();
    assert_eq!(out.report.changed, ["f"]);
    let d = &out.report.first_differences[0];
    assert_eq!(
        (d.function.as_str(), d.orig_line, d.patched_line),
        ("f", 12, 12)
    );
    assert!(
        out.report
            .to_text()
            .contains("changed functions: f (lines 12/12)")
    );
    let part = &out.text[out.text.find("kpatch begin").unwrap()..];
    // The unchanged constant is shared with the original, the new one copied.
    assert!(part.contains("leaq\t.LC0(%rip), %rdi"), "{part}");
    assert!(part.contains("leaq\t.LC1.kpatch(%rip), %rsi"), "{part}");
    assert!(part.contains(".LC1.kpatch:\n\t.string\t\"new\""), "{part}");
    assert!(!part.contains(".LC0.kpatch"), "{part}");
}

#[test]
fn force_global_makes_copies_of_static_functions_global() {
    let stat = |v: &str| {
        format!(
            "\t.text\n\t.type\thelper, @function\nhelper:\n\tmovl\t${v}, %eax\n\tret\n\t.size\thelper, .-helper\n"
        )
    };
    let (o, p) = (stat("1"), stat("2"));
    let out = gensrc::diff("o.s", &o, "p.s", &p, &Options::default()).unwrap();
    assert!(!out.text.contains(".globl\thelper.kpatch"), "{}", out.text);
    let opts = Options {
        force_global: true,
        ..Options::default()
    };
    let out = gensrc::diff("o.s", &o, "p.s", &p, &opts).unwrap();
    assert!(out.text.contains(".globl\thelper.kpatch"), "{}", out.text);
}

#[test]
fn identical_inputs_are_still_checked() {
    let e = gensrc::diff(
        "a.s",
        "\tnop\n\t\"x\n",
        "b.s",
        "\tnop\n\t\"x\n",
        &Options::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.starts_with("a.s:2:"), "{e}");
}

#[test]
fn top_level_code_is_reported_not_dropped_silently() {
    let o = func("f", "\tret\n");
    let p = format!("{}\t.text\nstray:\n\tnop\n\tret\n", func("f", "\tret\n"));
    let out = gensrc::diff("o.s", &o, "p.s", &p, &Options::default()).unwrap();
    assert_eq!(out.report.not_patched.len(), 2, "{:?}", out.report);
    assert!(out.report.not_patched[0].contains("top-level code `nop"));
    assert!(out.report.to_text().contains("left out, cannot be patched"));
}

/// gcc -fPIC shares constant tails with `.set .LC36,.LC205+8`; the alias
/// numbers move with every edit, so they must be followed, not compared or
/// referred to by number (the original's `.LC6` may be another constant).
#[test]
fn local_aliases_are_followed_not_matched_by_number() {
    let rodata = |first: &str, n: u32| {
        format!(
            "\t.section\t.rodata.cst16,\"aM\",@progbits,16\n\t.align 16\n.LC{n}:\n\t.long\t1\n\t.long\t2\n\t.long\t{first}\n\t.long\t4\n"
        )
    };
    let use_alias = |alias: &str, v: &str| {
        func(
            "f",
            &format!("\tmovl\t{alias}(%rip), %eax\n\taddl\t${v}, %eax\n\tret\n"),
        )
    };
    // Original: .LC5 is the third word of .LC3. Patched: a new constant
    // .LC3 comes first, the same table is .LC4 and the alias is .LC6.
    let o = format!(
        "{}{}\t.set\t.LC5,.LC3+8\n",
        rodata("3", 3),
        use_alias(".LC5", "1")
    );
    let same = format!(
        "{}{}{}\t.set\t.LC6,.LC4+8\n\t.set\t.LC5,.LC3+4\n",
        rodata("9", 3),
        rodata("3", 4),
        use_alias(".LC6", "1")
    );
    let out = gensrc::diff("o.s", &o, "p.s", &same, &Options::default()).unwrap();
    assert!(out.report.changed.is_empty(), "{:?}", out.report);
    assert!(out.report.not_patched.is_empty(), "{:?}", out.report);

    let changed = same.replace("addl\t$1", "addl\t$2");
    let out = gensrc::diff("o.s", &o, "p.s", &changed, &Options::default()).unwrap();
    assert_eq!(out.report.changed, ["f"]);
    let part = &out.text[out.text.find("kpatch begin").unwrap()..];
    assert!(part.contains("movl\t.LC6.kpatch(%rip), %eax"), "{part}");
    assert!(part.contains(".set\t.LC6.kpatch, .LC3+8"), "{part}");
}
