//! The layers keep their import rules (each layer's `mod.rs` states them;
//! the map is in `src/lib.rs`): `net/` imports nothing from `prime/`,
//! `audit/` or `ops/`; `audit/` nothing from `net/`, `prime/` or `ops/`;
//! `prime/` nothing from `ops/`; the leaf modules (`escape`, `lock`)
//! nothing from any layer. Comments are not imports and are skipped.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `.rs` file under `path` (or `path` itself if it is a file).
fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(path).expect("a source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The lines of the files under `path` that name one of `forbidden`
/// (as a `crate::layer` path), outside comments.
fn offending(path: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in sources(&Path::new(ROOT).join(path)) {
        let text = fs::read_to_string(&file).expect("a readable source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for layer in forbidden {
                if code.contains(&format!("crate::{layer}")) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn each_layer_imports_only_what_its_rule_allows() {
    let rules: [(&str, &[&str]); 5] = [
        ("src/net", &["prime", "audit", "ops", "echo", "client"]),
        ("src/audit", &["net", "prime", "ops", "echo", "client"]),
        ("src/prime", &["ops", "echo", "client"]),
        ("src/escape.rs", &["net", "audit", "prime", "ops"]),
        ("src/lock.rs", &["net", "audit", "prime", "ops"]),
    ];
    let mut broken = Vec::new();
    for (path, forbidden) in rules {
        broken.extend(offending(path, forbidden));
    }
    assert!(
        broken.is_empty(),
        "imports across the layering:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_across_layers() {
    // The rule above must be able to fail: net/ imports from itself, so
    // forbidding `net` there finds lines.
    assert!(!offending("src/net", &["net"]).is_empty());
}
