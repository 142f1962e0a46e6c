//! The harness shared by the host's integration tests: where things are,
//! the demo plugins, the refusal fixtures (built on first use), and running
//! `host` as a child process with a timeout.
//!
//! `make test` builds the workspace, then runs the tests, in the
//! `test-release` profile (release without LTO): the
//! tests load the demo plugins from the folder of the `host` binary under
//! test.
#![allow(dead_code)] // not every test file uses every helper

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub mod certs;
pub mod fleet;
pub mod foreign;
pub mod server;
pub mod vectors;
pub mod ws;

/// How long one `host` run may take before it is killed and the test fails.
pub const HOST_TIMEOUT: Duration = Duration::from_secs(30);

/// The workspace root (the folder of the root `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent folder")
        .to_path_buf()
}

/// The `host` binary under test.
pub fn host_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_host"))
}

/// The folder of the `host` binary, where the workspace's plugins are built.
pub fn build_dir() -> PathBuf {
    host_bin()
        .parent()
        .expect("the host binary is in a folder")
        .to_path_buf()
}

/// The demo plugin `name` (`ctime`, `hello`, …): `lib<name>.so` beside the
/// host binary.
pub fn plugin_lib(name: &str) -> PathBuf {
    let path = build_dir().join(format!("lib{name}.so"));
    assert!(
        path.is_file(),
        "{} is missing: run `make test`, or build the workspace in the profile the tests run in first (`cargo build \
         --profile test-release --workspace` before `cargo test --profile test-release`; `cargo build --workspace` for a debug test \
         run): the tests load the demo plugins from the host binary's folder",
        path.display()
    );
    path
}

/// `LIB:SYMBOL` for a library path.
pub fn app_spec(library: &Path, symbol: &str) -> String {
    format!("{}:{symbol}", library.display())
}

/// Where the refusal fixtures are built: one target folder shared by all of
/// them (they share abi_stable's build), apart from the main workspace's.
pub fn fixtures_target_dir() -> PathBuf {
    repo_root().join("target").join("fixtures")
}

/// The refusal fixture `name` (a folder of `fixtures/`, e.g. `plain-c`),
/// built on first use in this test binary. Each fixture is its own cargo
/// workspace, so its features never leak into the host's build.
pub fn fixture_lib(name: &str) -> PathBuf {
    static BUILT: BuildOnce<PathBuf> = BuildOnce::new();
    BUILT.get(name, || build_fixture(name))
}

/// Things built once per test binary, by name (fixtures, foreign apps).
pub struct BuildOnce<T>(OnceLock<Mutex<HashMap<String, Arc<OnceLock<T>>>>>);

impl<T: Clone> BuildOnce<T> {
    /// Nothing built yet.
    pub const fn new() -> Self {
        BuildOnce(OnceLock::new())
    }

    /// `name`, built by `build` on first use.
    pub fn get(&self, name: &str, build: impl FnOnce() -> T) -> T {
        let cell = self
            .0
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone();
        // Outside the map's lock: different names may build at once (cargo's
        // own lock on a target folder orders them). A failed build panics
        // and leaves the cell empty, so the next test retries and reports
        // it too.
        cell.get_or_init(build).clone()
    }
}

fn build_fixture(name: &str) -> PathBuf {
    let dir = repo_root().join("fixtures").join(name);
    let manifest = dir.join("Cargo.toml");
    assert!(manifest.is_file(), "no fixture {}", manifest.display());
    match name {
        "next-interface" => stage_interface(NEXT_INTERFACE),
        "next-minor" => stage_interface(NEXT_MINOR),
        _ => {}
    }
    let target_dir = fixtures_target_dir();
    let started = Instant::now();
    cargo_build(&manifest, &[]);
    eprintln!("built fixture {name} in {:.1} s", started.elapsed().as_secs_f64());
    let library = target_dir
        .join("release")
        .join(format!("libfixture_{}.so", name.replace('-', "_")));
    assert!(
        library.is_file(),
        "fixture {name} built, but {} is missing",
        library.display()
    );
    library
}

/// `cargo build --release` of a fixture workspace into `target/fixtures`,
/// with `env` set; panics with cargo's output if it fails.
fn cargo_build(manifest: &Path, env: &[(&str, &str)]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["build", "--release", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(fixtures_target_dir())
        .current_dir(manifest.parent().expect("a manifest has a folder"))
        .envs(env.iter().copied())
        // Whatever the outer cargo says about targets must not steer this one.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build {}: {e}", manifest.display()));
    assert!(
        output.status.success(),
        "building {} ({env:?}) failed with {}:\n{}",
        manifest.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The plugin-api version the host speaks and the next, incompatible one the
/// `next-interface` fixture is built against.
pub const HOST_INTERFACE: &str = "1.2.0";
/// See [`HOST_INTERFACE`].
pub const NEXT_INTERFACE: &str = "2.0.0";
/// A newer minor than the host's: additions the host lacks (`next-minor`).
pub const NEXT_MINOR: &str = "1.3.0";

/// Copies `plugin-api` (Cargo.toml and src/) to
/// `target/fixtures/src/plugin-api-VERSION`, changing only its version, and
/// spelling out what it inherits from the main workspace (the copy is
/// outside it). Files whose contents did not change are not rewritten, so
/// cargo does not rebuild the fixture every run.
fn stage_interface(version: &str) {
    let source = repo_root().join("plugin-api");
    let staged = fixtures_target_dir().join("src").join(format!("plugin-api-{version}"));
    let manifest = std::fs::read_to_string(source.join("Cargo.toml")).expect("read plugin-api/Cargo.toml");
    let current = format!("version = \"{HOST_INTERFACE}\"");
    assert!(
        manifest.lines().any(|line| line.trim() == current),
        "plugin-api/Cargo.toml no longer says `{current}`: update fixtures/next-interface and fixtures/next-minor, HOST_INTERFACE and \
         NEXT_INTERFACE and NEXT_MINOR in host/tests/common/mod.rs to the new interface version"
    );
    let root_manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("read the root Cargo.toml");
    let manifest =
        inline_workspace_inheritance(&manifest, &root_manifest).replace(&current, &format!("version = \"{version}\""));
    write_if_changed(&staged.join("Cargo.toml"), manifest.as_bytes());
    sync_dir(&source.join("src"), &staged.join("src"));
}

/// Replaces `key.workspace = true` and `key = { workspace = true, … }` in a
/// member's manifest by the values in the root's `[workspace.package]` and
/// `[workspace.dependencies]`. Handles the simple forms this workspace uses
/// and panics, naming the line, on anything else.
fn inline_workspace_inheritance(manifest: &str, root_manifest: &str) -> String {
    let mut inherited: HashMap<(&str, &str), &str> = HashMap::new();
    let mut section = "";
    for line in root_manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line;
        } else if let Some((key, value)) = line.split_once('=') {
            let table = match section {
                "[workspace.package]" => "package",
                "[workspace.dependencies]" => "dependencies",
                _ => continue,
            };
            inherited.insert((table, key.trim()), value.trim());
        }
    }

    let mut out = String::new();
    let mut section = "";
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed;
        }
        let table = if section == "[package]" {
            "package"
        } else if section.ends_with("dependencies]") {
            "dependencies"
        } else {
            ""
        };
        let resolved = if let Some(key) = trimmed.strip_suffix(".workspace = true") {
            let value = inherited
                .get(&(table, key))
                .unwrap_or_else(|| panic!("plugin-api inherits `{key}`, which the root Cargo.toml does not define"));
            assert!(
                !value.contains("path"),
                "cannot copy plugin-api: it inherits the path dependency `{key} = {value}`"
            );
            format!("{key} = {value}")
        } else if section == "[lints]" && trimmed == "workspace = true" {
            continue; // the workspace's lints do not matter to a copy built for a test
        } else if trimmed.contains("workspace = true") {
            panic!("cannot inline this line of plugin-api/Cargo.toml, extend host/tests/common/mod.rs: {trimmed}");
        } else {
            line.to_owned()
        };
        out.push_str(&resolved);
        out.push('\n');
    }
    out
}

fn write_if_changed(path: &Path, contents: &[u8]) {
    if std::fs::read(path).ok().as_deref() == Some(contents) {
        return;
    }
    std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("create folder");
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Makes `to` a copy of `from`: changed files rewritten, stale ones removed.
fn sync_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    let mut wanted = Vec::new();
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display())) {
        let entry = entry.expect("folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            sync_dir(&entry.path(), &target);
        } else {
            write_if_changed(&target, &std::fs::read(entry.path()).expect("read source file"));
        }
        wanted.push(entry.file_name());
    }
    for entry in std::fs::read_dir(to).expect("read staged folder") {
        let entry = entry.expect("folder entry");
        if !wanted.contains(&entry.file_name()) {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
}

/// Runs `host` with `args`, the environment cleared and set to `env`, `stdin`
/// as its standard input, in the repository root. See [`run_host_in`].
pub fn run_host<A: AsRef<OsStr>>(args: &[A], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    run_host_in(&repo_root(), args, env, stdin)
}

/// Runs `host` in `dir` as [`run_host`] does. The child is killed after
/// [`HOST_TIMEOUT`] and the test fails, so a hang cannot block the run.
/// Input the host does not read is dropped (a broken pipe is no error).
pub fn run_host_in<A: AsRef<OsStr>>(dir: &Path, args: &[A], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut command = Command::new(host_bin());
    command
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let described = format!("{command:?}");
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", host_bin().display()));

    let mut child_stdin = child.stdin.take().expect("piped stdin");
    let input = stdin.to_vec();
    let writer = thread::spawn(move || {
        // The host may exit without reading it all: that is its right.
        let _ = child_stdin.write_all(&input);
    });
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));

    let deadline = Instant::now() + HOST_TIMEOUT;
    let status: ExitStatus = loop {
        match child.try_wait().expect("wait for host") {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = writer.join();
                let stdout = stdout.join().unwrap_or_default();
                let stderr = stderr.join().unwrap_or_default();
                panic!(
                    "host did not finish within {HOST_TIMEOUT:?} and was killed: {described}\n--- stdout:\n{}\n--- \
                     stderr:\n{}",
                    String::from_utf8_lossy(&stdout),
                    String::from_utf8_lossy(&stderr)
                );
            }
            None => thread::sleep(Duration::from_millis(5)),
        }
    };
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// stdout and stderr of a run, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout:\n{}\n--- stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The run's stderr as text.
pub fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The run's stdout as text.
pub fn stdout_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `swap` fixture (`fixtures/swap`) built with `SWAP_VERSION=version`
/// (its answer), copied to `target/fixtures/swap-<version>.so`. Built once
/// per version in this test binary; builds are serialized, because every
/// version is built into the same `target/fixtures/release/libswap.so`
/// (cargo rebuilds when `SWAP_VERSION` changes: `option_env!` is tracked).
pub fn swap_lib(version: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let copy = fixtures_target_dir().join(format!("swap-{version}.so"));
    if built.iter().any(|v| v == version) {
        return copy;
    }
    let manifest = repo_root().join("fixtures").join("swap").join("Cargo.toml");
    let target_dir = fixtures_target_dir();
    let started = Instant::now();
    cargo_build(&manifest, &[("SWAP_VERSION", version)]);
    let library = target_dir.join("release").join("libswap.so");
    let bytes =
        std::fs::read(&library).unwrap_or_else(|e| panic!("swap fixture built, but {}: {e}", library.display()));
    assert!(
        bytes.windows(version.len()).any(|w| w == version.as_bytes()),
        "{} does not contain {version:?}: was it rebuilt by another process meanwhile?",
        library.display()
    );
    // Write beside, then rename: a copy is complete or absent.
    let partial = fixtures_target_dir().join(format!(".swap-{version}.so.{}", std::process::id()));
    std::fs::write(&partial, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", partial.display()));
    std::fs::rename(&partial, &copy).unwrap_or_else(|e| panic!("cannot write {}: {e}", copy.display()));
    eprintln!(
        "built the swap fixture (SWAP_VERSION={version}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    built.push(version.to_owned());
    copy
}

/// The master's log lines about a worker that died (a crash, a signal, or
/// one that died starting), as `supervisor::arbiter` words them.
pub fn worker_deaths(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains("worker") && (line.contains(" died: ") || line.contains(" died before ")))
        .map(str::to_owned)
        .collect()
}

/// Whether the server has accepted the connection from `client` and read
/// everything sent on it, as /proc/net/tcp shows: the client's bytes are
/// all acknowledged, and the server's socket for it has a file (accepted)
/// and nothing left to read. IPv4 only.
pub fn read_by_server(server: std::net::SocketAddr, client: std::net::SocketAddr) -> bool {
    let hex = |addr: std::net::SocketAddr| match addr {
        std::net::SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_ne_bytes(v4.ip().octets()), v4.port()),
        std::net::SocketAddr::V6(_) => panic!("IPv4 only: {addr}"),
    };
    let (server, client) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    // sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode
    let entry = |local: &str, remote: &str| {
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 9 && fields[1] == local && fields[2] == remote).then(|| {
                let (tx, rx) = fields[4].split_once(':').unwrap_or_default();
                let queue = |hex: &str| u64::from_str_radix(hex, 16).unwrap_or(u64::MAX);
                (queue(tx), queue(rx), fields[9] != "0")
            })
        })
    };
    let sent = entry(&client, &server).is_some_and(|(unacked, _, _)| unacked == 0);
    let read = entry(&server, &client).is_some_and(|(_, unread, accepted)| unread == 0 && accepted);
    sent && read
}

/// `name`'s value as a number, or `default` (the fuzzers'
/// `HOST_FUZZ_INPUTS` and `HOST_FUZZ_SEED`).
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}
