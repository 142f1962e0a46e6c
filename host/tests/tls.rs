//! HTTPS with `--certfile` / `--keyfile`: the real `host` binary, a rustls
//! client, and certificates the tests make with rcgen (no key is ever
//! committed).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::certs::{client_config, client_config_signed_by, make_ca, make_cert, make_client_cert, tls_args, TestCert};
use common::fleet::poll;
use common::server::{request_bytes, Server, TempDir};
use common::{app_spec, plugin_lib, run_host, stderr_text};
use rustls::pki_types::ServerName;

type TlsConn = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> std::io::Result<TlsConn> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    // Complete the handshake now, so a refused certificate shows here.
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// One request on `stream`: (status, body).
fn exchange(stream: &mut TlsConn, path: &str) -> (u16, Vec<u8>) {
    stream.write_all(&request_bytes("GET", path, &[], b"")).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = response.parse(&buf).unwrap() {
            let status = response.code.unwrap();
            let len: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < head_len + len {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "the connection ended mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return (status, buf[head_len..head_len + len].to_vec());
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the connection ended before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn echo() -> String {
    app_spec(&plugin_lib("echo"), "application")
}

#[test]
fn https_serves_the_site_and_apps_on_kept_alive_connections() {
    let dir = TempDir::new("tls-serve");
    let cert = make_cert(dir.path(), "site");
    let server = Server::builder().arg(echo()).args(tls_args(&cert)).start();
    let config = client_config(&cert, &[b"http/1.1"]);
    let mut conn = connect(server.addr, &config).expect("a TLS connection");
    assert_eq!(conn.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let index = std::fs::read(common::repo_root().join("html/index.html")).unwrap();
    for round in 0..10 {
        let (status, body) = exchange(&mut conn, "/index.html");
        assert_eq!((status, body == index), (200, true), "round {round}");
        let (status, body) = exchange(&mut conn, "/who");
        assert_eq!(status, 200, "round {round}");
        let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(report["environ"]["wsgi.url_scheme"], "https", "{report:#}");
    }

    // Plain HTTP, or garbage, on the TLS port: closed, ten times over, and
    // the server keeps serving.
    for attempt in 0..10 {
        let mut plain = TcpStream::connect(server.addr).unwrap();
        plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        plain.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        assert!(!answer.starts_with(b"HTTP/"), "attempt {attempt} got plain HTTP back");
    }
    let mut again = connect(server.addr, &config).expect("TLS still works");
    assert_eq!(exchange(&mut again, "/index.html").0, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn bad_certificate_files_are_refused_with_exit_2_naming_the_option() {
    let dir = TempDir::new("tls-bad");
    let good = make_cert(dir.path(), "good");
    let other = make_cert(dir.path(), "other");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.join("missing.pem");
    let s = |p: &Path| p.display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--certfile".into(), s(&missing), "--keyfile".into(), s(&good.keyfile)],
            "--certfile",
        ),
        (
            vec!["--certfile".into(), s(&garbage), "--keyfile".into(), s(&good.keyfile)],
            "--certfile",
        ),
        (
            vec!["--certfile".into(), s(&good.certfile), "--keyfile".into(), s(&garbage)],
            "--keyfile",
        ),
        (
            vec![
                "--certfile".into(),
                s(&good.certfile),
                "--keyfile".into(),
                s(&other.keyfile),
            ],
            "does not belong",
        ),
        (vec!["--certfile".into(), s(&good.certfile)], "--keyfile"),
    ];
    for workers in ["0", "1"] {
        for (args, needle) in &cases {
            let mut all = vec![
                "--bind".to_owned(),
                "127.0.0.1:0".to_owned(),
                "-w".to_owned(),
                workers.to_owned(),
                echo(),
            ];
            all.extend(args.iter().cloned());
            let output = run_host(&all, &[], b"");
            let stderr = stderr_text(&output);
            assert_eq!(output.status.code(), Some(2), "{args:?} (-w {workers}): {stderr}");
            let last = stderr.lines().last().unwrap_or_default();
            assert!(
                last.starts_with("error: ") && last.contains(needle),
                "{args:?}: {stderr}"
            );
        }
    }
}

#[test]
fn sighup_renews_the_certificate_and_refuses_a_bad_one() {
    let dir = TempDir::new("tls-renew");
    let first = make_cert(dir.path(), "first");
    let live = TestCert {
        certfile: dir.join("live.crt"),
        keyfile: dir.join("live.key"),
        der: first.der.clone(),
    };
    std::fs::copy(&first.certfile, &live.certfile).unwrap();
    std::fs::copy(&first.keyfile, &live.keyfile).unwrap();
    let mut server = Server::builder()
        .arg(echo())
        .args(["-w", "1"])
        .args(tls_args(&live))
        .start();
    let old_client = client_config(&first, &[b"http/1.1"]);
    assert_eq!(
        exchange(&mut connect(server.addr, &old_client).unwrap(), "/index.html").0,
        200
    );

    // Renewal: new files, SIGHUP; new connections get the new certificate.
    let second = make_cert(dir.path(), "second");
    std::fs::copy(&second.certfile, &live.certfile).unwrap();
    std::fs::copy(&second.keyfile, &live.keyfile).unwrap();
    server.signal("HUP");
    let new_client = client_config(&second, &[b"http/1.1"]);
    let renewed = poll(Duration::from_secs(20), Duration::from_millis(50), || {
        connect(server.addr, &new_client).ok()
    });
    let mut renewed = renewed.unwrap_or_else(|| panic!("the new certificate was never served:\n{}", server.log()));
    assert_eq!(exchange(&mut renewed, "/index.html").0, 200);

    // A broken renewal is refused with the swap; the last good one serves on.
    std::fs::write(&live.certfile, "broken\n").unwrap();
    server.signal("HUP");
    let log = server.wait_for_log("keeps serving", Duration::from_secs(20));
    assert!(log.contains("keeps serving") && log.contains("--certfile"), "{log}");
    for _ in 0..10 {
        let mut conn = connect(server.addr, &new_client).expect("the good certificate still serves");
        assert_eq!(exchange(&mut conn, "/index.html").0, 200);
    }
    server.stop();
}

/// One request on a new connection: the status, or why there was none.
fn try_request(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> std::io::Result<u16> {
    let mut conn = connect(addr, config)?;
    conn.write_all(&request_bytes("GET", "/index.html", &[], b""))?;
    let mut head = [0u8; 12];
    conn.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

#[test]
fn ca_certs_let_in_only_clients_with_a_certificate_the_ca_signed() {
    let dir = TempDir::new("tls-mutual");
    let cert = make_cert(dir.path(), "site");
    let ca = make_ca(dir.path(), "clients-ca");
    let stranger = make_ca(dir.path(), "stranger-ca");
    let server = Server::builder()
        .arg(echo())
        .args(tls_args(&cert))
        .args(["--ca-certs", &ca.certfile.display().to_string()])
        .start();
    let member = client_config_signed_by(&cert, &ca);
    let outsider = client_config_signed_by(&cert, &stranger);
    let anonymous = client_config(&cert, &[b"http/1.1"]);
    for round in 0..10 {
        assert_eq!(try_request(server.addr, &member).ok(), Some(200), "round {round}");
        assert!(
            try_request(server.addr, &outsider).is_err(),
            "round {round}: a stranger's client got in"
        );
        assert!(
            try_request(server.addr, &anonymous).is_err(),
            "round {round}: a client without a certificate got in"
        );
    }

    // --ca-certs alone, or with a file that holds no certificate: exit 2.
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let s = |p: &Path| p.display().to_string();
    let mut with_cert: Vec<String> = vec!["--bind".into(), "127.0.0.1:0".into(), echo()];
    with_cert.extend(tls_args(&cert));
    for (args, needle) in [
        (
            vec![
                "--bind".into(),
                "127.0.0.1:0".into(),
                echo(),
                "--ca-certs".into(),
                s(&ca.certfile),
            ],
            "--certfile",
        ),
        (
            [with_cert.clone(), vec!["--ca-certs".into(), s(&garbage)]].concat(),
            "--ca-certs",
        ),
        (
            [with_cert, vec!["--ca-certs".into(), s(&dir.join("missing.pem"))]].concat(),
            "--ca-certs",
        ),
    ] {
        let output = run_host(&args, &[], b"");
        let stderr = stderr_text(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.lines().last().unwrap_or_default().contains(needle),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn mutual_tls_clients_are_named_in_the_environ_as_mod_ssl_names_them() {
    let dir = TempDir::new("tls-client-environ");
    let cert = make_cert(dir.path(), "site");
    let ca = make_ca(dir.path(), "clients-ca");
    let (client_crt, client_key) = make_client_cert(dir.path(), &ca, "alice", &[0x12, 0x34]);
    let async_echo = format!(
        "/a={}",
        common::app_spec(&common::plugin_lib("echo"), "async_application")
    );
    let server = Server::builder()
        .arg(echo())
        .args(["--mount", &async_echo])
        .args(tls_args(&cert))
        .args(["--ca-certs", &ca.certfile.display().to_string()])
        .start();
    let pem = std::fs::read_to_string(&client_crt).unwrap();
    for how in ["--http1.1", "--http2"] {
        for path in ["/who", "/a/who"] {
            let output = std::process::Command::new("curl")
                .args(["--silent", "--show-error", "--max-time", "20", how])
                .arg("--resolve")
                .arg(format!("localhost:{}:127.0.0.1", server.addr.port()))
                .arg("--cacert")
                .arg(&cert.certfile)
                .arg("--cert")
                .arg(&client_crt)
                .arg("--key")
                .arg(&client_key)
                .arg(format!("https://localhost:{}{path}", server.addr.port()))
                .output()
                .expect("run curl");
            let text = String::from_utf8_lossy(&output.stdout);
            let report: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{how} {path}: {e}: {text}"));
            let var = |name: &str| report["environ"][name].as_str().unwrap_or_default().to_owned();
            assert_eq!(var("SSL_CLIENT_VERIFY"), "SUCCESS", "{how} {path}");
            assert_eq!(var("SSL_CLIENT_S_DN"), "CN=alice", "{how} {path}");
            assert_eq!(var("SSL_CLIENT_I_DN"), "CN=clients-ca", "{how} {path}");
            assert_eq!(var("SSL_CLIENT_M_SERIAL"), "1234", "{how} {path}");
            assert_eq!(
                var("SSL_CLIENT_CERT").replace("\r\n", "\n"),
                pem.replace("\r\n", "\n"),
                "{how} {path}"
            );
        }
    }
    // Without --ca-certs nothing of the kind is there.
    let plain = Server::builder().arg(echo()).args(tls_args(&cert)).start();
    let output = std::process::Command::new("curl")
        .args(["--silent", "--resolve"])
        .arg(format!("localhost:{}:127.0.0.1", plain.addr.port()))
        .arg("--cacert")
        .arg(&cert.certfile)
        .arg(format!("https://localhost:{}/who", plain.addr.port()))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&output.stdout).contains("SSL_CLIENT"));
}
