//! [`AppSpec`]: the `LIB:SYMBOL` argument, and finding LIB on the plugin path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// An app named on the command line: a library and the symbol it exports,
/// the analogue of WSGI's `module:callable`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppSpec {
    /// The library: a path, or a bare name looked up as `lib<name>.so`.
    pub library: LibraryRef,
    /// The exported symbol, e.g. `application`.
    pub symbol: String,
}

/// How the library part of an [`AppSpec`] was written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LibraryRef {
    /// A file path (it contains `/` or ends in `.so`).
    Path(PathBuf),
    /// A bare name such as `ctime`, searched on the plugin path.
    Name(String),
}

/// Why a `LIB:SYMBOL` argument could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

impl FromStr for AppSpec {
    type Err = SpecError;

    /// Splits at the last `:` (so paths may contain colons).
    fn from_str(text: &str) -> Result<Self, SpecError> {
        let Some((library, symbol)) = text.rsplit_once(':') else {
            return Err(SpecError(format!(
                "'{text}' names no symbol: write LIB:SYMBOL, e.g. ./plugins/libctime.so:application or ctime:application"
            )));
        };
        if library.is_empty() {
            return Err(SpecError(format!(
                "'{text}' names no library before ':': write LIB:SYMBOL, e.g. ctime:application"
            )));
        }
        let symbol_ok = symbol
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && symbol.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !symbol_ok {
            return Err(SpecError(format!(
                "'{symbol}' in '{text}' is not a symbol name: use letters, digits and '_', e.g. application"
            )));
        }
        let library = if library.contains('/') || library.ends_with(".so") {
            LibraryRef::Path(PathBuf::from(library))
        } else {
            LibraryRef::Name(library.to_owned())
        };
        Ok(AppSpec {
            library,
            symbol: symbol.to_owned(),
        })
    }
}

impl TryFrom<String> for AppSpec {
    type Error = SpecError;
    fn try_from(text: String) -> Result<Self, SpecError> {
        text.parse()
    }
}

impl From<AppSpec> for String {
    fn from(spec: AppSpec) -> String {
        spec.to_string()
    }
}

impl fmt::Display for AppSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.library {
            LibraryRef::Path(path) => write!(f, "{}:{}", path.display(), self.symbol),
            LibraryRef::Name(name) => write!(f, "{name}:{}", self.symbol),
        }
    }
}

impl LibraryRef {
    /// The file this refers to: a path as given, a name as the first
    /// `lib<name>.so` found in `plugin_dirs`. `Err` lists where it looked.
    pub fn resolve(&self, plugin_dirs: &[PathBuf]) -> Result<PathBuf, Vec<PathBuf>> {
        match self {
            LibraryRef::Path(path) if path.exists() => Ok(path.clone()),
            LibraryRef::Path(path) => Err(vec![path.clone()]),
            LibraryRef::Name(name) => {
                let candidates: Vec<PathBuf> = plugin_dirs
                    .iter()
                    .map(|dir| dir.join(format!("lib{name}.so")))
                    .collect();
                candidates.iter().find(|c| c.exists()).cloned().ok_or(candidates)
            }
        }
    }
}

/// The default plugin path: `./plugins`, then the `host` executable's folder.
pub fn default_plugin_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("./plugins")];
    if let Some(exe_dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
        dirs.push(exe_dir.to_path_buf());
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_last_colon() {
        let spec: AppSpec = "./odd:dir/libx.so:run".parse().unwrap();
        assert_eq!(spec.library, LibraryRef::Path("./odd:dir/libx.so".into()));
        assert_eq!(spec.symbol, "run");
    }

    #[test]
    fn bare_names_are_looked_up() {
        let spec: AppSpec = "ctime:application".parse().unwrap();
        assert_eq!(spec.library, LibraryRef::Name("ctime".into()));
    }

    #[test]
    fn malformed_specs_are_refused_with_the_fix() {
        for bad in ["ctime", ":application", "ctime:", "ctime:app-lication", "ctime:1app"] {
            let err = bad.parse::<AppSpec>().unwrap_err().to_string();
            assert!(err.contains("e.g."), "{bad}: {err}");
        }
    }

    #[test]
    fn names_resolve_in_order_and_report_where_they_looked() {
        let dir = std::env::temp_dir().join(format!("app-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libdemo.so"), b"").unwrap();
        let dirs = vec![PathBuf::from("/nonexistent"), dir.clone()];
        assert_eq!(
            LibraryRef::Name("demo".into()).resolve(&dirs),
            Ok(dir.join("libdemo.so"))
        );
        let looked = LibraryRef::Name("other".into()).resolve(&dirs).unwrap_err();
        assert_eq!(looked.len(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
