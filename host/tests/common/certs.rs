//! Certificates for the TLS tests, made with rcgen when a test runs (no
//! key is ever committed), and a rustls client that trusts one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

/// A test certificate: its files and its DER.
pub struct TestCert {
    /// The PEM certificate.
    pub certfile: PathBuf,
    /// The PEM key.
    pub keyfile: PathBuf,
    /// The certificate, for a client to trust.
    pub der: CertificateDer<'static>,
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as
/// `NAME.crt` / `NAME.key` in `dir`.
pub fn make_cert(dir: &Path, name: &str) -> TestCert {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("a certificate");
    let (certfile, keyfile) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&certfile, cert.pem()).unwrap();
    std::fs::write(&keyfile, key.serialize_pem()).unwrap();
    TestCert {
        certfile,
        keyfile,
        der: cert.der().clone(),
    }
}

/// A client that trusts only `cert` and offers `alpn`.
pub fn client_config(cert: &TestCert, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// `--certfile … --keyfile …` for `cert`.
pub fn tls_args(cert: &TestCert) -> [String; 4] {
    [
        "--certfile".to_owned(),
        cert.certfile.display().to_string(),
        "--keyfile".to_owned(),
        cert.keyfile.display().to_string(),
    ]
}

/// A CA, written as `NAME.crt` in `dir`, that signs client certificates.
pub struct TestCa {
    /// The PEM certificate (for `--ca-certs`).
    pub certfile: PathBuf,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A new CA named `name`.
pub fn make_ca(dir: &Path, name: &str) -> TestCa {
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("a CA certificate");
    let certfile = dir.join(format!("{name}.crt"));
    std::fs::write(&certfile, cert.pem()).unwrap();
    TestCa { certfile, cert, key }
}

/// A client that trusts `server`, offers `http/1.1`, and presents a
/// certificate `ca` signed.
pub fn client_config_signed_by(server: &TestCert, ca: &TestCa) -> Arc<rustls::ClientConfig> {
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(vec!["client".to_owned()]).expect("params");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("a client certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert.der().clone()], key.into())
        .expect("a client certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A client certificate `ca` signed for `name` (its common name) with
/// serial number `serial`, as PEM files `NAME.crt` and `NAME.key` in `dir`
/// (for curl's --cert and --key).
pub fn make_client_cert(dir: &Path, ca: &TestCa, name: &str, serial: &[u8]) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("a client certificate");
    let (certfile, keyfile) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&certfile, cert.pem()).unwrap();
    std::fs::write(&keyfile, key.serialize_pem()).unwrap();
    (certfile, keyfile)
}
