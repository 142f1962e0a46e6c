//! The benchmark's apps, the same workloads the native baseline
//! (`bench/baseline`) has compiled in:
//!
//! | symbol | answers |
//! |---|---|
//! | `hello` | `Hello world!` (12 bytes, `text/plain`) |
//! | `sleep` | the same, after sleeping 10 ms on the calling thread |
//!
//! `host -w 1 --mount /hello=libbench_apps.so:hello --mount /sleep=libbench_apps.so:sleep`

use std::time::Duration;

use plugin_api::{export_app, Environ, ResponseError, StartResponse};

/// The body both apps answer.
const HELLO: &str = "Hello world!";

/// How long `sleep` sleeps: a request that waits on something slow (a
/// database, another service) without using the CPU.
const SLEEP: Duration = Duration::from_millis(10);

fn hello(_environ: &Environ, start_response: &mut StartResponse) -> Result<&'static str, ResponseError> {
    start_response.start("200 OK", &[("Content-Type", "text/plain"), ("Content-Length", "12")])?;
    Ok(HELLO)
}

fn sleep(environ: &Environ, start_response: &mut StartResponse) -> Result<&'static str, ResponseError> {
    std::thread::sleep(SLEEP);
    hello(environ, start_response)
}

export_app!(hello);
export_app!(sleep);
