//! A TLS client's certificate as apps see it (with `--ca-certs`): the
//! variables Apache's mod_ssl sets, made once per connection. The
//! certificate is parsed by x509-parser; names are written as RFC 4514
//! strings (mod_ssl's format, most specific part first).

use base64::Engine;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::header_list::HeaderList;

/// The environ's variables for a client that presented `der` (its leaf
/// certificate), which the TLS handshake already verified.
pub fn environ_of(der: &[u8]) -> HeaderList {
    let pem = pem_of(der);
    let parsed = X509Certificate::from_der(der).ok().map(|(_, cert)| cert);
    let (subject, issuer, serial) = match &parsed {
        Some(cert) => (
            rfc4514(cert.subject()),
            rfc4514(cert.issuer()),
            format!("{:X}", cert.tbs_certificate.serial),
        ),
        // Verified by rustls, yet unparsable here: say what can be said.
        None => (String::new(), String::new(), String::new()),
    };
    HeaderList::copy_of([
        ("SSL_CLIENT_VERIFY", "SUCCESS"),
        ("SSL_CLIENT_S_DN", subject.as_str()),
        ("SSL_CLIENT_I_DN", issuer.as_str()),
        ("SSL_CLIENT_M_SERIAL", serial.as_str()),
        ("SSL_CLIENT_CERT", pem.as_str()),
    ])
}

/// `der` in PEM, lines of 64 characters.
fn pem_of(der: &[u8]) -> String {
    let base64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in base64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The names RFC 4514 §3 (and mod_ssl, for the others) give attribute
/// types, by OID.
const SHORT_NAMES: [(&str, &str); 15] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.4", "SN"),
    ("2.5.4.42", "GN"),
    ("2.5.4.12", "title"),
    ("2.5.4.43", "initials"),
];

/// A distinguished name as RFC 4514 writes it: the last RDN first,
/// `SHORTNAME=value` (a dotted OID where no short name is known), values
/// escaped, several values of one RDN joined with `+`.
fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            let parts: Vec<String> = rdn
                .iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    let key = SHORT_NAMES
                        .iter()
                        .find(|(known, _)| *known == oid)
                        .map_or(oid.clone(), |(_, short)| (*short).to_owned());
                    let value = attribute
                        .as_str()
                        .map(escape)
                        .unwrap_or_else(|_| format!("#{}", hex(attribute.attr_value().as_bytes())));
                    format!("{key}={value}")
                })
                .collect();
            parts.join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            escaped.push('\\');
        }
        if c == '\0' {
            escaped.push_str("\\00");
        } else {
            escaped.push(c);
        }
    }
    escaped
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_as_rfc_4514_says() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" #lead and trail "), "\\ #lead and trail\\ ");
        assert_eq!(escape("#x"), "\\#x");
    }

    #[test]
    fn a_certificate_gives_mod_ssl_s_variables() {
        let mut params = rcgen::CertificateParams::new(vec!["client.example".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        params.serial_number = Some(rcgen::SerialNumber::from(vec![0x0a, 0x1b]));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let vars = environ_of(cert.der());
        let get = |name: &str| {
            vars.pairs()
                .iter()
                .find(|h| h.name() == name)
                .map(|h| h.value().to_owned())
        };
        assert_eq!(get("SSL_CLIENT_VERIFY").as_deref(), Some("SUCCESS"));
        assert_eq!(get("SSL_CLIENT_S_DN").as_deref(), Some("CN=alice,O=Example\\, Inc"));
        assert_eq!(get("SSL_CLIENT_I_DN"), get("SSL_CLIENT_S_DN"), "self-signed");
        assert_eq!(get("SSL_CLIENT_M_SERIAL").as_deref(), Some("A1B"));
        let pem = get("SSL_CLIENT_CERT").unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n") && pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));
    }
}
