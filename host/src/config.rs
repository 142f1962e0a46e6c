//! Server settings: defaults, overridden by a TOML file (`--config`),
//! overridden by command-line flags; `--print-config` shows the result.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app_spec::AppSpec;

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
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
        let text = if text.starts_with(':') {
            format!("0.0.0.0{text}")
        } else {
            text.to_owned()
        };
        text.parse()
            .map(BindAddr::Tcp)
            .map_err(|_| format!("'{text}' is not a bind address: write HOST:PORT (e.g. 127.0.0.1:8000) or unix:PATH"))
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

/// An app mounted at a URL prefix: `--mount /time=ctime:application`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `/` or a prefix without a trailing slash, e.g. `/time`.
    pub prefix: String,
    /// The app.
    pub app: AppSpec,
}

impl Mount {
    /// A mount, with the prefix normalised (leading `/`, no trailing `/`).
    pub fn new(prefix: &str, app: AppSpec) -> Result<Self, String> {
        if !prefix.starts_with('/') {
            return Err(format!(
                "mount prefix '{prefix}' must start with '/', e.g. /time=ctime:application"
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
            app.parse().map_err(|e: crate::app_spec::SpecError| e.to_string())?,
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
    /// No access log.
    Off,
}

/// Safety limits, on by default; each names the option that raises it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body (413 beyond): `max_body_size` / `--max-body-size`.
    pub max_body_size: Size,
    /// Largest request head, request line included (431): `max_header_size`.
    pub max_header_size: Size,
    /// Most request headers (431): `max_headers`.
    pub max_headers: usize,
    /// Longest request target (414): `max_uri_length`.
    pub max_uri_length: Size,
    /// Time to receive a request head; also the keep-alive idle time before
    /// the next request's head must start (connection closed): `header_timeout`.
    pub header_timeout: Seconds,
    /// Time in-flight requests get to finish on shutdown: `graceful_timeout`.
    pub graceful_timeout: Seconds,
    /// Longest a request may spend inside the app (504 beyond, and the
    /// worker is replaced): `request_timeout` / `--timeout`.
    pub request_timeout: Seconds,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_size: Size(10 << 20),
            max_header_size: Size(32 << 10),
            max_headers: 100,
            max_uri_length: Size(8 << 10),
            header_timeout: Seconds(Duration::from_secs(10)),
            graceful_timeout: Seconds(Duration::from_secs(30)),
            request_timeout: Seconds(Duration::from_secs(30)),
        }
    }
}

/// The config file, as written (seed 004's `web_server.conf` keys
/// `static_path` / `dynamic_path` are accepted as aliases).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<Vec<String>>,
    /// The static site's folder.
    #[serde(alias = "static_path", skip_serializing_if = "Option::is_none")]
    pub static_dir: Option<PathBuf>,
    /// Send every request to the apps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_static: Option<bool>,
    /// Where bare library names are looked up.
    #[serde(alias = "dynamic_path", skip_serializing_if = "Option::is_none")]
    pub plugin_dirs: Option<Vec<PathBuf>>,
    /// The app at `/`, as `LIB:SYMBOL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// More apps: prefix → `LIB:SYMBOL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<BTreeMap<String, String>>,
    /// `text`, `json` or `off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log_format: Option<AccessLogFormat>,
    /// Worker processes; 0 serves in this process (for debugging).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Swap in a rebuilt library when its file changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<bool>,
    /// Safety limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

impl FileConfig {
    /// Reads and parses a TOML config file; the error names the file and the problem.
    pub fn read(path: &Path) -> Result<FileConfig, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let first_line = e.to_string().lines().next().unwrap_or_default().to_owned();
            format!(
                "config file {} is invalid: {} {}",
                path.display(),
                first_line,
                e.message()
            )
        })
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
        assert!("localhost".parse::<BindAddr>().is_err());
        let mount: Mount = "/time/=ctime:application".parse().unwrap();
        assert_eq!(mount.prefix, "/time");
        assert!("time=ctime:application".parse::<Mount>().is_err());
    }

    #[test]
    fn config_files_accept_the_seed_keys_and_refuse_unknown_ones() {
        let config: FileConfig = toml::from_str(
            "static_path = \"./static\"\ndynamic_path = [\"./dynamic\"]\n[limits]\nmax_body_size = \"1MiB\"\n",
        )
        .unwrap();
        assert_eq!(config.static_dir, Some(PathBuf::from("./static")));
        assert_eq!(config.limits.unwrap().max_body_size, Size(1 << 20));
        assert!(toml::from_str::<FileConfig>("colour = 1").is_err());
    }
}

/// The effective settings: defaults < config file < command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Listen addresses.
    pub binds: Vec<BindAddr>,
    /// The static site's folder; `None` sends everything to the apps.
    pub static_dir: Option<PathBuf>,
    /// Where bare library names are looked up.
    pub plugin_dirs: Vec<PathBuf>,
    /// Apps and their prefixes.
    pub mounts: Vec<Mount>,
    /// Access log format.
    pub access_log: AccessLogFormat,
    /// Worker processes (0: serve in this process).
    pub workers: usize,
    /// Swap in rebuilt libraries automatically.
    pub reload: bool,
    /// Safety limits.
    pub limits: Limits,
}

/// The default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";
/// The default worker count: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The default static folder.
pub const DEFAULT_STATIC_DIR: &str = "./html";

impl FileConfig {
    /// `self` with every field `over` sets replaced.
    pub fn overlay(self, over: FileConfig) -> FileConfig {
        let mut mounts = self.mounts.unwrap_or_default();
        mounts.extend(over.mounts.unwrap_or_default());
        FileConfig {
            bind: over.bind.or(self.bind),
            static_dir: over.static_dir.or(self.static_dir),
            no_static: over.no_static.or(self.no_static),
            plugin_dirs: over.plugin_dirs.or(self.plugin_dirs),
            app: over.app.or(self.app),
            mounts: (!mounts.is_empty()).then_some(mounts),
            access_log_format: over.access_log_format.or(self.access_log_format),
            workers: over.workers.or(self.workers),
            reload: over.reload.or(self.reload),
            limits: over.limits.or(self.limits),
        }
    }
}

impl Settings {
    /// Checks a merged config and fills in defaults.
    pub fn from_config(config: FileConfig, default_plugin_dirs: Vec<PathBuf>) -> Result<Settings, String> {
        let binds = match config.bind {
            Some(binds) if !binds.is_empty() => binds.iter().map(|b| b.parse()).collect::<Result<_, _>>()?,
            _ => vec![DEFAULT_BIND.parse()?],
        };
        let mut mounts = Vec::new();
        if let Some(app) = config.app {
            mounts.push(Mount::new(
                "/",
                app.parse().map_err(|e: crate::app_spec::SpecError| e.to_string())?,
            )?);
        }
        for (prefix, app) in config.mounts.unwrap_or_default() {
            mounts.push(format!("{prefix}={app}").parse()?);
        }
        for (i, mount) in mounts.iter().enumerate() {
            if mounts[..i].iter().any(|m| m.prefix == mount.prefix) {
                return Err(format!("two apps are mounted at {}: keep one", mount.prefix));
            }
        }
        let static_dir = match (config.no_static, config.static_dir) {
            (Some(true), _) => None,
            (_, Some(dir)) => Some(dir),
            // The default folder is optional: without it, serve the apps alone.
            (_, None) if Path::new(DEFAULT_STATIC_DIR).is_dir() => Some(PathBuf::from(DEFAULT_STATIC_DIR)),
            (_, None) => {
                log::warn!("no static folder at {DEFAULT_STATIC_DIR}: serving apps only (pass --static-dir DIR)");
                None
            }
        };
        Ok(Settings {
            binds,
            static_dir,
            plugin_dirs: config.plugin_dirs.unwrap_or(default_plugin_dirs),
            mounts,
            access_log: config.access_log_format.unwrap_or_default(),
            workers: config.workers.unwrap_or_else(default_workers),
            reload: config.reload.unwrap_or(false),
            limits: config.limits.unwrap_or_default(),
        })
    }

    /// The settings written as a config file (`--print-config`).
    pub fn to_config(&self) -> FileConfig {
        let root = self.mounts.iter().find(|m| m.prefix == "/");
        FileConfig {
            bind: Some(self.binds.iter().map(ToString::to_string).collect()),
            static_dir: self.static_dir.clone(),
            no_static: Some(self.static_dir.is_none()),
            plugin_dirs: Some(self.plugin_dirs.clone()),
            app: root.map(|m| m.app.to_string()),
            mounts: Some(
                self.mounts
                    .iter()
                    .filter(|m| m.prefix != "/")
                    .map(|m| (m.prefix.clone(), m.app.to_string()))
                    .collect(),
            ),
            access_log_format: Some(self.access_log),
            workers: Some(self.workers),
            reload: Some(self.reload),
            limits: Some(self.limits.clone()),
        }
    }
}
