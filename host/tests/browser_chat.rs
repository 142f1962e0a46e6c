//! The chat page (`html/chat.html`) in a real browser: two headless
//! Chromium tabs, driven over the DevTools protocol, exchange messages
//! through the server and the axum plugin behind it. Debian's `chromium`
//! is installed by `make test` where it can be (`host/tests/install-deps`);
//! where it cannot, this test says it skipped, and why.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::server::{Server, TempDir};
use common::{app_spec, plugin_lib};

/// The browser, if there is one.
fn chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|path| path.is_file())
}

/// A headless Chromium, killed on drop.
struct Browser {
    child: Child,
    /// The DevTools WebSocket address.
    devtools: String,
    _profile: TempDir,
}

impl Browser {
    fn start(binary: &PathBuf) -> Browser {
        let profile = TempDir::new("chromium");
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(address.trim().to_owned());
                }
            }
        });
        let devtools = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium did not say where DevTools listens within 30 s");
        Browser {
            child,
            devtools,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools protocol connection: commands by id, events skipped.
struct DevTools {
    socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    next_id: u64,
}

impl DevTools {
    async fn connect(address: &str) -> DevTools {
        // ws://127.0.0.1:PORT/devtools/browser/ID
        let host_port = address
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .expect("a ws:// address");
        let stream = tokio::net::TcpStream::connect(host_port)
            .await
            .expect("connect to DevTools");
        let (socket, _) = tokio_tungstenite::client_async(address, stream)
            .await
            .expect("DevTools handshake");
        DevTools { socket, next_id: 1 }
    }

    /// Runs `method` with `params` (in `session`, if given): its result.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .expect("send a command");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .expect("DevTools answered within 30 s")
                .expect("DevTools is still there")
                .expect("a DevTools message");
            let Message::Text(text) = message else { continue };
            let reply: Value = serde_json::from_str(&text).expect("DevTools speaks JSON");
            if reply["id"] == json!(id) {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the tab of `session`: its value.
    async fn eval(&mut self, session: &str, expression: &str) -> Value {
        let result = self
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Polls `expression` in the tab until `done` holds (≤ 20 s).
    async fn wait_for(&mut self, session: &str, expression: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.eval(session, expression).await;
            if done(&value) {
                return value;
            }
            assert!(Instant::now() < deadline, "{expression} is still {value}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens `url` in a new tab: the tab's session.
    async fn open(&mut self, url: &str) -> String {
        let target = self.call(None, "Target.createTarget", json!({"url": url})).await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        attached["sessionId"].as_str().expect("a session").to_owned()
    }
}

#[test]
fn two_browser_tabs_chat_through_the_server() {
    let Some(binary) = chromium() else {
        eprintln!(
            "SKIPPED two_browser_tabs_chat_through_the_server: no Chromium at /usr/bin/chromium \
             (make test installs Debian's chromium with host/tests/install-deps where it can: it needs root or sudo and apt-get)"
        );
        return;
    };
    let mount = format!("/chat={}", app_spec(&plugin_lib("axum_demo"), "application"));
    let server = Server::builder().args(["-w", "1", "--mount", &mount]).start();
    let page = format!("http://127.0.0.1:{}/chat.html", server.addr.port());
    let browser = Browser::start(&binary);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let mut devtools = DevTools::connect(&browser.devtools).await;
            let ada = devtools.open(&page).await;
            let bob = devtools.open(&page).await;
            for tab in [&ada, &bob] {
                let state = "document.getElementById('state') && document.getElementById('state').textContent";
                devtools.wait_for(tab, state, |v| v == "connected").await;
            }
            let say = |name: &str, text: &str| {
                format!(
                    "document.getElementById('name').value = '{name}'; \
                     document.getElementById('text').value = '{text}'; \
                     document.getElementById('say').requestSubmit(); true"
                )
            };
            let log = "document.getElementById('log').innerText";
            for round in 0..3 {
                let line = format!("ada: hello {round}");
                devtools.eval(&ada, &say("ada", &format!("hello {round}"))).await;
                devtools
                    .wait_for(&bob, log, |v| v.as_str().is_some_and(|t| t.contains(&line)))
                    .await;
                let line = format!("bob: hi {round}");
                devtools.eval(&bob, &say("bob", &format!("hi {round}"))).await;
                devtools
                    .wait_for(&ada, log, |v| v.as_str().is_some_and(|t| t.contains(&line)))
                    .await;
            }
            drop(browser);
        });
    // Each tab's socket is one access-log line when it ends (the browser
    // is gone now).
    common::fleet::wait_for_count(&server, "\"GET /chat/ws HTTP/1.1\" 101 ", 2, Duration::from_secs(10));
}
