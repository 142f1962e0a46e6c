//! `host check LIB:SYMBOL` refuses every kind of bad app with exit code 2 and
//! one line on stderr that names the problem, and passes a good one.
//!
//! Every load runs in a child `host` process, so a fixture that crashes
//! cannot take the test runner down. The ABI fixtures live in `fixtures/`,
//! each its own cargo workspace, built on first use (see `common`).

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

/// Runs `host check` on `spec` (plus `extra` arguments), RUST_LOG unset.
fn check(spec: &str, extra: &[&str]) -> Output {
    let mut args = vec!["check"];
    args.extend_from_slice(extra);
    args.push(spec);
    run_host(&args, &[], b"")
}

/// Asserts a refusal: exit code 2, nothing on stdout, and exactly one line
/// on stderr that contains every one of `needles`. Returns that line.
#[track_caller]
fn assert_refused(output: &Output, needles: &[&str]) -> String {
    assert_eq!(output.status.code(), Some(2), "{}", describe(output));
    assert!(
        output.stdout.is_empty(),
        "a refusal prints nothing on stdout\n{}",
        describe(output)
    );
    let stderr = stderr_text(output);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "a refusal is one line on stderr\n{}", describe(output));
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    for needle in needles {
        assert!(line.contains(needle), "expected {needle:?} in the refusal:\n{line}");
    }
    line.to_owned()
}

#[test]
fn a_good_plugin_passes_check() {
    let library = plugin_lib("ctime");
    let output = check(&app_spec(&library, "application"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = stdout_text(&output);
    assert!(stdout.starts_with("ok: "), "{stdout}");
    assert!(
        stdout.contains(&format!("interface (app):   plugin-api {HOST_INTERFACE}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "interfaces (host): plugin-api {HOST_INTERFACE}, C interface 1.0"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&library.display().to_string()), "{stdout}");
    assert!(output.stderr.is_empty(), "{}", describe(&output));
}

#[test]
fn every_demo_plugin_passes_check() {
    for (name, symbol) in [
        ("ctime", "application"),
        ("hello", "application"),
        ("mini_frame", "application"),
        ("static_app", "run"),
        ("echo", "application"),
    ] {
        let output = check(&app_spec(&plugin_lib(name), symbol), &[]);
        assert_eq!(output.status.code(), Some(0), "{name}:{symbol}\n{}", describe(&output));
    }
}

#[test]
fn layout_change_is_refused_as_a_layout_mismatch() {
    let library = fixture_lib("layout-change");
    let line = assert_refused(
        &check(&app_spec(&library, "application"), &[]),
        &[
            "refusing app",
            &library.display().to_string(),
            "interface types differ",
            "RUST_LOG=debug",
        ],
    );
    assert!(line.len() < 400, "the one line stays short: {line}");
}

#[test]
fn layout_change_report_is_logged_at_debug() {
    let library = fixture_lib("layout-change");
    let output = run_host(
        &["check", &app_spec(&library, "application")],
        &[("RUST_LOG", "debug")],
        b"",
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = stderr_text(&output);
    assert!(stderr.contains("abi_stable report for"), "{stderr}");
    // abi_stable's own words, from deep inside its report.
    for needle in ["Type Layout", "incompatible type size", "RawEnviron"] {
        assert!(
            stderr.contains(needle),
            "expected {needle:?} in the debug report:\n{stderr}"
        );
    }
    assert!(stderr.lines().count() > 20, "the full report, not a summary:\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("interface types differ"),
        "{last}"
    );
}

#[test]
fn next_interface_version_is_refused_naming_both_versions() {
    let library = fixture_lib("next-interface");
    assert_refused(
        &check(&app_spec(&library, "application"), &[]),
        &[&format!(
            "built against plugin-api {NEXT_INTERFACE}, this host speaks plugin-api {HOST_INTERFACE}"
        )],
    );
}

#[test]
fn a_newer_minor_interface_is_refused_naming_both_versions() {
    let library = fixture_lib("next-minor");
    assert_refused(
        &check(&app_spec(&library, "application"), &[]),
        &[&format!(
            "built against plugin-api {NEXT_MINOR}, this host speaks plugin-api {HOST_INTERFACE}"
        )],
    );
}

#[test]
fn a_plain_c_function_is_not_an_abi_stable_header() {
    let library = fixture_lib("plain-c");
    assert_refused(
        &check(&app_spec(&library, "application"), &[]),
        &["not an abi_stable header", "export_app!"],
    );
}

#[test]
fn an_undefined_symbol_is_refused_at_load() {
    let library = fixture_lib("undefined-symbol");
    assert_refused(
        &check(&app_spec(&library, "application"), &[]),
        &["undefined symbol", "host_fixture_symbol_defined_nowhere"],
    );
}

#[test]
fn a_file_that_is_not_elf_is_refused() {
    let dir = scratch_dir("not-elf");
    let junk = dir.join("libjunk.so");
    std::fs::write(&junk, "this is a text file, not a shared library\n").expect("write junk");
    assert_refused(
        &check(&app_spec(&junk, "application"), &[]),
        &["not a shared library", "libjunk.so", "cdylib"],
    );
    // Found by a bare name on --plugin-dir, it is refused the same way.
    let dir_arg = dir.display().to_string();
    assert_refused(
        &check("junk:application", &["--plugin-dir", &dir_arg]),
        &["not a shared library", &junk.display().to_string()],
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_file_is_refused() {
    let missing = scratch_dir("missing").join("libnosuch.so");
    assert_refused(
        &check(&app_spec(&missing, "application"), &[]),
        &["library not found", &missing.display().to_string()],
    );
}

#[test]
fn a_missing_symbol_lists_the_apps_the_library_exports() {
    let library = plugin_lib("ctime");
    assert_refused(
        &check(&app_spec(&library, "nosuch"), &[]),
        &["no symbol 'nosuch'", "it exports: application"],
    );
    let library = plugin_lib("static_app");
    assert_refused(
        &check(&app_spec(&library, "application"), &[]),
        &["no symbol 'application'", "it exports: run"],
    );
}

#[test]
fn bare_names_are_resolved_through_plugin_dir() {
    // A good plugin, by name.
    let build = build_dir().display().to_string();
    let output = check("hello:application", &["--plugin-dir", &build]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        stdout_text(&output).contains(&plugin_lib("hello").display().to_string()),
        "{}",
        describe(&output)
    );

    // A refused fixture, by name: the message names the file found.
    let library = fixture_lib("plain-c");
    let fixtures = library.parent().expect("a folder").display().to_string();
    assert_refused(
        &check(
            "fixture_plain_c:application",
            &["--plugin-dir", "/nonexistent", "--plugin-dir", &fixtures],
        ),
        &["not an abi_stable header", &library.display().to_string()],
    );

    // Not in any of the folders: all of them are listed.
    assert_refused(
        &check(
            "nosuch:application",
            &["--plugin-dir", "/nonexistent/a", "--plugin-dir", &build],
        ),
        &[
            "library not found",
            "/nonexistent/a/libnosuch.so",
            &Path::new(&build).join("libnosuch.so").display().to_string(),
            "--plugin-dir",
        ],
    );
}

#[test]
fn a_spec_without_symbol_is_a_usage_error() {
    let output = run_host(&["check", "ctime"], &[], b"");
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = stderr_text(&output);
    assert!(stderr.contains("names no symbol"), "{stderr}");
    assert!(stderr.contains("e.g."), "{stderr}");
    assert!(output.stdout.is_empty(), "{}", describe(&output));
}

#[test]
fn malformed_specs_are_usage_errors() {
    for bad in [":application", "ctime:", "ctime:app-lication"] {
        let output = run_host(&["check", bad], &[], b"");
        assert_eq!(output.status.code(), Some(2), "{bad}\n{}", describe(&output));
        assert!(stderr_text(&output).contains("e.g."), "{bad}\n{}", describe(&output));
    }
}

/// A fresh, empty folder for one test.
fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("host-refusals-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// The C version fixture built with `defines` (see `fixtures/c/version.c`).
fn c_version_fixture(name: &str, defines: &[&str]) -> std::path::PathBuf {
    common::foreign::c_lib("fixtures/c/version.c", name, defines)
}

#[test]
fn a_c_app_passes_check_and_names_its_interface() {
    let library = c_version_fixture("version_1_0", &[]);
    let output = check(&app_spec(&library, "application"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = stdout_text(&output);
    assert!(stdout.contains("interface (app):   C interface 1.0"), "{stdout}");
}

#[test]
fn c_apps_of_a_newer_minor_or_another_major_are_refused_in_one_line() {
    for (name, defines, version) in [
        ("version_1_1", ["FIXTURE_MAJOR=1", "FIXTURE_MINOR=1"], "1.1"),
        ("version_2_0", ["FIXTURE_MAJOR=2", "FIXTURE_MINOR=0"], "2.0"),
    ] {
        let library = c_version_fixture(name, &defines);
        let spec = app_spec(&library, "application");
        let needles =
            [&format!("built against C interface {version} (host_app.h), this host speaks C interface 1.0")[..]];
        assert_refused(&check(&spec, &[]), &needles);
        // Serving it is refused the same way, before any worker starts.
        assert_refused(&run_host(&[&spec, "--bind", "127.0.0.1:0"], &[], b""), &needles);
    }
}

#[test]
fn broken_c_descriptors_and_failing_inits_are_refused_in_one_line() {
    for (name, define, needles) in [
        (
            "version_none",
            "FIXTURE_NO_VERSION",
            &["no host_app_interface_version symbol", "HOST_APP_INTERFACE()"][..],
        ),
        (
            "version_small",
            "FIXTURE_SMALL_DESCRIPTOR",
            &["descriptor is invalid", "says 8 bytes, less than C interface 1.0's 24"][..],
        ),
        (
            "version_init",
            "FIXTURE_INIT_FAILS",
            &["the app failed to start: its init returned 3"][..],
        ),
    ] {
        let library = c_version_fixture(name, &[define]);
        let output = check(&app_spec(&library, "application"), &[]);
        // The app's own log line (through host_app_services.log) may
        // precede the refusal on stderr.
        let stderr = stderr_text(&output);
        let refusal = stderr.lines().last().unwrap_or_default();
        assert_eq!(output.status.code(), Some(2), "{name}: {}", describe(&output));
        assert!(refusal.starts_with("error: "), "{name}: {stderr}");
        for needle in needles {
            assert!(refusal.contains(needle), "{name}: expected {needle:?} in {refusal}");
        }
    }
}

#[test]
fn a_missing_symbol_lists_the_c_apps_too() {
    let library = fixture_lib("both-kinds");
    assert_refused(
        &check(&app_spec(&library, "nosuch"), &[]),
        &["no symbol 'nosuch'", "it exports: c_app, rust_app"],
    );
}
