//! CGI mode (`host cgi LIB:SYMBOL`), seed 001's `run_with_cgi`: the environ
//! comes from CGI variables and stdin, the response goes to stdout as
//! `Status:` + headers + body, so an app runs under any CGI-capable server.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use plugin_api::host::{Header, RequestVars};

use crate::open_file::READ_CHUNK;
use crate::plugin::exchange::{Chunk, Exchange, ResponseSink, SendError, Summary};
use crate::plugin::loader::LoadedApp;
use crate::plugin::response_head::ResponseHead;

/// Runs `app` once for the CGI request described by `env`, reading the body
/// from `stdin` and writing the response to `stdout`.
pub fn run(app: &LoadedApp, env: &HashMap<String, String>, stdin: impl Read, stdout: impl Write) -> Summary {
    let var = |name: &str| env.get(name).map(String::as_str).unwrap_or_default();
    let or = |name: &str, default: &'static str| Some(var(name)).filter(|v| !v.is_empty()).unwrap_or(default);

    let header_names: Vec<(String, &str)> = env
        .iter()
        .filter_map(|(key, value)| Some((cgi_header_name(key)?, value.as_str())))
        .collect();
    let headers: Vec<Header<'_>> = header_names
        .iter()
        .map(|(name, value)| Header::new(name, value))
        .collect();
    let vars = RequestVars {
        method: or("REQUEST_METHOD", "GET"),
        script_name: var("SCRIPT_NAME"),
        path_info: or("PATH_INFO", "/"),
        query_string: var("QUERY_STRING"),
        server_name: or("SERVER_NAME", "localhost"),
        server_port: or("SERVER_PORT", "80"),
        server_protocol: or("SERVER_PROTOCOL", "HTTP/1.0"),
        remote_addr: var("REMOTE_ADDR"),
        remote_port: var("REMOTE_PORT"),
        url_scheme: if matches!(var("HTTPS"), "on" | "1" | "yes") {
            "https"
        } else {
            "http"
        },
        multithread: false,
        multiprocess: true,
        run_once: true,
    };
    // The web server's TLS variables (mod_ssl's SSL_*) pass through.
    let extra: Vec<Header<'_>> = env
        .iter()
        .filter(|(key, _)| key.starts_with("SSL_"))
        .map(|(key, value)| Header::new(key, value))
        .collect();
    // CGI: the body is exactly CONTENT_LENGTH bytes of stdin.
    let body_length = var("CONTENT_LENGTH").trim().parse().unwrap_or(0);
    let sink = CgiSink { out: stdout };
    Exchange::new(sink, stdin.take(body_length)).run(app, &vars, &headers, &extra)
}

/// `HTTP_USER_AGENT` → `user-agent`; `CONTENT_TYPE` / `CONTENT_LENGTH` too.
fn cgi_header_name(key: &str) -> Option<String> {
    let name = match key {
        "CONTENT_TYPE" | "CONTENT_LENGTH" => key,
        _ => key.strip_prefix("HTTP_")?,
    };
    Some(name.to_ascii_lowercase().replace('_', "-"))
}

/// Writes CGI's response format.
struct CgiSink<W> {
    out: W,
}

impl<W: Write> CgiSink<W> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.out.flush()
    }
}

impl<W: Write> ResponseSink for CgiSink<W> {
    fn head(&mut self, head: ResponseHead) -> Result<(), SendError> {
        let mut text = format!("Status: {} {}\r\n", head.status().as_u16(), head.reason());
        for (name, value) in head.headers() {
            text.push_str(&format!("{name}: {}\r\n", String::from_utf8_lossy(value.as_bytes())));
        }
        text.push_str("\r\n");
        self.write_all(text.as_bytes())
            .map_err(|e| SendError::Transport(format!("writing to stdout failed: {e}")))
    }

    fn data(&mut self, chunk: Chunk) -> Result<(), SendError> {
        let written = match &chunk {
            // A file body: read a chunk at a time, never from a mapping.
            Chunk::File(file, range) => {
                let mut left = range.clone();
                while !left.is_empty() {
                    let piece = file
                        .read(&left, READ_CHUNK)
                        .map_err(|e| SendError::Transport(format!("the file body cannot be read: {e}")))?;
                    left.start += piece.len() as u64;
                    self.out
                        .write_all(&piece)
                        .map_err(|e| SendError::Transport(format!("writing to stdout failed: {e}")))?;
                }
                self.out.flush()
            }
            other => self.write_all(other.bytes().unwrap_or_default()),
        };
        written.map_err(|e| SendError::Transport(format!("writing to stdout failed: {e}")))
    }

    fn abort(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::cgi_header_name;

    #[test]
    fn cgi_variables_map_back_to_header_names() {
        assert_eq!(cgi_header_name("HTTP_USER_AGENT").as_deref(), Some("user-agent"));
        assert_eq!(cgi_header_name("CONTENT_TYPE").as_deref(), Some("content-type"));
        assert_eq!(cgi_header_name("PATH_INFO"), None);
    }
}
