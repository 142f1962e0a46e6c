//! Apps in other languages, built for a test on first use: C and C++ with
//! the system's compilers, Go with `go build -buildmode=c-shared`, all
//! against `plugin-api/c/host_app.h`, into `target/c-apps/`.
//!
//! A missing C compiler fails the test (Rust itself links with `cc`); a
//! missing C++ or Go toolchain is a skip, with the reason, for the caller to
//! print.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{repo_root, BuildOnce};

/// A language a foreign app is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// C11, with `cc`.
    C,
    /// C++17, with `c++`.
    Cxx,
    /// Go, with `go` (a folder with a `go.mod`).
    Go,
}

/// Where foreign apps are built.
pub fn c_apps_dir() -> PathBuf {
    repo_root().join("target").join("c-apps")
}

/// The header's folder, for `-I`.
pub fn header_dir() -> PathBuf {
    repo_root().join("plugin-api").join("c")
}

/// Builds `source` (a file, or for Go a folder; relative to the repo root)
/// into `target/c-apps/lib<name>.so` with `defines` (`-D` for C and C++),
/// once per test binary. `Err` says why it was skipped (no such
/// toolchain); a failed build panics.
pub fn foreign_lib(language: Language, source: &str, name: &str, defines: &[&str]) -> Result<PathBuf, String> {
    static BUILT: BuildOnce<Result<PathBuf, String>> = BuildOnce::new();
    BUILT.get(name, || build(language, &repo_root().join(source), name, defines))
}

/// [`foreign_lib`] for C, which is never skipped.
pub fn c_lib(source: &str, name: &str, defines: &[&str]) -> PathBuf {
    foreign_lib(Language::C, source, name, defines).unwrap_or_else(|why| panic!("{why}"))
}

fn build(language: Language, source: &Path, name: &str, defines: &[&str]) -> Result<PathBuf, String> {
    let out_dir = c_apps_dir();
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let output = out_dir.join(format!("lib{name}.so"));
    let (tool, mut command) = match language {
        Language::C | Language::Cxx => {
            let (tool, standard) = match language {
                Language::C => ("cc", "-std=c11"),
                _ => ("c++", "-std=c++17"),
            };
            let mut command = Command::new(tool);
            command
                .args([standard, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
                .arg(header_dir())
                .args(defines.iter().map(|d| format!("-D{d}")))
                .arg(source)
                .arg("-o")
                .arg(&output);
            (tool, command)
        }
        Language::Go => {
            let mut command = Command::new("go");
            command
                .args(["build", "-buildmode=c-shared", "-o"])
                .arg(&output)
                .arg(".")
                .current_dir(source)
                .env("CGO_ENABLED", "1")
                .env("CGO_CFLAGS", format!("-O2 -I{}", header_dir().display()))
                .env("GOFLAGS", "-mod=mod")
                .env("GOTOOLCHAIN", "local");
            ("go", command)
        }
    };
    let started = std::time::Instant::now();
    let result = command.stdin(Stdio::null()).output();
    let result = match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && language != Language::C => {
            return Err(format!(
                "skipped {name}: no `{tool}` on this machine (host/tests/install-deps installs it where it can)"
            ));
        }
        Err(e) => panic!("cannot run `{tool}` to build {}: {e}", source.display()),
        Ok(result) => result,
    };
    assert!(
        result.status.success(),
        "building {} with `{tool}` failed ({}):\n{}",
        source.display(),
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    eprintln!("built {} in {:.1} s", output.display(), started.elapsed().as_secs_f64());
    Ok(output)
}
