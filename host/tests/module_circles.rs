//! No import circles between sibling modules, in the host and plugin-api
//! crates: for every two modules under the same parent (at any depth), `a`
//! naming something of `b` through a `crate::` or `super::` path (outside
//! comments and test modules) while `b` names something of `a` fails the
//! test. A parent using its children, or a child its parent, is structure,
//! not a circle.

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

/// The sibling pairs that name each other in the crate at `root`.
fn circles(root: &Path) -> Vec<(String, String)> {
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
