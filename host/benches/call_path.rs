//! Micro-benchmark of the plugin call path alone, without HTTP: building
//! the environ from the request's parts, calling the app through the
//! checked ABI (`start_response` included), and collecting its head and
//! body: what serving an app adds to a request.
//!
//! `cargo bench -p host --bench call_path` (after `make build c-apps`: it
//! loads `target/release/libbench_apps.so` and its C twin,
//! `target/c-apps/libbench_hello_c.so`). Targets: ≤ 500 ns per call, and
//! the C interface within 5 % of the Rust one.

use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use host::plugin::app_spec::AppSpec;
use host::plugin::exchange::{Chunk, Exchange, ResponseSink, SendError};
use host::plugin::loader::{self, LoadedApp};
use host::plugin::response_head::ResponseHead;
use plugin_api::host::{Header, RequestVars};

/// Calls per timed round, and rounds (the median is reported).
const CALLS: u32 = 200_000;
const ROUNDS: usize = 9;
const TARGET: Duration = Duration::from_nanos(500);

/// Keeps what a transport would send.
#[derive(Default)]
struct Collect {
    status: u16,
    bytes: usize,
}

impl ResponseSink for Collect {
    fn head(&mut self, head: ResponseHead) -> Result<(), SendError> {
        self.status = head.status().as_u16();
        Ok(())
    }

    fn data(&mut self, chunk: Chunk) -> Result<(), SendError> {
        self.bytes += chunk.len() as usize;
        Ok(())
    }

    fn whole(&mut self, head: ResponseHead, body: Option<Chunk>) -> Result<(), SendError> {
        self.status = head.status().as_u16();
        self.bytes += body.map_or(0, |chunk| chunk.len() as usize);
        Ok(())
    }

    fn abort(&mut self) {}
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let rust = load(
        "BENCH_APPS",
        &root.join("target/release/libbench_apps.so"),
        "hello",
        "make build",
    );
    let c = load(
        "BENCH_C_APPS",
        &root.join("target/c-apps/libbench_hello_c.so"),
        "hello_app",
        "make c-apps",
    );

    println!(
        "| call path | ns/call (median of {ROUNDS}) | fastest round | target ≤ {} ns | C / Rust |",
        TARGET.as_nanos()
    );
    println!("|---|---|---|---|---|");
    let wrk = [("Host", "127.0.0.1:8080")];
    let browser = [
        ("Host", "example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "en-US,en;q=0.5"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Connection", "keep-alive"),
        ("Cookie", "session=0123456789abcdef; theme=dark"),
        ("Upgrade-Insecure-Requests", "1"),
    ];
    for (name, headers) in [("1 request header", &wrk[..]), ("8 request headers", &browser[..])] {
        let mut rust_median = Duration::ZERO;
        for (kind, app) in [("Rust", &rust), ("C", &c)] {
            let (median, fastest) = time_calls(app, headers);
            let verdict = if median <= TARGET { "met" } else { "**missed**" };
            let versus = match kind {
                "Rust" => {
                    rust_median = median;
                    String::new()
                }
                _ => format!("{:.3}", median.as_secs_f64() / rust_median.as_secs_f64()),
            };
            println!(
                "| hello ({kind}), {name} | {} | {} | {verdict} | {versus} |",
                median.as_nanos(),
                fastest.as_nanos()
            );
        }
    }
}

/// Loads `symbol` from the library `$env_var` names, or `default`; exits
/// with code 2 saying to run `build` if it is missing.
fn load(env_var: &str, default: &std::path::Path, symbol: &str, build: &str) -> LoadedApp {
    let library = std::env::var_os(env_var).map_or_else(|| default.to_path_buf(), PathBuf::from);
    if !library.exists() {
        eprintln!("{} is missing: run `{build}` first", library.display());
        std::process::exit(2);
    }
    let spec: AppSpec = format!("{}:{symbol}", library.display()).parse().expect("a LIB:SYMBOL");
    loader::load(&spec, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// Median and fastest time per call over the rounds.
fn time_calls(app: &LoadedApp, headers: &[(&str, &str)]) -> (Duration, Duration) {
    let mut rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..CALLS {
                black_box(call(app, headers));
            }
            started.elapsed() / CALLS
        })
        .collect();
    rounds.sort();
    (rounds[ROUNDS / 2], rounds[0])
}

/// One request, as the HTTP server makes it: borrowed header list and
/// variables, then the exchange.
fn call(app: &LoadedApp, headers: &[(&str, &str)]) -> (u16, usize) {
    let headers: Vec<Header<'_>> = headers.iter().map(|(n, v)| Header::new(n, v)).collect();
    let vars = RequestVars {
        method: "GET",
        script_name: "",
        path_info: "/hello",
        query_string: "",
        server_name: "127.0.0.1",
        server_port: "8080",
        server_protocol: "HTTP/1.1",
        remote_addr: "127.0.0.1",
        remote_port: "50000",
        url_scheme: "http",
        multithread: true,
        multiprocess: false,
        run_once: false,
    };
    let mut exchange = Exchange::new(Collect::default(), std::io::empty().take(0));
    let result = exchange.call(app, &vars, &headers, &[]);
    let summary = exchange.finish(result, String::new);
    assert_eq!(summary.status, Some(200));
    let sink = exchange.sink_mut();
    (sink.status, sink.bytes)
}
