//! A fuzzed request path, differential: mutated request streams (from the
//! vector corpus, see `tests/data/http-vectors`) are thrown at the real
//! `host` serving echo on 127.0.0.1, and every answer is checked:
//!
//! - it is a sequence of well-formed responses, then the connection closes
//!   (no garbage, no hang);
//! - every request echo reports is one a strict reading of the stream
//!   ([`oracle`], written from the RFC apart from the server) accepts, at
//!   the same position, with the same method, path, query and body: the
//!   server never answers a request it should have refused, and never sees
//!   requests (or bodies) where a strict parser sees other ones;
//! - the server is alive and has lost no worker at the end.
//!
//! Sends `HOST_FUZZ_INPUTS` inputs (default [`SUITE_INPUTS`], about 7 s)
//! made from `HOST_FUZZ_SEED`: a number, or `random` for the time. The
//! suite's default is a fixed seed and a fixed count, so a red run replays
//! the same inputs on any machine, however fast; both are printed first.
//! Explore with more inputs and random seeds, and keep what they find in the
//! corpus (`0900-…`): [`replay_findings`] replays those on every run. Prints
//! executions, findings and how often the server was stricter than the
//! oracle. Findings are written to `target/fuzz-findings/` as raw request
//! files (`HOST_FUZZ_REPLAY=FILE:FILE…` replays them with details).

mod common;
#[path = "fuzz_http/mutate.rs"]
mod mutate;
#[path = "fuzz_http/oracle.rs"]
mod oracle;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::fleet::{echo, try_get, worker_pids};
use common::server::Server;
use common::vectors::{corpus, corpus_dir, Vector};
use common::worker_deaths;
use mutate::{extra_seeds, mutate, Rng};
use oracle::Expected;
use serde_json::Value;

/// One response as the client saw it.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Echo's report, when the app answered.
    report: Option<Value>,
    /// An app answer without a body (HEAD).
    head_only_app: bool,
}

/// Splits `bytes` into responses; `Err` if they are not well-formed.
fn parse_answers(mut bytes: &[u8]) -> Result<Vec<Answer>, String> {
    let mut answers = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("an incomplete response head")?;
        let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "a response head that is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("a bad status line {status_line:?}"))?;
        let mut fields = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("a bad field line {line:?}"))?;
            fields.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        bytes = &bytes[end + 4..];
        if (100..200).contains(&status) {
            continue;
        }
        let json = field("content-type").is_some_and(|t| t.contains("json"));
        let body: Vec<u8> = if field("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = bytes
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .ok_or("a cut chunked response")?;
                let size = usize::from_str_radix(std::str::from_utf8(&bytes[..line_end]).unwrap_or("x"), 16)
                    .map_err(|_| "a bad chunk size in a response")?;
                bytes = &bytes[line_end + 2..];
                if size == 0 {
                    bytes = bytes.strip_prefix(b"\r\n").ok_or("a response without its last CRLF")?;
                    break;
                }
                if bytes.len() < size + 2 {
                    return Err("a cut chunk in a response".to_owned());
                }
                body.extend_from_slice(&bytes[..size]);
                bytes = &bytes[size + 2..];
            }
            body
        } else {
            // A HEAD answer (or a 204/304) has no body whatever its
            // Content-Length says: the next response, or the end, follows.
            let bodiless = matches!(status, 204 | 304) || bytes.is_empty() || bytes.starts_with(b"HTTP/1.");
            let length: usize = match field("content-length") {
                _ if bodiless => 0,
                Some(length) => length.parse().map_err(|_| "a bad Content-Length in a response")?,
                None => return Err("a response with a body but no length".to_owned()),
            };
            if bytes.len() < length {
                return Err("a response shorter than its Content-Length".to_owned());
            }
            let body = bytes[..length].to_vec();
            bytes = &bytes[length..];
            body
        };
        let report = if json && !body.is_empty() {
            Some(serde_json::from_slice(&body).map_err(|e| format!("echo's JSON does not parse: {e}"))?)
        } else {
            None
        };
        answers.push(Answer {
            status,
            report,
            head_only_app: json && body.is_empty(),
        });
    }
    Ok(answers)
}

/// Sends `input`, half-closes, and reads everything until the server closes.
fn exchange(addr: SocketAddr, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let _ = stream.write_all(input);
    let _ = stream.shutdown(Shutdown::Write);
    let mut received = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(received),
            Ok(count) => received.extend_from_slice(&chunk[..count]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(received),
            Err(e) => return Err(format!("no end within 10 s ({e}) after {} bytes", received.len())),
        }
    }
}

/// Checks the server's answers against the oracle; `Err` is a finding.
/// `Ok(true)` if the server refused a request the oracle accepts.
fn judge(input: &[u8], answers: &[Answer]) -> Result<bool, String> {
    let expected: Vec<Expected> = oracle::accepted(input);
    for (at, answer) in answers.iter().enumerate() {
        let app = answer.report.is_some() || answer.head_only_app;
        let Some(want) = expected.get(at) else {
            if app {
                return Err(format!(
                    "request {} reached the app, but a strict reading refuses it",
                    at + 1
                ));
            }
            return Ok(false); // refused where the oracle refuses (or stops)
        };
        if !app {
            // The server made this answer itself: a refusal, or OPTIONS *.
            if answer.status >= 400 {
                return Ok(true);
            }
            continue;
        }
        if !want.app {
            return Err(format!(
                "request {} reached the app, but only the server may answer it",
                at + 1
            ));
        }
        if let Some(report) = &answer.report {
            let environ = &report["environ"];
            let got = (
                environ["REQUEST_METHOD"].as_str().unwrap_or_default(),
                environ["PATH_INFO"].as_str().unwrap_or_default(),
                environ["QUERY_STRING"].as_str().unwrap_or_default(),
                report["body"].as_str().unwrap_or_default(),
            );
            let body = String::from_utf8_lossy(&want.body);
            let wanted = (
                want.method.as_str(),
                want.path.as_str(),
                want.query.as_str(),
                body.as_ref(),
            );
            if got != wanted {
                return Err(format!(
                    "request {} reached the app as {got:?}; a strict reading sees {wanted:?}",
                    at + 1
                ));
            }
        }
    }
    Ok(false)
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(corpus_dir())
        .expect("the vector corpus")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "http"))
        .map(|e| std::fs::read(e.path()).expect("a vector"))
        .collect();
    seeds.sort();
    seeds.extend(extra_seeds());
    seeds
}

/// The test suite's seed (see the module doc).
const SUITE_SEED: u64 = 0x5EED_F022;

/// How many inputs the test suite sends: about 7 s on two cores.
const SUITE_INPUTS: u64 = 120_000;

/// Concurrent clients of the fuzz run; client `c` mutates from its own
/// generator, seeded from the run's seed and `c`.
const CLIENTS: u64 = 8;

/// `HOST_FUZZ_SEED`: a number, `random` (the time), or the suite's seed.
fn fuzz_seed() -> u64 {
    match std::env::var("HOST_FUZZ_SEED").as_deref() {
        Err(_) => SUITE_SEED,
        Ok("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        Ok(number) => number
            .parse()
            .unwrap_or_else(|_| panic!("HOST_FUZZ_SEED={number:?}: give a number or `random`")),
    }
}

/// `HOST_FUZZ_INPUTS`, or the suite's count.
fn fuzz_inputs() -> u64 {
    match std::env::var("HOST_FUZZ_INPUTS") {
        Err(_) => SUITE_INPUTS,
        Ok(count) => count
            .parse()
            .unwrap_or_else(|_| panic!("HOST_FUZZ_INPUTS={count:?}: give a number of inputs")),
    }
}

/// A one-worker host serving echo with short timeouts and the oracle's
/// body limit, logging at `log_level`.
fn fuzz_target(log_level: &str) -> Server {
    Server::builder()
        .arg(echo())
        .args([
            "--no-static",
            "--workers",
            "1",
            "--header-timeout",
            "2s",
            "--body-timeout",
            "2s",
        ])
        .args(["--max-body-size", "1MiB", "--access-log-format", "off"])
        .env("RUST_LOG", log_level)
        .start()
}

/// What must hold of the server after a run: the master alive, no worker
/// death in its log, the same workers as at the start, and `GET /`
/// answered. The problems found.
fn server_health(server: &mut Server, workers: &[u32]) -> Vec<String> {
    let mut problems = Vec::new();
    if server.wait_exit(Duration::ZERO).is_some() {
        problems.push("the master died".to_owned());
    }
    let log = server.log();
    let deaths = worker_deaths(&log);
    if !deaths.is_empty() {
        problems.push(format!("{} worker deaths: {deaths:#?}", deaths.len()));
    }
    let now = worker_pids(server.pid());
    if now != workers {
        problems.push(format!("the workers changed: {workers:?} → {now:?}"));
    }
    let answer = try_get(server.addr, "/", Duration::from_secs(5));
    if !matches!(answer, Ok((200, _))) {
        problems.push(format!("GET / afterwards: {answer:?}"));
    }
    problems
}

#[test]
fn fuzzed_requests_never_break_the_server_or_slip_past_it() {
    let seed = fuzz_seed();
    let inputs = fuzz_inputs();
    // Printed first, so that even a run that hangs says how to replay it.
    println!("fuzz: seed {seed}, {inputs} inputs; replay with HOST_FUZZ_SEED={seed} HOST_FUZZ_INPUTS={inputs}");
    let mut server = fuzz_target("error");
    let workers = worker_pids(server.pid());
    assert_eq!(workers.len(), 1, "one worker: {workers:?}");
    let seeds = seeds();
    let execs = AtomicU64::new(0);
    let stricter = AtomicU64::new(0);
    let stricter_samples: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let findings: Mutex<Vec<(Vec<u8>, String)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (seeds, execs, stricter, findings, addr) = (&seeds, &execs, &stricter, &findings, server.addr);
            let stricter_samples = &stricter_samples;
            // The inputs are shared out by count, not by time: the same
            // seed sends the same inputs on any machine.
            let share = inputs / CLIENTS + u64::from(client < inputs % CLIENTS);
            scope.spawn(move || {
                let mut rng = Rng::new(seed ^ (client + 1).wrapping_mul(0xA076_1D64_78BD_642F));
                for _ in 0..share {
                    let input = mutate(&mut rng, seeds);
                    let verdict = exchange(addr, &input)
                        .and_then(|bytes| parse_answers(&bytes))
                        .and_then(|answers| judge(&input, &answers));
                    match verdict {
                        Ok(true) => {
                            stricter.fetch_add(1, Ordering::Relaxed);
                            let mut samples = stricter_samples.lock().unwrap();
                            if samples.len() < 10 {
                                samples.push(input);
                            }
                        }
                        Ok(false) => {}
                        Err(finding) => findings.lock().unwrap().push((input, finding)),
                    }
                    execs.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let execs = execs.into_inner();
    let findings = findings.into_inner().unwrap();
    let took = started.elapsed().as_secs_f64();
    println!(
        "fuzz: seed {seed}, {execs} inputs in {took:.1} s ({:.0}/s), {} findings; the server refused {} inputs the oracle accepts",
        execs as f64 / took,
        findings.len(),
        stricter.into_inner()
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-findings");
    for (i, input) in stricter_samples.into_inner().unwrap().iter().enumerate() {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{seed}-stricter-{i}.http")), input);
    }
    for (i, (input, finding)) in findings.iter().enumerate().take(20) {
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{seed}-{i}.http"));
        let _ = std::fs::write(&file, input);
        println!(
            "  finding {}: {finding}\n    {:?}",
            file.display(),
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(execs, inputs, "not every input was sent");
    let problems = server_health(&mut server, &workers);
    assert!(
        problems.is_empty(),
        "seed {seed}, {inputs} inputs: {problems:#?}\n{}",
        server.log()
    );
    assert!(
        findings.is_empty(),
        "seed {seed}, {inputs} inputs: {} findings (see above; HOST_FUZZ_REPLAY=FILE:… replays them)",
        findings.len()
    );
    server.stop();
}

/// Whether `answers` are what `INDEX.tsv`'s verdict asks of the server:
/// for `reject`, nothing reached the app and the server answered 4xx/5xx
/// or closed; for `accept`, an answer, by the app or a well-formed one by
/// the server (as `strict_http.rs` counts serving).
fn as_marked(expected: &str, answers: &[Answer]) -> bool {
    let app = |a: &Answer| a.report.is_some() || a.head_only_app;
    match expected {
        "reject" => answers.iter().all(|a| !app(a) && a.status >= 400),
        "accept" => {
            !answers.is_empty()
                && answers
                    .iter()
                    .all(|a| app(a) || a.status < 400 || matches!(a.status, 405 | 501))
        }
        other => panic!("INDEX.tsv: unknown verdict {other:?}"),
    }
}

/// Replays what the fuzzer found, kept in the corpus as regressions once
/// fixed (vectors `0900-…`, see its README), then every unmutated seed the
/// fuzzer starts from, one connection each, and the files named in
/// `HOST_FUZZ_REPLAY` (colon-separated; their details are printed). Each
/// must get well-formed answers (or a close) within 10 s that the oracle
/// agrees with, a finding must also be answered as `INDEX.tsv` marks it,
/// and after each the server must still answer `GET /`; at the end no
/// worker may have died.
#[test]
fn replay_findings() {
    let corpus = corpus();
    let findings: Vec<&Vector> = corpus
        .iter()
        .filter(|v| {
            v.file
                .get(..4)
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 900)
        })
        .collect();
    let named: Vec<(String, Vec<u8>)> = std::env::var("HOST_FUZZ_REPLAY")
        .map(|files| {
            files
                .split(':')
                .filter(|file| !file.is_empty())
                .map(|file| {
                    (
                        file.to_owned(),
                        std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}")),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let (stored, extra) = (findings.len(), named.len());
    // (what, bytes, the INDEX verdict to check, print the details)
    let mut cases: Vec<(String, Vec<u8>, Option<&str>, bool)> = Vec::new();
    cases.extend(
        findings
            .iter()
            .map(|v| (v.file.clone(), v.bytes.clone(), Some(v.expected.as_str()), true)),
    );
    cases.extend(
        seeds()
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| (format!("seed {i}"), bytes, None, false)),
    );
    cases.extend(named.into_iter().map(|(file, bytes)| (file, bytes, None, true)));

    let mut server = fuzz_target("info");
    let workers = worker_pids(server.pid());
    assert_eq!(workers.len(), 1, "one worker: {workers:?}");
    let mut problems = Vec::new();
    for (what, input, expected, verbose) in &cases {
        let answers = exchange(server.addr, input).and_then(|bytes| parse_answers(&bytes));
        let verdict = answers.as_ref().map_err(String::clone).and_then(|a| judge(input, a));
        if *verbose {
            println!("{what}: oracle accepts {:#?}", oracle::accepted(input));
            println!("  answers: {answers:#?}");
            println!("  verdict: {verdict:?}");
        }
        if let Err(problem) = &verdict {
            problems.push(format!("{what}: {problem}"));
        }
        if let (Some(expected), Ok(answers)) = (expected, &answers) {
            if !as_marked(expected, answers) {
                problems.push(format!("{what}: INDEX.tsv says {expected}, answered {answers:?}"));
            }
        }
        let after = try_get(server.addr, "/", Duration::from_secs(5));
        if !matches!(after, Ok((200, _))) {
            problems.push(format!("{what}: GET / afterwards: {after:?}"));
        }
    }
    problems.extend(server_health(&mut server, &workers));
    println!(
        "replayed {stored} stored findings, {} seeds and {extra} named files: {} problems",
        cases.len() - stored - extra,
        problems.len()
    );
    assert!(problems.is_empty(), "{problems:#?}\n{}", server.log());
    server.stop();
}
