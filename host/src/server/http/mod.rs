//! HTTP itself: a connection in each version ([`http1`], [`http2`]) and
//! what is kept per connection ([`connection`]), one request's context
//! ([`context`]), the
//! rules hyper leaves to the server ([`strict`]), response bodies
//! ([`body`]) and the responses the server makes itself ([`responses`]),
//! the forwarding headers of trusted proxies ([`forwarded`]), and request ids
//! ([`request_id`]).

pub mod body;
pub mod connection;
pub mod context;
pub mod forwarded;
pub mod http1;
pub mod http2;
pub mod request_id;
pub mod responses;
pub mod strict;
