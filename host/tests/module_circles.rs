//! The host's layers, as docs/design.md draws them, and no import circles.
//!
//! - No circles between sibling modules, in the host and plugin-api crates:
//!   for every two modules under the same parent (at any depth), `a`
//!   naming something of `b` through a `crate::` or `super::` path
//!   (outside comments and test modules) while `b` names something of `a`
//!   fails. A parent using its children, or a child its parent, is
//!   structure, not a circle.
//! - Layers: the children of the host crate, and those of `server`, each
//!   sit in a layer ([`CRATE_LAYERS`], [`SERVER_LAYERS`]); a module names
//!   modules of its own layer or of the layers below, never one above.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// The module a source file holds, e.g. `server/strict/wire.rs` →
/// `[server, strict, wire]`.
fn module_of(root: &Path, file: &Path) -> Module {
    let mut parts: Module = file
        .strip_prefix(root)
        .expect("under the root")
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if path.is_dir() && name != "tests" {
            sources(&path, out);
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// Every `crate::a::b` or `super::a` path in `file`'s code, made absolute.
fn references(me: &Module, text: &str) -> Vec<Module> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        for (at, _) in line.match_indices("::") {
            let start = line[..at]
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(0, |i| i + 1);
            let path = &line[start..];
            let head = if path.starts_with("crate::") {
                "crate"
            } else if path.starts_with("super::") {
                "super"
            } else {
                continue;
            };
            if start + head.len() != at {
                continue; // not the path's first `::`
            }
            let end = path
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(path.len());
            let mut segments: Vec<&str> = path[..end].split("::").filter(|s| !s.is_empty()).collect();
            segments.remove(0);
            let mut absolute: Module = if head == "crate" {
                Vec::new()
            } else {
                me[..me.len().saturating_sub(1)].to_vec()
            };
            while segments.first() == Some(&"super") {
                absolute.pop();
                segments.remove(0);
            }
            absolute.extend(segments.iter().map(|s| (*s).to_owned()));
            found.push(absolute);
        }
    }
    found
}

/// Which sibling names which (as `a::b::c` module paths joined with
/// `::`), in the crate at `root`.
fn sibling_edges(root: &Path) -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    sources(root, &mut files);
    let modules: BTreeMap<Module, String> = files
        .iter()
        .map(|f| (module_of(root, f), std::fs::read_to_string(f).expect("a source file")))
        .collect();
    let owner = |path: &Module| {
        (1..=path.len())
            .rev()
            .map(|end| path[..end].to_vec())
            .find(|m| modules.contains_key(m))
    };
    let mut edges = BTreeSet::new();
    for (module, text) in &modules {
        for target in references(module, text).iter().filter_map(owner) {
            let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common < module.len() && common < target.len() {
                edges.insert((module[..=common].join("::"), target[..=common].join("::")));
            }
        }
    }
    edges
}

/// The sibling pairs that name each other in the crate at `root`.
fn circles(root: &Path) -> Vec<(String, String)> {
    let edges = sibling_edges(root);
    edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .cloned()
        .collect()
}

#[test]
fn sibling_modules_never_name_each_other() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["host/src", "plugin-api/src"] {
        let found = circles(&workspace.join(krate));
        assert!(found.is_empty(), "module circles in {krate}: {found:?}");
    }
}

#[test]
fn a_circle_is_found() {
    let root = std::env::temp_dir().join(format!("module-circles-{}", std::process::id()));
    std::fs::create_dir_all(root.join("server")).unwrap();
    std::fs::write(root.join("lib.rs"), "pub mod server;\n").unwrap();
    std::fs::write(root.join("server/mod.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(
        root.join("server/a.rs"),
        "use super::b::B;\n// crate::server::b in a comment\n",
    )
    .unwrap();
    std::fs::write(root.join("server/b.rs"), "pub struct B(crate::server::a::A);\n").unwrap();
    let found = circles(&root);
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(found, [("server::a".to_owned(), "server::b".to_owned())]);
}

/// The host crate's modules, by layer from the top.
const CRATE_LAYERS: &[&[&str]] = &[
    &["main", "cli"],
    &["commands"],
    &["supervisor"],
    &["server", "cgi"],
    &["config", "inflight"],
    &["plugin"],
    &["error", "logging", "signals", "inherited", "open_file", "header_list"],
];

/// `host::server`'s modules, by layer from the top.
const SERVER_LAYERS: &[&[&str]] = &[
    &["server::accept", "server::startup", "server::memory"],
    &["server::request"],
    &["server::app_gateway", "server::static_site"],
    &["server::state"],
    &["server::observe"],
    &["server::http"],
    &["server::net"],
    &["server::streams"],
];

/// The imports in `edges` between modules of `layers` that go up a layer,
/// and the modules under `parent` no layer names.
fn against_layers(edges: &BTreeSet<(String, String)>, layers: &[&[&str]], parent: &str) -> Vec<String> {
    let rank = |module: &str| layers.iter().position(|layer| layer.contains(&module));
    let depth = |module: &str| module.matches("::").count();
    let under = |module: &str| match parent {
        "" => depth(module) == 0,
        parent => module.starts_with(&format!("{parent}::")) && depth(module) == depth(parent) + 1,
    };
    let mut found = Vec::new();
    for (from, to) in edges.iter().filter(|(from, _)| under(from)) {
        match (rank(from), rank(to)) {
            (Some(a), Some(b)) if b < a => found.push(format!("{from} (layer {a}) names {to} (layer {b})")),
            (None, _) => found.push(format!("{from} is in no layer")),
            (_, None) => found.push(format!("{to} is in no layer")),
            _ => {}
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_module_names_only_its_own_layer_or_those_below() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = sibling_edges(&root);
    let mut found = against_layers(&edges, CRATE_LAYERS, "");
    found.extend(against_layers(&edges, SERVER_LAYERS, "server"));
    assert!(found.is_empty(), "against the layers:\n{}", found.join("\n"));
}

#[test]
fn an_import_up_a_layer_is_found() {
    let edges = BTreeSet::from([
        ("server::http".to_owned(), "server::net".to_owned()),
        ("server::net".to_owned(), "server::request".to_owned()),
    ]);
    assert_eq!(
        against_layers(&edges, SERVER_LAYERS, "server"),
        ["server::net (layer 6) names server::request (layer 1)"]
    );
}
