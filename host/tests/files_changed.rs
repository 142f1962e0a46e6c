//! Files changed under the server while it sends them: a big file cut
//! short in place (as `cp` over it, `rsync --inplace` or a log rotation
//! do) ends the responses that were sending it, on every transport and
//! through an app's file body, and never costs a worker; a site deployed
//! by switching a symlink is followed within a second.

mod common;

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::certs::{make_cert, tls_args};
use common::fleet::{lines_with, worker_pids};
use common::server::{Server, TempDir};
use common::{app_spec, plugin_lib};

/// The file's size: large enough to be sent from the open file, long
/// enough to be in flight when it is cut.
const BIG: usize = 8 << 20;

/// Rounds of the fault.
const ROUNDS: usize = 10;

/// Clients per transport and path in each round.
const CLIENTS: usize = 2;

/// A curl download of `url` at 4 MB/s, speaking `how`.
fn slow_download(url: &str, how: &str, cacert: &str) -> Child {
    let port = url
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    Command::new("curl")
        .args(["--silent", "--max-time", "20", "--limit-rate", "4M", "-o", "/dev/null"])
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

#[test]
fn a_file_cut_short_while_it_is_sent_ends_those_responses_and_kills_no_worker() {
    let dir = TempDir::new("cut-files");
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
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
    let transports = [
        ("http", &cleartext, "--http1.1"),
        ("http", &cleartext, "--http2-prior-knowledge"),
        ("https", &tls, "--http1.1"),
        ("https", &tls, "--http2"),
    ];
    let cacert = cert.certfile.to_str().unwrap();
    for round in 0..ROUNDS {
        // In place: the same inode, rewritten whole.
        std::fs::write(&big, &content).unwrap();
        let mut downloads = Vec::new();
        for (scheme, server, how) in transports {
            for path in ["/big.bin", "/app/big.bin"] {
                let url = format!("{scheme}://localhost:{}{path}", server.addr.port());
                downloads.extend((0..CLIENTS).map(|_| slow_download(&url, how, cacert)));
            }
        }
        thread::sleep(Duration::from_millis(300));
        File::options().write(true).open(&big).unwrap().set_len(1000).unwrap();
        for mut download in downloads {
            let _ = download.wait();
        }
        for server in [&cleartext, &tls] {
            assert!(
                lines_with(&server.log(), " died: ").is_empty(),
                "round {round}: a worker died\n{}",
                server.log()
            );
        }
    }
    assert_eq!(
        [worker_pids(cleartext.pid()), worker_pids(tls.pid())],
        workers_before,
        "the workers were replaced"
    );
    // Whole again, the file is served whole on every transport.
    std::fs::write(&big, &content).unwrap();
    thread::sleep(Duration::from_millis(1100)); // the lookup cache's second
    for (scheme, server, how) in transports {
        let url = format!("{scheme}://localhost:{}/big.bin", server.addr.port());
        let output = Command::new("curl")
            .args(["--silent", "--max-time", "20", "--resolve"])
            .arg(format!("localhost:{}:127.0.0.1", server.addr.port()))
            .args(["--cacert", cacert, how, &url])
            .output()
            .unwrap();
        assert!(output.stdout == content, "{how} {url}: the bytes differ");
    }
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
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, counts, late_41, switched_at) =
                (stop.clone(), counts.clone(), late_41.clone(), switched_at.clone());
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
                    if slot == 0 && since.is_some_and(|since| since > Duration::from_millis(1100)) {
                        late_41.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let next = dir.join("current.next");
    std::os::unix::fs::symlink("releases/42", &next).unwrap();
    std::fs::rename(&next, &current).unwrap();
    *switched_at.lock().unwrap() = Some(Instant::now());
    thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
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
