//! The network layer: listening sockets and what is known of each
//! accepted connection ([`listener`]), the PROXY protocol header of a
//! TCP balancer ([`proxy_protocol`]), TLS ([`tls`], and the client
//! certificate of mutual TLS, [`client_cert`]), and the drain that stops
//! a process without dropping a connection ([`drain`]).

pub mod client_cert;
pub mod drain;
pub mod listener;
pub mod proxy_protocol;
pub mod tls;
