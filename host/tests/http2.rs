//! HTTP/2: cleartext with prior knowledge (h2c) and over TLS by ALPN, with
//! curl as the real client (Debian's curl speaks both); the limits against
//! rapid reset (CVE-2023-44487) and CONTINUATION floods (CVE-2024-27316),
//! with a small attacking client that writes frames by hand; idle and
//! silent connections; streams that finish while a swap drains; and
//! fuzzed frame sequences, which must never hang or kill a worker.

mod common;
// Only its random numbers are used here.
#[allow(dead_code)]
#[path = "fuzz_http/mutate.rs"]
mod mutate;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::certs::{make_cert, tls_args, TestCert};
use common::fleet::{lines_with, rss_kib, wait_for_count, worker_pids};
use common::server::{Server, TempDir};
use common::{app_spec, env_number, plugin_lib};

fn echo() -> String {
    app_spec(&plugin_lib("echo"), "application")
}

/// curl speaking `how` (`--http2`, `--http2-prior-knowledge`,
/// `--http1.1`) to the server at `addr` as `localhost`, trusting `cacert`.
#[derive(Clone)]
struct Curl {
    base: Vec<String>,
}

impl Curl {
    fn new(addr: SocketAddr, how: &str, cacert: Option<&str>) -> Curl {
        let resolve = format!("localhost:{}:127.0.0.1", addr.port());
        let mut base = vec![how.to_owned(), "--resolve".to_owned(), resolve];
        if let Some(cacert) = cacert {
            base.extend(["--cacert".to_owned(), cacert.to_owned()]);
        }
        Curl { base }
    }

    /// Runs curl with `args` after the base ones; each response's
    /// `=VERSION STATUS` line and body are in the text. Panics if curl is
    /// missing.
    fn run(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20", "-w", WRITE_OUT])
            .args(&self.base)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run curl ({e}): install it (apt-get install curl) for the HTTP/2 tests")
            });
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.success(), text + &String::from_utf8_lossy(&output.stderr))
    }
}

/// What curl prints after each response: version, status.
const WRITE_OUT: &str = "\n=%{http_version} %{http_code}\n";

/// The `=VERSION STATUS` lines of a curl run.
fn outcomes(text: &str) -> Vec<&str> {
    text.lines().filter_map(|line| line.strip_prefix('=')).collect()
}

fn url(addr: SocketAddr, scheme: &str, path: &str) -> String {
    format!("{scheme}://localhost:{}{path}", addr.port())
}

#[test]
fn curl_gets_the_site_and_apps_over_h2c_and_over_tls() {
    let dir = TempDir::new("h2-curl");
    let cert = make_cert(dir.path(), "site");
    let cleartext = Server::builder().arg(echo()).args(["-w", "1"]).start();
    let tls = Server::builder()
        .arg(echo())
        .args(["-w", "1"])
        .args(tls_args(&cert))
        .start();
    let index = std::fs::read_to_string(common::repo_root().join("html/index.html")).unwrap();
    let cacert = cert.certfile.display().to_string();
    let body_file = dir.join("body");
    std::fs::write(&body_file, "b".repeat(300_000)).unwrap();
    let body = format!("@{}", body_file.display());

    for (server, scheme, how, scheme_seen) in [
        (&cleartext, "http", "--http2-prior-knowledge", "http"),
        (&tls, "https", "--http2", "https"),
    ] {
        let (site, who, post, stream) = (
            url(server.addr, scheme, "/index.html"),
            url(server.addr, scheme, "/who?x=1"),
            url(server.addr, scheme, "/post"),
            url(server.addr, scheme, "/stream"),
        );
        let client = Curl::new(server.addr, how, Some(&cacert));
        // Three requests, on one connection over TLS. (Debian 12's curl
        // 7.88 fails every request after the first on a reused h2c
        // connection, nginx's too: there, each has its own.)
        let text = if scheme == "https" {
            let (ok, text) = client.run(&[&site, &who, &site]);
            assert!(ok, "{text}");
            text
        } else {
            [&site, &who, &site].iter().map(|url| client.run(&[url]).1).collect()
        };
        assert_eq!(outcomes(&text), ["2 200"; 3], "{text}");
        assert!(text.contains(&index), "the index came back changed:\n{text}");
        assert!(text.contains("\"SERVER_PROTOCOL\": \"HTTP/2\""), "{text}");
        assert!(
            text.contains(&format!("\"wsgi.url_scheme\": \"{scheme_seen}\"")),
            "{text}"
        );
        assert!(
            text.contains(&format!("\"HTTP_HOST\": \"localhost:{}\"", server.addr.port())),
            "{text}"
        );
        assert!(text.contains("\"QUERY_STRING\": \"x=1\""), "{text}");

        let (ok, text) = client.run(&["--data-binary", &body, &post]);
        assert!(
            ok && text.contains("\"body_length\": 300000"),
            "{}",
            &text[..text.len().min(500)]
        );
        let (ok, text) = client.run(&[&stream]);
        assert!(ok && outcomes(&text) == ["2 200"], "{text}");

        // Cookies split over several fields reach the app as one, joined
        // with "; " (RFC 9113 §8.2.3).
        let (ok, text) = client.run(&[
            "-H",
            "cookie: a=1",
            "-H",
            "cookie: b=2",
            "-H",
            "cookie: c=3; d=4",
            &url(server.addr, scheme, "/cookies"),
        ]);
        assert!(ok, "{text}");
        assert!(text.contains("\"HTTP_COOKIE\": \"a=1; b=2; c=3; d=4\""), "{text}");

        // HTTP/1.1 still works beside it.
        let (ok, text) = Curl::new(server.addr, "--http1.1", Some(&cacert)).run(&[&site]);
        assert!(ok && outcomes(&text) == ["1.1 200"], "{text}");

        let log = wait_for_count(server, "\"POST /post HTTP/2\" 200", 1, Duration::from_secs(10));
        assert_eq!(lines_with(&log, "\"GET /index.html HTTP/2\" 200").len(), 2, "{log}");
        assert_eq!(lines_with(&log, "\"GET /who?x=1 HTTP/2\" 200").len(), 1, "{log}");
        assert_eq!(lines_with(&log, "\"GET /index.html HTTP/1.1\" 200").len(), 1, "{log}");
    }
}

#[test]
fn no_http2_serves_http1_only() {
    let dir = TempDir::new("h2-off");
    let cert = make_cert(dir.path(), "site");
    let cacert = cert.certfile.display().to_string();
    let cleartext = Server::builder().arg(echo()).arg("--no-http2").start();
    let tls = Server::builder()
        .arg(echo())
        .arg("--no-http2")
        .args(tls_args(&cert))
        .start();

    let site = url(tls.addr, "https", "/index.html");
    let (ok, text) = Curl::new(tls.addr, "--http2", Some(&cacert)).run(&[&site]);
    assert!(ok && outcomes(&text) == ["1.1 200"], "ALPN chose HTTP/2:\n{text}");

    let site = url(cleartext.addr, "http", "/index.html");
    let (ok, text) = Curl::new(cleartext.addr, "--http2-prior-knowledge", None).run(&[&site]);
    assert!(!ok || !outcomes(&text).iter().any(|o| o.starts_with("2 ")), "{text}");
    let (ok, text) = Curl::new(cleartext.addr, "--http1.1", None).run(&[&site]);
    assert!(ok && outcomes(&text) == ["1.1 200"], "{text}");
}

/// Frames written by hand, for the attacks (RFC 9113 §4, §6; HPACK RFC 7541).
mod frames {
    use super::*;

    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    /// GOAWAY's error code for a peer that misbehaves.
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
    /// RST_STREAM's CANCEL.
    pub const CANCEL: u32 = 0x8;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[kind, flags]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// An HPACK literal field without indexing, its name from the static
    /// table's entry `index`.
    pub fn literal(index: u8, value: &[u8]) -> Vec<u8> {
        assert!(value.len() < 127);
        let mut field = vec![index, value.len() as u8];
        field.extend_from_slice(value);
        field
    }

    /// The header block of `GET path` (`:method GET`, `:scheme http` from
    /// the static table).
    pub fn get(path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86];
        block.extend(literal(4, path.as_bytes()));
        block.extend(literal(1, b"localhost"));
        block
    }

    /// A connection that has sent the preface and its SETTINGS.
    pub fn connect(addr: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        stream.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
        stream
    }

    /// Writes `bytes`; `false` if the server closed the connection first.
    pub fn send(stream: &mut TcpStream, bytes: &[u8]) -> bool {
        bytes.chunks(64 * 1024).all(|chunk| stream.write_all(chunk).is_ok())
    }

    /// Reads until the server closes the connection (or 15 s pass):
    /// the GOAWAY's error code and debug text, if one came.
    pub fn goaway(stream: &mut TcpStream) -> Option<(u32, String)> {
        let mut received = Vec::new();
        let _ = stream.read_to_end(&mut received);
        let mut at = 0;
        while at + 9 <= received.len() {
            let len = u32::from_be_bytes([0, received[at], received[at + 1], received[at + 2]]) as usize;
            let payload = &received[(at + 9).min(received.len())..(at + 9 + len).min(received.len())];
            if received[at + 3] == GOAWAY && payload.len() >= 8 {
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                return Some((code, String::from_utf8_lossy(&payload[8..]).into_owned()));
            }
            at += 9 + len;
        }
        None
    }
}

#[test]
fn rapid_reset_and_continuation_floods_are_cut_off_ten_times_over() {
    use frames::*;
    let server = Server::builder().arg(echo()).args(["-w", "1"]).start();
    let workers = worker_pids(server.pid());
    assert_eq!(workers.len(), 1);
    let rss_before = rss_kib(workers[0]);
    let check = url(server.addr, "http", "/check");

    for round in 0..10 {
        // Rapid reset: 5 000 requests, each cancelled as soon as it is sent.
        let mut attack = Vec::new();
        for n in 0..5_000u32 {
            let stream = 1 + 2 * n;
            attack.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &get("/reset")));
            attack.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
        }
        let mut peer = connect(server.addr);
        send(&mut peer, &attack);
        let (code, text) = goaway(&mut peer).unwrap_or_else(|| panic!("round {round}: no GOAWAY after a rapid reset"));
        assert_eq!(code, ENHANCE_YOUR_CALM, "round {round}: {text}");

        // CONTINUATION flood: one header block that never ends.
        let mut attack = frame(HEADERS, 0, 1, &get("/flood"));
        let filler = literal(0x0f, &[b'y'; 100]);
        for _ in 0..20_000 {
            attack.extend(frame(CONTINUATION, 0, 1, &filler));
        }
        let mut peer = connect(server.addr);
        let whole = send(&mut peer, &attack);
        let closed = goaway(&mut peer);
        assert!(
            !whole || closed.is_some(),
            "round {round}: a 2 MB header block was taken whole"
        );

        let (ok, text) = Curl::new(server.addr, "--http2-prior-knowledge", None).run(&[&check]);
        assert!(ok && outcomes(&text) == ["2 200"], "round {round}: {text}");
    }
    let log = server.log();
    assert_eq!(worker_pids(server.pid()), workers, "a worker died:\n{log}");
    assert!(
        lines_with(&log, "GET /reset").len() < 10 * 100,
        "reset streams reached the app:\n{log}"
    );
    assert!(lines_with(&log, "/flood").is_empty(), "{log}");
    let grown = rss_kib(workers[0]).saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "the worker grew by {grown} KiB under the floods");
}

#[test]
fn idle_and_silent_connections_are_closed_after_the_header_timeout() {
    use frames::*;
    let server = Server::builder()
        .arg(echo())
        .args(["-w", "1", "--header-timeout", "2s"])
        .start();
    let started = Instant::now();
    // 50 that stop after the preface, 50 after a first request, 50 that
    // never say a word: all closed, the first hundred with a GOAWAY.
    let mut quiet: Vec<(TcpStream, bool)> = Vec::new();
    for n in 0..150 {
        match n / 50 {
            0 => quiet.push((connect(server.addr), true)),
            1 => {
                let mut peer = connect(server.addr);
                peer.write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &get("/first")))
                    .unwrap();
                quiet.push((peer, true));
            }
            _ => {
                let silent = TcpStream::connect(server.addr).unwrap();
                silent.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                quiet.push((silent, false));
            }
        }
    }
    for (n, (mut peer, speaks_http2)) in quiet.into_iter().enumerate() {
        let closed = goaway(&mut peer);
        if speaks_http2 {
            let (code, _) = closed.unwrap_or_else(|| panic!("connection {n} got no GOAWAY"));
            assert_eq!(code, 0, "connection {n}: an idle close is NO_ERROR");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "closing took {:?}",
        started.elapsed()
    );
    let log = server.log();
    assert_eq!(lines_with(&log, "\"GET /first HTTP/2\" 200").len(), 50, "{log}");
    let (ok, text) =
        Curl::new(server.addr, "--http2-prior-knowledge", None).run(&[&url(server.addr, "http", "/after")]);
    assert!(ok && outcomes(&text) == ["2 200"], "{text}");
}

#[test]
fn swaps_drain_http2_with_goaway_and_lose_no_request() {
    let dir = TempDir::new("h2-swap");
    let cert: TestCert = make_cert(dir.path(), "site");
    let server = Server::builder()
        .arg(echo())
        .args(["-w", "2"])
        .args(tls_args(&cert))
        .start();
    let client = Curl::new(server.addr, "--http2", Some(&cert.certfile.display().to_string()));

    // A slow request in flight when the swap begins finishes on its stream.
    let slow = {
        let client = client.clone();
        let slow = url(server.addr, "https", "/sleep/1500");
        std::thread::spawn(move || client.run(&[&slow]))
    };
    std::thread::sleep(Duration::from_millis(300));

    // Clients that keep their connection for 20 requests at a time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            let urls: Vec<String> = (0..20)
                .map(|n| url(server.addr, "https", &format!("/load/{n}")))
                .collect();
            std::thread::spawn(move || {
                let mut outcomes_seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
                    let (_, text) = client.run(&urls);
                    outcomes_seen.extend(outcomes(&text).iter().map(|o| o.to_string()));
                    let missing = 20 - outcomes(&text).len();
                    outcomes_seen.extend(std::iter::repeat_n("lost".to_owned(), missing));
                }
                outcomes_seen
            })
        })
        .collect();
    for _ in 0..5 {
        server.signal("HUP");
        std::thread::sleep(Duration::from_millis(1500));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, text) = slow.join().unwrap();
    assert!(
        ok && outcomes(&text) == ["2 200"],
        "the slow request was lost in the swap: {text}"
    );
    let all: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let failed: Vec<&String> = all.iter().filter(|o| *o != "2 200").collect();
    eprintln!(
        "{} requests over HTTP/2 across 5 swaps, {} failed",
        all.len(),
        failed.len()
    );
    assert!(all.len() >= 60, "only {} requests were made", all.len());
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}\n{}",
        failed.len(),
        all.len(),
        &failed[..failed.len().min(10)],
        server.log()
    );
    let log = server.log();
    assert!(
        lines_with(&log, "generation drains").len() + lines_with(&log, "drains").len() >= 5,
        "{log}"
    );
}

#[test]
fn large_files_and_ranges_arrive_intact_over_h2c_and_tls() {
    let dir = TempDir::new("h2-large");
    let cert = make_cert(dir.path(), "site");
    let site = dir.join("site");
    std::fs::create_dir(&site).unwrap();
    // Mapped and sent in 16 KiB DATA frames (files over 64 KiB are mapped).
    let content: Vec<u8> = (0..3_000_000u32)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(site.join("big.bin"), &content).unwrap();
    let site_arg = site.display().to_string();
    let cleartext = Server::builder().args(["--static-dir", &site_arg]).start();
    let tls = Server::builder()
        .args(["--static-dir", &site_arg])
        .args(tls_args(&cert))
        .start();
    let cacert = cert.certfile.display().to_string();
    let out = dir.join("got");
    let out_arg = out.display().to_string();
    for (server, scheme, how) in [
        (&cleartext, "http", "--http2-prior-knowledge"),
        (&tls, "https", "--http2"),
    ] {
        let client = Curl::new(server.addr, how, Some(&cacert));
        let big = url(server.addr, scheme, "/big.bin");
        for round in 0..5 {
            let (ok, text) = client.run(&["-o", &out_arg, &big]);
            assert!(ok && outcomes(&text) == ["2 200"], "{scheme} round {round}: {text}");
            assert!(
                std::fs::read(&out).unwrap() == content,
                "{scheme} round {round}: the file changed on the way"
            );
        }
        let (ok, text) = client.run(&["-o", &out_arg, "-r", "70000-2099999", &big]);
        assert!(ok && outcomes(&text) == ["2 206"], "{scheme}: {text}");
        assert!(
            std::fs::read(&out).unwrap() == content[70_000..2_100_000],
            "{scheme}: the range changed on the way"
        );
    }
}

/// A sequence of frames after the preface, from a request that is fine
/// and frames of every type, with their flags, stream ids, lengths and
/// payloads mutated.
fn fuzzed_frames(rng: &mut mutate::Rng) -> Vec<u8> {
    use frames::*;
    let mut bytes = frame(SETTINGS, 0, 0, &[]);
    if rng.below(2) == 0 {
        bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &get("/who")));
    }
    for _ in 0..1 + rng.below(8) {
        let stream = [0, 1, 1, 3, 2, rng.next() as u32 & 0x7fff_ffff][rng.below(6)];
        let block = match rng.below(3) {
            0 => get("/who"),
            1 => get(&"/x".repeat(1 + rng.below(60))),
            _ => (0..rng.below(40)).map(|_| rng.next() as u8).collect(),
        };
        let random: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
        let (kind, flags, payload) = match rng.below(10) {
            0..=2 => (
                HEADERS,
                [END_HEADERS | END_STREAM, END_HEADERS, 0, rng.next() as u8][rng.below(4)],
                block,
            ),
            3 => (CONTINUATION, [END_HEADERS, 0][rng.below(2)], block),
            4 => (0x0, [1, 0, 8][rng.below(3)], random), // DATA (8: padded)
            5 => (RST_STREAM, 0, CANCEL.to_be_bytes().to_vec()),
            6 => (SETTINGS, [0, 1][rng.below(2)], random),
            7 => (0x8, 0, (rng.next() as u32).to_be_bytes().to_vec()), // WINDOW_UPDATE
            8 => ((rng.next() % 16) as u8, rng.next() as u8, random),  // any type
            _ => (0x6, 0, random),                                     // PING
        };
        let mut one = frame(kind, flags, stream, &payload);
        match rng.below(8) {
            // A length field that lies.
            0 => one[..3].copy_from_slice(&(rng.next() as u32 & 0xff_ffff).to_be_bytes()[1..]),
            1 => one.truncate(rng.below(one.len() + 1)),
            _ => {}
        }
        bytes.extend(one);
    }
    bytes
}

#[test]
fn fuzzed_frames_never_hang_or_take_a_worker_down() {
    let server = Server::builder()
        .arg(echo())
        .args(["-w", "1", "--header-timeout", "3s"])
        .start();
    let workers = worker_pids(server.pid());
    // A fixed count from a fixed seed (the same cases on any machine);
    // HOST_FUZZ_INPUTS and HOST_FUZZ_SEED for other runs.
    let inputs = env_number("HOST_FUZZ_INPUTS", 50_000);
    let seed = env_number("HOST_FUZZ_SEED", 0x4832_2026);
    eprintln!("HTTP/2 frame fuzzing: HOST_FUZZ_SEED={seed} HOST_FUZZ_INPUTS={inputs}");
    let mut rng = mutate::Rng::new(seed);
    let started = Instant::now();
    let mut cases = 0;
    while cases < inputs {
        let case = fuzzed_frames(&mut rng);
        let mut peer = frames::connect(server.addr);
        frames::send(&mut peer, &case);
        // Done sending: the server answers what it can, then closes.
        let _ = peer.shutdown(std::net::Shutdown::Write);
        let waited = Instant::now();
        let mut answer = Vec::new();
        if let Err(e) = peer.read_to_end(&mut answer) {
            assert!(
                !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                "case {cases} hung for {:?}: {case:02x?}",
                waited.elapsed()
            );
        }
        cases += 1;
        if cases % 200 == 0 {
            let (ok, text) =
                Curl::new(server.addr, "--http2-prior-knowledge", None).run(&[&url(server.addr, "http", "/check")]);
            assert!(ok && outcomes(&text) == ["2 200"], "after case {cases}: {text}");
        }
    }
    let log = server.log();
    let served = lines_with(&log, "\"GET /who HTTP/2\" 200").len();
    eprintln!(
        "{cases} fuzzed HTTP/2 frame sequences in {:.1} s; {served} requests among them answered 200",
        started.elapsed().as_secs_f64()
    );
    assert!(
        served as u64 * 100 >= cases,
        "the fuzzer hardly reaches the app: {served} of {cases}"
    );
    assert_eq!(worker_pids(server.pid()), workers, "a worker died:\n{}", server.log());
    assert!(!log.contains("panicked"), "{log}");
}
