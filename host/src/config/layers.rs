//! Where each option's value comes from: clap's defaults, then the config
//! file, then environment variables and flags (clap says which of its
//! values the user gave, and which are its defaults). The layers are merged
//! as TOML tables keyed by the option names, so adding an option needs
//! nothing here.

use std::path::Path;

use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;
use toml::{Table, Value};

use super::options::{Options, DEFAULT_STATIC_DIR};

/// The effective options: `parsed` (what clap made of the command line,
/// defaults filled in) with the config file it names laid between clap's
/// defaults and what the user set.
pub fn resolve(parsed: &Options, matches: &ArgMatches) -> Result<Options, String> {
    let all = Table::try_from(parsed).map_err(|e| format!("cannot represent the options: {e}"))?;
    let given = |key: &str| {
        matches.try_get_raw(key).is_ok_and(|raw| raw.is_some())
            && matches!(
                matches.value_source(key),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
    };
    let (explicit, defaults) = split(all, &given);
    let mut merged = defaults;
    let mut from_file = Table::new();
    if let Some(path) = &parsed.config {
        from_file = read_table(path)?;
        merge(&mut merged, from_file.clone());
    }
    merge(&mut merged, explicit);
    // What the user typed was parsed by clap already: an error here is the
    // config file's, and names it.
    let mut options = Options::deserialize(Value::Table(merged)).map_err(|e| match &parsed.config {
        Some(path) => invalid(path, &e),
        None => format!("invalid options: {}", e.message()),
    })?;
    options.config.clone_from(&parsed.config);
    options.print_config = parsed.print_config;

    // The default folder is optional: without it, the apps are served alone.
    let static_dir_chosen = given("static_dir") || from_file.contains_key("static_dir");
    if !options.no_static && !static_dir_chosen && !options.static_dir.is_dir() {
        log::warn!("no static folder at {DEFAULT_STATIC_DIR}: serving apps only (pass --static-dir DIR)");
        options.no_static = true;
    }
    options.check()?;
    Ok(options)
}

/// Reads options from a config file alone (a worker's, written by its master).
pub fn read_file(path: &Path) -> Result<Options, String> {
    let table = read_table(path)?;
    let options = Options::deserialize(Value::Table(table)).map_err(|e| invalid(path, &e))?;
    options.check()?;
    Ok(options)
}

/// Other names config files use for options: seed 004's `web_server.conf`.
const ALIASES: [(&str, &str); 2] = [("static_path", "static_dir"), ("dynamic_path", "plugin_dirs")];

fn read_table(path: &Path) -> Result<Table, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let mut table = text.parse::<Table>().map_err(|e| invalid(path, &e))?;
    for (alias, key) in ALIASES {
        if let Some(value) = table.remove(alias) {
            if table.contains_key(key) {
                return Err(format!(
                    "config file {} sets both {alias} and {key}: keep one",
                    path.display()
                ));
            }
            table.insert(key.to_owned(), value);
        }
    }
    Ok(table)
}

fn invalid(path: &Path, error: &toml::de::Error) -> String {
    let place = error
        .span()
        .map(|span| format!(" (at byte {})", span.start))
        .unwrap_or_default();
    format!("config file {} is invalid{place}: {}", path.display(), error.message())
}

/// Splits `table` into the values `given` says the user set and the rest
/// (defaults), descending into sub-tables whose keys are options too.
fn split(table: Table, given: &impl Fn(&str) -> bool) -> (Table, Table) {
    let (mut explicit, mut defaults) = (Table::new(), Table::new());
    for (key, value) in table {
        match value {
            Value::Table(inner) if !given(&key) && !is_value_table(&key) => {
                let (e, d) = split(inner, given);
                if !e.is_empty() {
                    explicit.insert(key.clone(), Value::Table(e));
                }
                defaults.insert(key, Value::Table(d));
            }
            value if given(&key) => {
                explicit.insert(key, value);
            }
            value => {
                defaults.insert(key, value);
            }
        }
    }
    (explicit, defaults)
}

/// Options whose value is itself a table (not a group of options).
fn is_value_table(key: &str) -> bool {
    key == "mounts"
}

/// Lays `over` onto `base`: tables merge key by key, anything else is replaced.
fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(below)), Value::Table(above)) => merge(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::Size;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    fn resolve_args(args: &[&str]) -> Result<Options, String> {
        let matches = Cli::command().try_get_matches_from(args).map_err(|e| e.to_string())?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        resolve(&cli.options, &matches)
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let dir = std::env::temp_dir().join(format!("layers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("host.toml");
        std::fs::write(
            &file,
            "static_path = \".\"\ndynamic_path = \"./plugins\"\nworkers = 3\n[limits]\nmax_body_size = \"1MiB\"\nmax_headers = 7\n[mounts]\n\"/a\" = \"a:application\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let options = resolve_args(&["host", "--config", path, "--max-headers", "9", "--mount", "/b=b:run"]).unwrap();
        assert_eq!(options.workers, 3);
        assert_eq!(options.static_dir, Path::new("."));
        assert_eq!(options.plugin_dirs(), [Path::new("./plugins")]);
        assert_eq!(options.limits.max_body_size, Size(1 << 20));
        assert_eq!(options.limits.max_headers, 9);
        assert_eq!(options.limits.max_uri_length, Size(8 << 10));
        let prefixes: Vec<&str> = options.mounts.iter().map(|m| m.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/a", "/b"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn printed_options_read_back_the_same() {
        let options = resolve_args(&["host", "--bind", "8001", "--mount", "/t=ctime:application", "x:app"]).unwrap();
        let dir = std::env::temp_dir().join(format!("layers-print-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("printed.toml");
        std::fs::write(&file, options.to_toml()).unwrap();
        assert_eq!(read_file(&file).unwrap().to_toml(), options.to_toml());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_keys_and_values_name_the_file() {
        let dir = std::env::temp_dir().join(format!("layers-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        for (text, needle) in [("colour = 1", "colour"), ("[limits]\nmax_body_size = \"big\"", "big")] {
            std::fs::write(&file, text).unwrap();
            let error = resolve_args(&["host", "--config", file.to_str().unwrap()]).unwrap_err();
            assert!(error.contains("bad.toml") && error.contains(needle), "{error}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
