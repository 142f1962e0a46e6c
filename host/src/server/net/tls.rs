//! HTTPS: `--certfile` / `--keyfile` (gunicorn's names) turn every bind
//! into TLS, terminated with rustls. The crypto provider is *ring*: it
//! builds from source with only a C compiler (aws-lc-rs needs cmake and
//! takes minutes more on a 2-core machine), and it covers what is offered
//! here: TLS 1.3 and 1.2 with the AEAD suites rustls ships, ECDSA, Ed25519
//! and RSA keys. ALPN offers `h2` (unless `--no-http2`) and `http/1.1`.
//!
//! `--ca-certs` asks every client for a certificate one of its CAs signed
//! (mutual TLS); a client without one fails the handshake.
//!
//! Certificates are read once per process start, so a hot swap (SIGHUP)
//! also renews them; the master reads them first, and a bad new pair is
//! refused with the swap while the old workers keep serving.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::Options;

/// HTTP/2's ALPN protocol id.
pub const ALPN_HTTP2: &[u8] = b"h2";

/// HTTP/1.1's ALPN protocol id.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Reads the certificate chain and key, checks that they belong together,
/// and builds the acceptor: clients must present a certificate signed by
/// one in `ca_certs`, if given; HTTP/2 is offered by ALPN if `http2`. The
/// error is one line naming the file, the problem and the option.
fn acceptor(certfile: &Path, keyfile: &Path, ca_certs: Option<&Path>, http2: bool) -> Result<TlsAcceptor, String> {
    let certs = read_certificates(certfile, "--certfile")?;
    let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| {
        format!(
            "cannot read the private key {}: {e} (option --keyfile)",
            keyfile.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "the private key {} cannot be used: {e} (option --keyfile)",
            keyfile.display()
        )
    })?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|_| {
        format!(
            "the private key {} does not belong to the certificate {} (options --keyfile, --certfile)",
            keyfile.display(),
            certfile.display()
        )
    })?;
    let versions = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS cannot be set up: {e}"))?;
    let with_clients = match ca_certs {
        None => versions.with_no_client_auth(),
        Some(ca_certs) => versions.with_client_cert_verifier(client_verifier(ca_certs, provider)?),
    };
    let mut config = with_clients.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = match http2 {
        true => vec![ALPN_HTTP2.to_vec(), ALPN_HTTP1.to_vec()],
        false => vec![ALPN_HTTP1.to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The acceptor `options` ask for (`None`: cleartext).
pub fn configured(options: &Options) -> Result<Option<TlsAcceptor>, String> {
    options
        .tls_files()
        .map(|(certfile, keyfile)| acceptor(certfile, keyfile, options.ca_certs.as_deref(), !options.no_http2))
        .transpose()
}

/// The PEM certificates in `path`, at least one; `option` names the file
/// in the error.
fn read_certificates(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e} (option {option})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate (option {option})", path.display()));
    }
    Ok(certs)
}

/// Mutual TLS: a client must present a certificate that a CA in
/// `ca_certs` signed.
fn client_verifier(
    ca_certs: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(ca_certs, "--ca-certs")? {
        roots.add(cert).map_err(|e| {
            format!(
                "{} holds a certificate that is no CA: {e} (option --ca-certs)",
                ca_certs.display()
            )
        })?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| {
            format!(
                "the CA certificates in {} cannot check clients: {e} (option --ca-certs)",
                ca_certs.display()
            )
        })
}

/// `url` (as a listener prints it) with the scheme clients must use.
pub fn public_url(url: String, tls: bool) -> String {
    match url.strip_prefix("http://") {
        Some(rest) if tls => format!("https://{rest}"),
        _ => url,
    }
}
