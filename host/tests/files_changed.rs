//! Files changed under the server while it sends them: a big file cut
//! short in place (as `cp` over it, `rsync --inplace` or a log rotation
//! do) ends the responses that were sending it, on every transport and
//! through an app's file body, and never costs a worker: every download
//! ends whole or visibly cut (never hung, never short but "complete"), no
//! worker pid changes and the master logs no worker death; a site deployed
//! by switching a symlink is followed within a second.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::certs::{make_cert, tls_args};
use common::fleet::{poll, worker_pids};
use common::server::{Server, TempDir};
use common::{app_spec, plugin_lib, worker_deaths};

/// The file's size: large enough to be sent from the open file, long
/// enough to be in flight when it is cut.
const BIG: usize = 8 << 20;

/// Rounds of the fault.
const ROUNDS: usize = 10;

/// Clients per transport and path in each round.
const CLIENTS: usize = 2;

/// Body bytes every download must have before the file is cut: the
/// response is under way, and far from done (1/64 of the file).
const UNDER_WAY: u64 = 128 << 10;

/// A curl download of `url` at 4 MB/s, speaking `how`, into `out`.
fn slow_download(url: &str, how: &str, cacert: &str, out: &Path) -> Child {
    let port = url
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    Command::new("curl")
        .args(["--silent", "--max-time", "20", "--limit-rate", "4M", "-o"])
        .arg(out)
        .args([
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "--cacert",
            cacert,
            how,
            url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run curl ({e}): install it (apt-get install curl)"))
}

fn content() -> Vec<u8> {
    (0..BIG as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// How a download ended, judged against the file: `Ok("whole")` if curl
/// succeeded with the whole file; `Ok("cut")` if curl failed (the client
/// can tell the answer is incomplete) with fewer bytes than the file, all
/// of them the file's, or zeros where `sendfile` sent a page the cut
/// zeroed (`zeroed_pages`: the cleartext HTTP/1.1 path, whose bytes the
/// kernel takes from the page cache after the server handed them over);
/// `Err` for anything else: a hang (curl's exit 28), other bytes than the
/// file's, or a short body passed off as complete.
fn judge(exit: Option<i32>, got: &[u8], content: &[u8], zeroed_pages: bool) -> Result<&'static str, String> {
    let wrong: Vec<usize> = got
        .iter()
        .zip(content)
        .enumerate()
        .filter(|(_, (a, b))| a != b && !(zeroed_pages && **a == 0))
        .map(|(at, _)| at)
        .collect();
    match exit {
        Some(0) if got == content => Ok("whole"),
        Some(0) => Err(format!(
            "curl succeeded with {} of {} bytes ({} wrong)",
            got.len(),
            content.len(),
            wrong.len()
        )),
        Some(28) => Err(format!("timed out (a hang) after {} bytes", got.len())),
        Some(_) if wrong.is_empty() && got.len() < content.len() => {
            let zeros = got.iter().zip(content).any(|(a, b)| a != b);
            Ok(if zeros { "cut, with zeroed pages" } else { "cut" })
        }
        Some(code) => Err(format!(
            "curl exit {code} after {} bytes, {} of them wrong (the first at {:?})",
            got.len(),
            wrong.len(),
            wrong.first()
        )),
        None => Err("curl was killed by a signal".to_owned()),
    }
}

/// How many of `outcomes` were cut.
fn judged_cut(outcomes: &BTreeMap<&str, usize>) -> usize {
    outcomes
        .iter()
        .filter(|(outcome, _)| outcome.starts_with("cut"))
        .map(|(_, count)| count)
        .sum()
}

#[test]
fn a_file_cut_short_while_it_is_sent_ends_those_responses_and_kills_no_worker() {
    let dir = TempDir::new("cut-files");
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    let downloads_dir = dir.join("downloads");
    std::fs::create_dir_all(&downloads_dir).unwrap();
    let big = site.join("big.bin");
    let content = content();
    std::fs::write(&big, &content).unwrap();
    let cert = make_cert(dir.path(), "site");
    let site_arg = site.to_str().unwrap();
    // The same file through the static site and through an app's file
    // body (static_app serves it with Body::file).
    let mount = format!("/app={}", app_spec(&plugin_lib("static_app"), "run"));
    let args = ["-w", "1", "--static-dir", site_arg, "--mount", &mount];
    let cleartext = Server::builder().args(args).env("STATIC_APP_ROOT", site_arg).start();
    let tls = Server::builder()
        .args(args)
        .args(tls_args(&cert))
        .env("STATIC_APP_ROOT", site_arg)
        .start();
    let workers_before = [worker_pids(cleartext.pid()), worker_pids(tls.pid())];
    assert!(
        workers_before.iter().all(|w| w.len() == 1),
        "one worker each: {workers_before:?}"
    );
    // Every transport the harness speaks: HTTP/1.1 and HTTP/2, cleartext
    // and TLS.
    let transports = [
        ("http", &cleartext, "--http1.1"),
        ("http", &cleartext, "--http2-prior-knowledge"),
        ("https", &tls, "--http1.1"),
        ("https", &tls, "--http2"),
    ];
    let cacert = cert.certfile.to_str().unwrap();
    // Outcomes by transport and path.
    let mut tally: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut problems = Vec::new();
    for round in 0..ROUNDS {
        // In place: the same inode, rewritten whole.
        std::fs::write(&big, &content).unwrap();
        // Cut the file only once every response is under way: each
        // download has some of the body (or has already ended, which the
        // verdict below judges). Transports start one after the other,
        // cleartext HTTP/1.1 last: sendfile hands the kernel as much of the
        // file as the socket buffers take at once, so the longer it runs
        // before the cut, the likelier a response is whole when cut.
        let under_way = |downloads: &mut [(String, PathBuf, Child)]| {
            downloads.iter_mut().all(|(_, out, child)| {
                std::fs::metadata(out).is_ok_and(|m| m.len() >= UNDER_WAY) || !matches!(child.try_wait(), Ok(None))
            })
        };
        let mut downloads = Vec::new();
        for (scheme, server, how) in transports.into_iter().rev() {
            let first = downloads.len();
            for path in ["/big.bin", "/app/big.bin"] {
                let url = format!("{scheme}://localhost:{}{path}", server.addr.port());
                for client in 0..CLIENTS {
                    let out = downloads_dir.join(format!("{}-{client}", downloads.len()));
                    let child = slow_download(&url, how, cacert, &out);
                    downloads.push((format!("{scheme} {how} {path}"), out, child));
                }
            }
            let started = poll(Duration::from_secs(15), Duration::from_millis(5), || {
                under_way(&mut downloads[first..]).then_some(())
            });
            assert!(
                started.is_some(),
                "round {round}: not every {scheme} {how} download got {UNDER_WAY} bytes within 15 s"
            );
        }
        File::options().write(true).open(&big).unwrap().set_len(1000).unwrap();
        for (what, out, mut download) in downloads {
            let exit = download.wait().expect("wait for curl").code();
            let got = std::fs::read(&out).unwrap_or_default();
            let _ = std::fs::remove_file(&out);
            let zeroed_pages = what.starts_with("http --http1.1 ");
            match judge(exit, &got, &content, zeroed_pages) {
                Ok(outcome) => *tally.entry(what).or_default().entry(outcome).or_default() += 1,
                Err(problem) => problems.push(format!("round {round}, {what}: {problem}")),
            }
        }
        // A worker that died cut its downloads too: it is a zombie or
        // replaced by now (its pid is gone), and logged once the master
        // has reaped it.
        let workers = [worker_pids(cleartext.pid()), worker_pids(tls.pid())];
        assert_eq!(
            workers,
            workers_before,
            "round {round}: the workers changed (a worker died?)\n{}\n{}",
            cleartext.log(),
            tls.log()
        );
        for server in [&cleartext, &tls] {
            let log = server.log();
            let deaths = worker_deaths(&log);
            assert!(deaths.is_empty(), "round {round}: worker deaths: {deaths:#?}\n{log}");
        }
    }
    println!("downloads over {ROUNDS} rounds, by transport and path: {tally:#?}");
    assert!(problems.is_empty(), "{} bad downloads: {problems:#?}", problems.len());
    let judged: usize = tally.values().flat_map(BTreeMap::values).sum();
    assert_eq!(judged, ROUNDS * transports.len() * 2 * CLIENTS, "downloads missing");
    // A response the server had wholly handed to the kernel before the cut
    // arrives whole (on cleartext HTTP/1.1, sendfile fills the socket
    // buffers at once: most of them); the cut must still have reached
    // responses on every transport, or it tested nothing there.
    for (scheme, _, how) in transports {
        let transport = format!("{scheme} {how} ");
        let cut: usize = tally
            .iter()
            .filter(|(what, _)| what.starts_with(&transport))
            .map(|(_, outcomes)| judged_cut(outcomes))
            .sum();
        assert!(cut > 0, "{transport}: no download was cut: {tally:?}");
    }

    // Whole again, the file is served whole on every transport once the
    // lookup cache has checked the disk again (within about a second).
    std::fs::write(&big, &content).unwrap();
    for (scheme, server, how) in transports {
        let url = format!("{scheme}://localhost:{}/big.bin", server.addr.port());
        let whole = poll(Duration::from_secs(10), Duration::from_millis(100), || {
            let output = Command::new("curl")
                .args(["--silent", "--max-time", "20", "--resolve"])
                .arg(format!("localhost:{}:127.0.0.1", server.addr.port()))
                .args(["--cacert", cacert, how, &url])
                .output()
                .unwrap();
            (output.stdout == content).then_some(())
        });
        assert!(whole.is_some(), "{how} {url}: not served whole within 10 s");
    }
    // Deaths are logged as the master reaps a worker, which it has long
    // done by now: none, on either server.
    for server in [&cleartext, &tls] {
        let log = server.log();
        let deaths = worker_deaths(&log);
        assert!(deaths.is_empty(), "{} worker deaths: {deaths:#?}\n{log}", deaths.len());
    }
    assert_eq!(
        [worker_pids(cleartext.pid()), worker_pids(tls.pid())],
        workers_before,
        "the workers were replaced"
    );
}

#[test]
fn a_site_deployed_by_switching_a_symlink_is_followed_within_a_second() {
    let dir = TempDir::new("symlinked-site");
    for (release, only) in [("41", "old.txt"), ("42", "new.txt")] {
        let folder = dir.join("releases").join(release);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("version.txt"), release).unwrap();
        std::fs::write(folder.join(only), release).unwrap();
    }
    let current = dir.join("current");
    std::os::unix::fs::symlink("releases/41", &current).unwrap();
    let server = Server::builder()
        .args(["-w", "1", "--static-dir", current.to_str().unwrap()])
        .start();
    assert_eq!(server.get("/version.txt").text(), "41");
    assert_eq!(server.get("/old.txt").status, 200);

    // Clients keep asking while the deploy switches the link atomically
    // (a new link renamed over the old one).
    let stop = Arc::new(AtomicBool::new(false));
    let switched_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let counts: Arc<[AtomicUsize; 3]> = Arc::new(Default::default()); // 41, 42, other
    let late_41 = Arc::new(AtomicUsize::new(0));
    let late = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, counts, late_41, late, switched_at) = (
                stop.clone(),
                counts.clone(),
                late_41.clone(),
                late.clone(),
                switched_at.clone(),
            );
            let addr = server.addr;
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    let answer = common::fleet::try_get(addr, "/version.txt", Duration::from_secs(5));
                    let slot = match answer.as_ref().map(|(_, body)| body.as_str()) {
                        Ok("41") => 0,
                        Ok("42") => 1,
                        _ => 2,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                    let since = switched_at
                        .lock()
                        .unwrap()
                        .map(|at| asked.saturating_duration_since(at));
                    if since.is_some_and(|since| since > Duration::from_millis(1100)) {
                        late.fetch_add(1, Ordering::Relaxed);
                        if slot == 0 {
                            late_41.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    // The clients are served release 41 before the switch.
    let serving = poll(Duration::from_secs(10), Duration::from_millis(10), || {
        (counts[0].load(Ordering::Relaxed) >= 20).then_some(())
    });
    assert!(serving.is_some(), "the clients got no 41s: {counts:?}");
    let next = dir.join("current.next");
    std::os::unix::fs::symlink("releases/42", &next).unwrap();
    std::fs::rename(&next, &current).unwrap();
    *switched_at.lock().unwrap() = Some(Instant::now());
    // Until the clients have asked 40 times more than a second after the
    // switch (the time it may take is what the test is about).
    let asked_late = poll(Duration::from_secs(15), Duration::from_millis(20), || {
        (late.load(Ordering::Relaxed) >= 40).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert!(
        asked_late.is_some(),
        "fewer than 40 requests more than a second after the switch: {}",
        late.load(Ordering::Relaxed)
    );
    let [old, new, other] = [0, 1, 2].map(|i| counts[i].load(Ordering::Relaxed));
    eprintln!("release 41: {old} answers, release 42: {new}, other: {other}");
    assert!(old > 0 && new > 0, "41: {old}, 42: {new}");
    assert_eq!(other, 0, "answers that were neither release");
    assert_eq!(
        late_41.load(Ordering::Relaxed),
        0,
        "release 41 served over a second after the switch"
    );
    // Files of the old release are gone with it; the new one's are there.
    assert_eq!(server.get("/old.txt").status, 404);
    assert_eq!(server.get("/new.txt").text(), "42");
}
