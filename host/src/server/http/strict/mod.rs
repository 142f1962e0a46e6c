//! Strict HTTP/1.1 at the edge: every rule of RFC 9110/9112 that hyper
//! leaves to the application, in two places.
//!
//! - [`wire`]: rules on the bytes of a connection (bare LF line endings,
//!   fragments, Transfer-Encoding with Content-Length, duplicate
//!   Content-Length, chunk-size and chunk-extension grammar, trailers),
//!   which hyper accepts and then hides: checked by a scanner on the
//!   connection's reads, before hyper parses them.
//! - [`request`]: rules on each parsed request (Host, target form and
//!   characters, method, transfer codings, expectations), before routing.
//!
//! hyper itself answers 400 for malformed request lines and fields, a
//! final transfer coding other than chunked, any transfer coding on
//! HTTP/1.0, and invalid or differing Content-Length values; 431 for heads
//! over `--max-header-size` or `--max-headers`.

pub mod request;
pub mod wire;
