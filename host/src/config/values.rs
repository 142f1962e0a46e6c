//! The value types options are written in: addresses, mounts, sizes,
//! durations and formats, each parsed from the text a user types and shown
//! back the same way (in `--help`, `--print-config` and config files).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plugin::app_spec::AppSpec;

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BindAddr {
    /// A TCP address such as `127.0.0.1:8000`.
    Tcp(std::net::SocketAddr),
    /// A unix socket path, written `unix:PATH`.
    Unix(PathBuf),
}

impl FromStr for BindAddr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            return Ok(BindAddr::Unix(PathBuf::from(path)));
        }
        let text = text.strip_prefix("tcp:").unwrap_or(text);
        // A bare port, as the seeds take it: loopback only.
        if let Ok(port) = text.parse::<u16>() {
            return Ok(BindAddr::Tcp(([127, 0, 0, 1], port).into()));
        }
        let text = if text.starts_with(':') {
            format!("0.0.0.0{text}")
        } else {
            text.to_owned()
        };
        text.parse().map(BindAddr::Tcp).map_err(|_| {
            format!("'{text}' is not a bind address: write HOST:PORT (e.g. 127.0.0.1:8000), a port, or unix:PATH")
        })
    }
}

impl TryFrom<String> for BindAddr {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp(addr) => write!(f, "{addr}"),
            BindAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl From<BindAddr> for String {
    fn from(addr: BindAddr) -> String {
        addr.to_string()
    }
}

/// An app mounted at a URL prefix, `--mount /time=ctime:application`, or
/// at a file suffix, `--mount '*.py=mini_frame:application'` (the seeds'
/// layout: only paths ending in `.py` go to the app).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `/`, a prefix without a trailing slash (e.g. `/time`), or `*` and a
    /// suffix (e.g. `*.py`).
    pub prefix: String,
    /// The app.
    pub app: AppSpec,
}

impl Mount {
    /// A mount, with the prefix normalised (leading `/`, no trailing `/`).
    pub fn new(prefix: &str, app: AppSpec) -> Result<Self, String> {
        if let Some(suffix) = prefix.strip_prefix('*') {
            if suffix.is_empty() || suffix.contains(['*', '/']) {
                return Err(format!(
                    "mount pattern '{prefix}' must be '*' and a file suffix, e.g. '*.py=mini_frame:application'"
                ));
            }
            return Ok(Mount {
                prefix: prefix.to_owned(),
                app,
            });
        }
        if !prefix.starts_with('/') {
            return Err(format!(
                "mount prefix '{prefix}' must start with '/' (or be a suffix pattern like '*.py'), e.g. \
                 /time=ctime:application"
            ));
        }
        let trimmed = prefix.trim_end_matches('/');
        Ok(Mount {
            prefix: if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            },
            app,
        })
    }
}

impl FromStr for Mount {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (prefix, app) = text
            .split_once('=')
            .ok_or_else(|| format!("'{text}' is not a mount: write PREFIX=LIB:SYMBOL, e.g. /time=ctime:application"))?;
        Mount::new(
            prefix,
            app.parse()
                .map_err(|e: crate::plugin::app_spec::SpecError| e.to_string())?,
        )
    }
}

/// A size in bytes, written `1048576`, `64KiB`, `10MiB`, `1GiB` (also `KB`/`MB`/`K`/`M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SizeText", into = "String")]
pub struct Size(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeText {
    Number(u64),
    Text(String),
}

impl TryFrom<SizeText> for Size {
    type Error = String;
    fn try_from(value: SizeText) -> Result<Self, String> {
        match value {
            SizeText::Number(n) => Ok(Size(n)),
            SizeText::Text(text) => text.parse(),
        }
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (number, unit) = number_and_unit(text);
        let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            _ => return Err(format!("'{text}' is not a size: write bytes or e.g. 64KiB, 10MiB")),
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .map(Size)
            .ok_or_else(|| format!("'{text}' is not a size: write bytes or e.g. 64KiB, 10MiB"))
    }
}

/// `"10MiB"` → `("10", "MiB")`, `"1.5s"` → `("1.5", "s")`.
fn number_and_unit(text: &str) -> (&str, &str) {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    (number, unit.trim())
}

impl From<Size> for String {
    fn from(size: Size) -> String {
        size.to_string()
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        match UNITS.iter().find(|(unit, _)| self.0 >= *unit && self.0 % unit == 0) {
            Some((unit, name)) => write!(f, "{}{name}", self.0 / unit),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A duration, written `30s`, `500ms`, `2m`, or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SizeText", into = "String")]
pub struct Seconds(pub Duration);

impl TryFrom<SizeText> for Seconds {
    type Error = String;
    fn try_from(value: SizeText) -> Result<Self, String> {
        match value {
            SizeText::Number(n) => Ok(Seconds(Duration::from_secs(n))),
            SizeText::Text(text) => text.parse(),
        }
    }
}

impl FromStr for Seconds {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (number, unit) = number_and_unit(text);
        let scale = match unit {
            "" | "s" => 1.0,
            "ms" => 1e-3,
            "m" => 60.0,
            _ => return Err(format!("'{text}' is not a duration: write e.g. 30s, 500ms, 2m")),
        };
        number
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(|n| Seconds(Duration::from_secs_f64(n * scale)))
            .ok_or_else(|| format!("'{text}' is not a duration: write e.g. 30s, 500ms, 2m"))
    }
}

impl From<Seconds> for String {
    fn from(value: Seconds) -> String {
        value.to_string()
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Access log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One human-readable line per request.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
    /// Apache's combined format (with Referer and User-Agent), for the
    /// tools that read it.
    Combined,
    /// No access log.
    Off,
}

impl fmt::Display for AccessLogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessLogFormat::Text => "text",
            AccessLogFormat::Json => "json",
            AccessLogFormat::Combined => "combined",
            AccessLogFormat::Off => "off",
        })
    }
}

/// Mounts as a config file writes them: a table of prefix → `LIB:SYMBOL`.
pub mod mount_table {
    use super::*;
    use serde::{Deserializer, Serializer};

    /// Writes `[mounts]` as `"/prefix" = "LIB:SYMBOL"`.
    pub fn serialize<S: Serializer>(mounts: &[Mount], serializer: S) -> Result<S::Ok, S::Error> {
        let table: BTreeMap<&str, String> = mounts.iter().map(|m| (m.prefix.as_str(), m.app.to_string())).collect();
        table.serialize(serializer)
    }

    /// Reads `[mounts]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Mount>, D::Error> {
        let table = BTreeMap::<String, String>::deserialize(deserializer)?;
        table
            .into_iter()
            .map(|(prefix, app)| format!("{prefix}={app}").parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

/// A list a config file may also write as one value (seed 004 writes
/// `dynamic_path = "./plugins"`).
pub mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }

    /// Always writes a list.
    pub fn serialize<T: Serialize, S: Serializer>(values: &[T], serializer: S) -> Result<S::Ok, S::Error> {
        values.serialize(serializer)
    }

    /// Reads a list or a single value.
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        })
    }
}

/// An address or network a proxy may connect from: `10.0.0.1`,
/// `10.0.0.0/8`, `::1`, or `*` for any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ProxyNet {
    /// Any peer.
    Any,
    /// A network: address and prefix length.
    Net(IpAddr, u8),
}

impl FromStr for ProxyNet {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(ProxyNet::Any);
        }
        let bad = || format!("'{text}' is not an IP address or network: write e.g. 10.0.0.1, 10.0.0.0/8, ::1 or *");
        let (addr, bits) = text.split_once('/').map_or((text, None), |(a, b)| (a, Some(b)));
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(bits) => bits.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
        };
        Ok(ProxyNet::Net(addr, bits))
    }
}

impl TryFrom<String> for ProxyNet {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<ProxyNet> for String {
    fn from(net: ProxyNet) -> String {
        net.to_string()
    }
}

impl fmt::Display for ProxyNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyNet::Any => f.write_str("*"),
            ProxyNet::Net(addr, bits) if *bits == if addr.is_ipv4() { 32 } else { 128 } => write!(f, "{addr}"),
            ProxyNet::Net(addr, bits) => write!(f, "{addr}/{bits}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_round_trip() {
        assert_eq!("10MiB".parse::<Size>().unwrap(), Size(10 << 20));
        assert_eq!("64k".parse::<Size>().unwrap(), Size(64 << 10));
        assert_eq!(Size(10 << 20).to_string(), "10MiB");
        assert!("ten".parse::<Size>().is_err());
        assert_eq!("500ms".parse::<Seconds>().unwrap(), Seconds(Duration::from_millis(500)));
        assert_eq!("2m".parse::<Seconds>().unwrap().to_string(), "120s");
        assert!("-1s".parse::<Seconds>().is_err());
    }

    #[test]
    fn binds_and_mounts_parse() {
        assert_eq!(
            "unix:/tmp/s".parse::<BindAddr>().unwrap(),
            BindAddr::Unix("/tmp/s".into())
        );
        assert_eq!("8000".parse::<BindAddr>().unwrap().to_string(), "127.0.0.1:8000");
        assert_eq!(":8000".parse::<BindAddr>().unwrap().to_string(), "0.0.0.0:8000");
        assert!("localhost".parse::<BindAddr>().is_err());
        let mount: Mount = "/time/=ctime:application".parse().unwrap();
        assert_eq!(mount.prefix, "/time");
        assert!("time=ctime:application".parse::<Mount>().is_err());
        assert_eq!("*.py=ctime:application".parse::<Mount>().unwrap().prefix, "*.py");
        for bad in ["*=a:b", "*/x.py=a:b", "**.py=a:b"] {
            assert!(bad.parse::<Mount>().is_err(), "{bad}");
        }
    }
}
