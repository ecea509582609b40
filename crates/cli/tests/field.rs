//! Field tests: programs shaped like real projects and fixes shaped like
//! real security fixes, each built the way a user would build it, patched
//! live, checked, unpatched and checked again. Tests marked `#[ignore]`
//! reproduce something the tools get wrong today; the reason names it.

mod support;

use support::{
    Case, Flavour, Patient, build_by_patch_make, build_by_recipe, build_id, ctl, patch_and_unpatch,
    run_ok, tool,
};

fn by_recipe(case: &str, flavour: Flavour) {
    let case = Case::load(case);
    let built = build_by_recipe(&case, flavour);
    patch_and_unpatch(&case, &built);
}

fn by_patch_make(case: &str, flavour: Flavour) {
    let case = Case::load(case);
    let built = build_by_patch_make(&case, flavour);
    patch_and_unpatch(&case, &built);
}

/// A bounds check added to a static inline parser helper in a static
/// library, a new constant table next to the old one, and a fix inside a
/// versioned shared library: one run patches the program and the library.
#[test]
fn multi_file_project_patch_make() {
    by_patch_make("field_multi", Flavour::PIE_O2_G);
}

#[test]
fn multi_file_project_recipe() {
    by_recipe("field_multi", Flavour::PIE_O2_G);
}

/// A handler reached through a function-pointer table, running in four
/// threads, gets a new helper function and a new global counter.
#[test]
fn threaded_callback_patch_make() {
    by_patch_make("field_workers", Flavour::PIE_O2_G);
}

#[test]
fn threaded_callback_nopie_recipe() {
    by_recipe("field_workers", Flavour::NOPIE_O2_G);
}

/// A loopback TCP server answers a forked client that never stops
/// talking; any lost or reordered answer prints a line the harness rejects.
#[test]
fn tcp_server_under_load_patch_make() {
    by_patch_make("field_server", Flavour::PIE_O2_G);
}

#[test]
fn tcp_server_under_load_nopie_recipe() {
    by_recipe("field_server", Flavour::NOPIE_O2_G);
}

/// The fix lands in a function inlined into a loop that never returns: the
/// doctor must refuse by name and leave the server answering as before.
#[test]
fn tcp_server_fix_inlined_into_endless_loop_is_refused() {
    let case = Case::load("field_server_inline");
    let built = build_by_patch_make(&case, Flavour::PIE_O2_G);
    let mut patient = Patient::start(&built);
    patient.wait_for(&case.before, &[]);
    let pid = patient.pid_arg();
    let patch = built.patch.to_string_lossy().into_owned();
    let out = ctl(&["patch", "-p", &pid, &patch]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "patch was applied: {stderr}");
    assert!(
        stderr.contains("unsafe") && stderr.contains("`serve`"),
        "refusal does not name the busy function: {stderr}"
    );
    patient.expect_steady(&case.before, 3);
    let info = ctl(&["info", "-p", &pid]);
    assert!(info.status.success());
    assert!(
        !String::from_utf8_lossy(&info.stdout).contains("patch "),
        "info lists a patch after a refused one"
    );
}

/// A C++ member function (std::ostringstream, std::string return, a
/// `.cold` part) replaced live.
#[test]
fn cxx_member_function_patch_make() {
    by_patch_make("field_cxx", Flavour::PIE_O2_G);
}

#[test]
fn cxx_member_function_nopie_recipe() {
    by_recipe("field_cxx", Flavour::NOPIE_O2_G);
}

/// The fix makes a member function throw, and the unpatched caller catches
/// it: the unwinder in the patient must find the patch code's frames
/// (the doctor registers `.kpatch.eh_frame` with the patient's libgcc).
/// Failed ("terminate called after throwing") until c0380a8.
#[test]
fn cxx_exception_from_patched_member_patch_make() {
    by_patch_make("field_cxx_throw", Flavour::PIE_O2_G);
}

/// The same program built without make: the recipe does not depend on
/// where make keeps its objects.
#[test]
fn objdir_removed_by_make_clean_recipe() {
    by_recipe("field_objdir_clean", Flavour::PIE_O2_G);
}

/// `make clean` that runs `rm -rf obj` (objects in a subdirectory) makes
/// libcare-patch-make fail before the patched build: it puts the saved
/// `obj/.kpatch_*.original.s` back without re-creating `obj/` ("cannot
/// restore ...: No such file or directory").
#[test]
fn objdir_removed_by_make_clean_patch_make() {
    by_patch_make("field_objdir_clean", Flavour::PIE_O2_G);
}

/// A plugin loaded with dlopen after start-up; its handler is reached only
/// through a function pointer the host holds.
#[test]
fn dlopened_plugin_patch_make() {
    by_patch_make("field_plugin", Flavour::PIE_O2_G);
}

#[test]
fn dlopened_plugin_nopie_recipe() {
    by_recipe("field_plugin", Flavour::NOPIE_O2_G);
}

/// Runs libcare-ctl, which must succeed.
fn ctl_ok(args: &[&str]) -> String {
    let out = ctl(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "libcare-ctl {}: {text}",
        args.join(" ")
    );
    text
}

/// A package upgrade replaced the program on disk while the old one runs
/// (maps say "(deleted)"; the path now holds something else): the running
/// process is still patched from its own mapped file.
#[test]
fn program_replaced_on_disk_while_running() {
    let case = Case::load("field_workers");
    let built = build_by_patch_make(&case, Flavour::PIE_O2_G);
    let running = built.dir.path().join("workers");
    std::fs::copy(&built.program, &running).unwrap();
    let mut patient = Patient::start_program(&running, &built.lib_dir);
    patient.wait_for(&case.before, &[]);
    std::fs::remove_file(&running).unwrap();
    std::fs::write(&running, "#!/bin/sh\necho upgraded\n").unwrap();

    let pid = patient.pid_arg();
    let patch = built.patch.to_string_lossy().into_owned();
    ctl_ok(&["patch", "-p", &pid, &patch]);
    patient.wait_for(&case.after, &[&case.before]);
    patient.expect_steady(&case.after, 3);
    ctl_ok(&["unpatch", "-p", &pid]);
    patient.wait_for(&case.before, &[&case.after]);
    patient.expect_steady(&case.before, 3);
}

/// Two successive security updates of one function, built with
/// `libcare-patch-make -i 1` and `-i 2` into a storage directory
/// (`<BuildID>/<level>/kpatch.bin`, `latest`): level 1 applies, moving
/// `latest` to 2 replaces it, applying again changes nothing, going back to
/// level 1 is not a downgrade, unpatch brings the original back.
#[test]
fn patch_levels_in_storage() {
    let case = Case::load("field_levels");
    let tmp = tempfile::Builder::new()
        .prefix("lc-field_levels.")
        .tempdir()
        .unwrap();
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    let mut levels = Vec::new();
    for (level, diff) in [("1", "fix.diff"), ("2", "fix2.diff")] {
        let out = tmp.path().join(format!("level{level}"));
        run_ok(
            std::process::Command::new(tool("libcare-patch-make"))
                .args(["--clean", "-i", level, "--patchroot"])
                .arg(&out)
                .arg(diff)
                .current_dir(&proj)
                .env("CFLAGS", "-O2 -g"),
        );
        levels.push(out);
    }
    let program = proj.join("lpmake/usr/bin/quota");
    let id = build_id(&program);
    let store = tmp.path().join("store");
    for (i, from) in levels.iter().enumerate() {
        let dir = store.join(&id).join((i + 1).to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(from.join(format!("{id}.kpatch")), dir.join("kpatch.bin")).unwrap();
    }
    let latest = store.join(&id).join("latest");
    std::os::unix::fs::symlink("1", &latest).unwrap();

    let v0 = "quota(-1, 10) ok=1 quota(10, 10) ok=1";
    let v1 = "quota(-1, 10) ok=0 quota(10, 10) ok=1";
    let v2 = "quota(-1, 10) ok=0 quota(10, 10) ok=0";
    let mut patient = Patient::start_program(&program, &proj.join("lpmake/usr/lib"));
    patient.wait_for(v0, &[]);
    let pid = patient.pid_arg();
    let store_arg = store.to_string_lossy().into_owned();
    ctl_ok(&["patch", "-p", &pid, &store_arg]);
    patient.wait_for(v1, &[v0]);
    patient.expect_steady(v1, 2);

    std::fs::remove_file(&latest).unwrap();
    std::os::unix::fs::symlink("2", &latest).unwrap();
    ctl_ok(&["patch", "-p", &pid, &store_arg]);
    patient.wait_for(v2, &[v1]);
    patient.expect_steady(v2, 2);
    let info = ctl_ok(&["info", "-p", &pid]);
    assert!(info.contains("(level 2)"), "info: {info}");
    assert!(!info.contains("(level 1)"), "level 1 still listed: {info}");

    let again = ctl_ok(&["patch", "-p", &pid, &store_arg]);
    assert!(again.contains("already applied"), "{again}");
    let level1 = levels[0].to_string_lossy().into_owned();
    ctl_ok(&["patch", "-p", &pid, &level1]);
    patient.expect_steady(v2, 3);

    ctl_ok(&["unpatch", "-p", &pid]);
    patient.wait_for(v0, &[v2]);
    patient.expect_steady(v0, 3);
}

/// Two file-static functions share the name `validate`; the fix changes
/// the one in groups.c and the one in users.c keeps answering as before.
#[test]
fn same_named_static_functions_patch_make() {
    by_patch_make("field_samename", Flavour::PIE_O2_G);
}

#[test]
fn same_named_static_functions_recipe() {
    by_recipe("field_samename", Flavour::PIE_O0);
}

/// `-Wl,--gc-sections` in the link: today the patched link collects every
/// `.kpatch.*` section (nothing references them) and libcare-patch-make
/// says "no installed binary has a .kpatch.info section". Either flag the
/// sections SHF_GNU_RETAIN (`"axR"`, gas >= 2.36) in kpatch_gensrc's output
/// or have libcare-cc's patched link append `-Wl,--no-gc-sections`; both
/// were checked by hand to keep the sections.
#[test]
fn gc_sections_link_patch_make() {
    by_patch_make("field_gc_sections", Flavour::PIE_O2_G);
}

/// An LTO build is refused with a one-line reason naming -flto, no
/// patchroot is left and the source tree is as it was.
#[test]
fn lto_build_is_refused() {
    let case = Case::load("field_lto");
    let tmp = tempfile::Builder::new()
        .prefix("lc-field_lto.")
        .tempdir()
        .unwrap();
    let proj = tmp.path().join("proj");
    case.copy_to(&proj);
    let source = std::fs::read(proj.join("greet.c")).unwrap();
    let out = std::process::Command::new(tool("libcare-patch-make"))
        .args(["--clean", "fix.diff"])
        .current_dir(&proj)
        .env("CFLAGS", "-O2 -g")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an LTO build was accepted");
    assert!(
        text.contains("-flto"),
        "the refusal does not name -flto: {text}"
    );
    assert!(!proj.join("patchroot").exists(), "patchroot left behind");
    assert_eq!(std::fs::read(proj.join("greet.c")).unwrap(), source);
}

/// A dense switch (table in .rodata) whose fix adds an initialised global
/// and an initialised static local: the new variables start from their
/// initial values in the running process.
#[test]
fn switch_table_with_new_initialised_variables_patch_make() {
    by_patch_make("field_switch", Flavour::PIE_O2_G);
}

#[test]
fn switch_table_with_new_initialised_variables_nopie_recipe() {
    by_recipe("field_switch", Flavour::NOPIE_O2_G);
}

/// A server blocked in `epoll_wait` that treats any failure as fatal. The
/// ptrace stop makes epoll_wait return EINTR (the kernel never restarts it;
/// `strace -p` does the same), and the server exits after the patch. The
/// doctor stopped the thread itself and could rewind the call before
/// resuming it (orig_rax is epoll_wait/poll/select and rax is -EINTR with
/// no signal delivered: set rip back over the 2-byte `syscall` and rax to
/// orig_rax), so the patient never notices.
#[test]
fn epoll_server_patch_make() {
    by_patch_make("field_epoll", Flavour::PIE_O2_G);
}

/// A statically linked program. `kpatch_strip --strip` keeps the
/// `.rela.tdata` that `-Wl,-q` puts between `.tdata` and `.tbss` (as
/// NOBITS, with SHF_INFO_LINK), and the file has no program headers, so
/// `strip --strip-unneeded` rebuilds the segments and refuses: "TLS
/// sections are not adjacent: TLS: .tdata non-TLS: .rela.tdata TLS:
/// .tbss" and "[.kpatch.text]: bad value".
#[test]
fn static_executable_recipe() {
    by_recipe("field_static", Flavour::NOPIE_O2_G);
}

#[test]
fn static_executable_patch_make() {
    by_patch_make("field_static", Flavour::NOPIE_O2_G);
}

/// A hidden function in a `-fvisibility=hidden -fno-plt -z now` library.
#[test]
fn hidden_function_in_noplt_library_patch_make() {
    by_patch_make("field_libvis", Flavour::PIE_O2_G);
}

#[test]
fn hidden_function_in_noplt_library_nopie_recipe() {
    by_recipe("field_libvis", Flavour::NOPIE_O2_G);
}

/// A virtual member function (called through the vtable of an object made
/// before the patch) and a function template changed in a header: at -O0
/// the template is its own COMDAT function, at -O2 it is inlined.
#[test]
fn cxx_virtual_and_template_o0_patch_make() {
    by_patch_make("field_cxx_virtual", Flavour::PIE_O0);
}

#[test]
fn cxx_virtual_and_template_o2_patch_make() {
    by_patch_make("field_cxx_virtual", Flavour::PIE_O2_G);
}

#[test]
fn cxx_virtual_and_template_nopie_o0_recipe() {
    by_recipe("field_cxx_virtual", Flavour::NOPIE_O0);
}

/// The same server blocked in `poll` instead: the kernel restarts poll
/// after the ptrace stop (restart_syscall), which the doctor must not
/// disturb; the server never sees EINTR.
#[test]
fn poll_server_patch_make() {
    by_patch_make("field_poll", Flavour::PIE_O2_G);
}

/// Copies a case directory with its subdirectories (the harness copies
/// flat cases only).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A recursive make project (top Makefile runs `$(MAKE) -C lib` and
/// `-C src`): CC reaches the sub-makes, the fix in lib/ reaches the
/// program through the static library.
#[test]
fn recursive_make_project_patch_make() {
    let case = Case::load("field_recursive");
    let tmp = tempfile::Builder::new()
        .prefix("lc-field_recursive.")
        .tempdir()
        .unwrap();
    let proj = tmp.path().join("proj");
    copy_tree(&case.dir, &proj);
    run_ok(
        std::process::Command::new(tool("libcare-patch-make"))
            .args(["--clean", "fix.diff"])
            .current_dir(&proj)
            .env("CFLAGS", "-O2 -g"),
    );
    let built = support::Built {
        program: proj.join("lpmake/usr/bin/app"),
        lib_dir: proj.join("lpmake/usr/lib"),
        patch: proj.join("patchroot"),
        targets: Vec::new(),
        log: String::new(),
        dir: tmp,
    };
    patch_and_unpatch(&case, &built);
}

/// One value of a `static const` table changes. kpatch_gensrc refuses:
/// "variable `max_len` changed (initial value) ... list the name with
/// --ignore-changes", which a libcare-patch-make user cannot pass. A
/// read-only object has no state to keep, so the patch could carry the new
/// table in `.kpatch.rodata` and count every function that reads it as
/// changed (their text is identical, only the data they name differs).
#[test]
fn changed_const_table_patch_make() {
    by_patch_make("field_const_table", Flavour::PIE_O2_G);
}

/// The program started through the dynamic loader
/// (`ld-linux-x86-64.so.2 ./workers`): /proc/PID/exe is the loader and the
/// program is an ordinary mapping, still found by its BuildID.
#[test]
fn program_started_through_the_loader() {
    use std::os::unix::fs::PermissionsExt;
    let case = Case::load("field_workers");
    let built = build_by_patch_make(&case, Flavour::PIE_O2_G);
    let script = built.dir.path().join("via-loader");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec /lib64/ld-linux-x86-64.so.2 {}\n",
            built.program.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut patient = Patient::start_program(&script, &built.lib_dir);
    patient.wait_for(&case.before, &[]);
    let exe = std::fs::read_link(format!("/proc/{}/exe", patient.pid())).unwrap();
    assert!(
        exe.to_string_lossy().contains("ld-linux"),
        "not started through the loader: {}",
        exe.display()
    );
    let pid = patient.pid_arg();
    let patch = built.patch.to_string_lossy().into_owned();
    ctl_ok(&["patch", "-p", &pid, &patch]);
    patient.wait_for(&case.after, &[&case.before]);
    patient.expect_steady(&case.after, 3);
    ctl_ok(&["unpatch", "-p", &pid]);
    patient.wait_for(&case.before, &[&case.after]);
    patient.expect_steady(&case.before, 3);
}

/// Kills a process this test made its patient fork, by PID, when dropped.
struct ForkedChild(i32);

impl Drop for ForkedChild {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

/// A prefork server: a worker forked after the patch runs the patched
/// code and lists the patch in `info`; unpatching the parent leaves the
/// worker patched until it is unpatched itself.
#[test]
fn worker_forked_after_patch_inherits_it() {
    let case = Case::load("field_prefork");
    let built = build_by_patch_make(&case, Flavour::PIE_O2_G);
    let mut patient = Patient::start(&built);
    let (p1, p2) = ("parent worker v1", "parent worker v2");
    let (c1, c2) = ("child worker v1", "child worker v2");
    patient.wait_for(p1, &[]);
    let pid = patient.pid_arg();
    let patch = built.patch.to_string_lossy().into_owned();
    ctl_ok(&["patch", "-p", &pid, &patch]);
    patient.wait_for(p2, &[p1]);

    run_ok(std::process::Command::new("kill").args(["-USR1", &pid]));
    patient.wait_for(c2, &[p2]);
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let child: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let _guard = ForkedChild(child);
    let child_arg = child.to_string();
    let info = ctl_ok(&["info", "-p", &child_arg]);
    assert!(info.contains("banner"), "the worker lists no patch: {info}");

    ctl_ok(&["unpatch", "-p", &pid]);
    patient.wait_for(p1, &[p2, c2]);
    patient.wait_for(c2, &[p1]);
    ctl_ok(&["unpatch", "-p", &child_arg]);
    patient.wait_for(c1, &[p1, c2]);
    for _ in 0..4 {
        patient.wait_for(p1, &[c1]);
    }
}

/// Threads are created and end all the time (one per request); five
/// patch/unpatch cycles each switch every new thread's answer.
///
/// With HEAD at c0380a8 about one patch or unpatch in eight is refused: "unsafe to
/// switch: thread N is in `handle` (its stack cannot be walked: frame 0: no
/// FDE in libc.so.6's .eh_frame covers pc ...)". The pc is clone3+25, just
/// after the `syscall`: glibc gives the instructions between the syscall
/// and the child/parent split no FDE (its FDEs cover clone3+0..+23 and
/// +33..), so a main thread stopped while creating a thread cannot be
/// walked. The build of 59e5f03 passed 60 of 60 here. The message also
/// names `handle`, which the thread is not in. Worse, about one command in
/// 140 hangs for ever in `Held::catch_all_threads` -> `wait_interrupted`
/// (waitpid on the main thread, which sits in pthread_join's futex while
/// the new thread waits in a ptrace stop: the patient is frozen). The
/// kernel clears a pending PTRACE_INTERRUPT at any other ptrace stop (here
/// PTRACE_EVENT_CLONE from TRACECLONE), so `wait_interrupted` must send the
/// interrupt again after resuming from an event or signal stop. SIGTERM
/// does not end the hung libcare-ctl (termination is deferred), only SIGKILL.
#[test]
fn threads_created_while_patching_five_cycles() {
    let case = Case::load("field_spawner");
    let built = build_by_patch_make(&case, Flavour::PIE_O2_G);
    let mut patient = Patient::start(&built);
    let (before, after) = (case.before.as_str(), case.after.as_str());
    patient.wait_for(before, &[]);
    let pid = patient.pid_arg();
    let patch = built.patch.to_string_lossy().into_owned();
    for _ in 0..5 {
        ctl_ok(&["patch", "-p", &pid, &patch]);
        patient.wait_for(after, &[before]);
        patient.expect_steady(after, 2);
        ctl_ok(&["unpatch", "-p", &pid]);
        patient.wait_for(before, &[after]);
        patient.expect_steady(before, 2);
    }
}
