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
        stdout.contains(&format!("plugin-api (app):  {HOST_INTERFACE}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("plugin-api (host): {HOST_INTERFACE}")),
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
