//! The one-way import rule of docs/ARCHITECTURE.md, checked on the source text: each module of
//! the crate imports only from its own layer or the layers below, and no plug-in imports
//! another.
//!
//! | layer | modules |
//! |---|---|
//! | 0 protocol | `protocol` |
//! | 1 core | `core` |
//! | 2 transport | `transport` |
//! | 3 plug-ins | `axum`, `router`, `sse`, `channels`, `cluster`, `testing`, `fuzzing` |
//! | 4 plug-ins built on plug-ins | `live` (on the router's requests) |
//! | 5 facade | `lib.rs`, `melody`, `compat` |
//!
//! A path `crate::x::..` in code (comments and doc links aside) counts as an import of `x`; a
//! name the crate root re-exports (`crate::Config`) counts as an import of the module it comes
//! from, as `lib.rs` says.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

const LAYERS: &[(&str, u8)] = &[
    ("protocol", 0),
    ("core", 1),
    ("transport", 2),
    ("axum", 3),
    ("router", 3),
    ("sse", 3),
    ("channels", 3),
    ("cluster", 3),
    ("testing", 3),
    ("fuzzing", 3),
    ("live", 4),
    ("melody", 5),
    ("compat", 5),
    // Modules declared inline in lib.rs that only re-export the core.
    ("fanout", 1),
    ("plugin", 1),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments (line comments, doc comments, and `/* */` blocks are
/// rare enough here to be left out of the rule's reach: none holds a path).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names the crate root re-exports, mapped to the top-level module they come from: in
/// `pub use crate::{core::{a, b::{C, D}}, protocol::{..}}`, `C` comes from `core`.
fn root_exports() -> BTreeMap<String, String> {
    let lib = code(&fs::read_to_string(src().join("lib.rs")).unwrap());
    let mut exports = BTreeMap::new();
    let Some(start) = lib.find("pub use crate::{") else {
        return exports;
    };
    let block = &lib[start + "pub use crate::{".len()..];
    let (mut depth, mut top, mut word) = (1usize, String::new(), String::new());
    for c in block.chars() {
        match c {
            c if c.is_alphanumeric() || c == '_' => word.push(c),
            ':' => {
                if depth == 1 && !word.is_empty() {
                    top = word.clone();
                }
                word.clear();
            }
            '{' => {
                depth += 1;
                word.clear();
            }
            '}' | ',' | ' ' | '\n' => {
                if !word.is_empty() && depth >= 2 && word != "self" {
                    exports.insert(word.clone(), top.clone());
                }
                word.clear();
                if c == '}' {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
            }
            _ => word.clear(),
        }
    }
    exports
}

/// The top-level module a file belongs to (`lib.rs` is the facade).
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(src()).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    let name = first.to_str().unwrap().trim_end_matches(".rs");
    if name == "lib" {
        "melody".to_owned()
    } else {
        name.to_owned()
    }
}

/// The modules `crate::` paths in `code` name, with the line of each.
fn imports(code: &str, exports: &BTreeMap<String, String>) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let module = if layer(&name).is_some() {
                Some(name)
            } else {
                exports.get(&name).cloned()
            };
            if let Some(module) = module {
                found.push((module, n + 1));
            }
        }
    }
    found
}

#[test]
fn imports_point_down_the_layers_and_plug_ins_stay_apart() {
    let exports = root_exports();
    assert!(
        exports.get("Config").map(String::as_str) == Some("core")
            && exports.get("Message").map(String::as_str) == Some("protocol"),
        "lib.rs's re-exports were not understood: {exports:?}"
    );
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut violations = Vec::new();
    for file in &all {
        let from = module_of(file);
        let Some(from_layer) = layer(&from) else {
            violations.push(format!(
                "{}: module `{from}` has no layer in tests/layers.rs",
                file.display()
            ));
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        for (to, line) in imports(&code(&text), &exports) {
            let to_layer = layer(&to).unwrap();
            let upward = to_layer > from_layer;
            let sideways = to_layer >= 3 && to_layer == from_layer && from_layer < 5 && to != from;
            if upward || sideways {
                violations.push(format!(
                    "{}:{line}: `{from}` (layer {from_layer}) imports `{to}` (layer {to_layer})",
                    file.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    let exports = root_exports();
    let found = imports(
        &code("use crate::sse::Sse;\nlet x = crate::Melody::new(); // crate::router"),
        &exports,
    );
    assert_eq!(found, [("sse".to_owned(), 1), ("core".to_owned(), 2)]);
    assert_eq!(code("let a = 1; // crate::router::X"), "let a = 1; ");
}
