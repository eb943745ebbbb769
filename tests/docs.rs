//! The documentation's links hold: every relative link in `README.md`,
//! `CONTRIBUTING.md` and `docs/*.md` points at a file that exists, and
//! every `#anchor` at a heading of the page it names (GitHub's anchors:
//! lower case, punctuation dropped, spaces as hyphens). External links are
//! not fetched. And the README stays a front door: at most 300 lines (see
//! CONTRIBUTING.md#conventions).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The pages whose links are checked.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The lines of `text` outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push(line);
        }
    }
    lines
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (a repeated heading gets `-1`, `-2`).
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for line in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of a page's inline links and images, outside code.
fn links(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(text) {
        // Drop inline code spans: `[a](b)` inside backticks is not a link.
        let outside_code: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = outside_code.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(rest[..end].trim().to_owned());
            rest = &rest[end..];
        }
    }
    targets
}

/// Every broken link in `pages`, as `page: target (why)`.
fn broken_links(pages: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for page in pages {
        let text = fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            if !file.exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
                continue;
            }
            if anchor.is_empty() {
                continue;
            }
            let is_markdown = file.extension().is_some_and(|ext| ext == "md");
            let headings = fs::read_to_string(&file).map(|t| anchors(&t));
            if !is_markdown || !headings.is_ok_and(|h| h.contains(anchor)) {
                broken.push(format!("{}: {target} (no such heading)", page.display()));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let pages = pages(Path::new(ROOT));
    assert!(
        pages.len() >= 7,
        "README, CONTRIBUTING and docs/: {pages:?}"
    );
    let broken = broken_links(&pages);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_stays_a_front_door() {
    let readme = fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; move reference to docs/"
    );
}

#[test]
fn the_check_catches_a_broken_file_and_a_broken_anchor() {
    let dir = std::env::temp_dir().join(format!("prime-server-docs-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let page = dir.join("a.md");
    fs::write(
        &page,
        "# A page\n## Two words, `code`!\n\
         [ok](#two-words-code) [ok](b.md#the-heading) [ok](https://example.com/x#y)\n\
         `[not a link](nowhere.md)`\n```text\n[in a fence](nowhere.md)\n```\n\
         [bad file](missing.md) [bad anchor](b.md#no-such) [bad self](#a-pag)\n",
    )
    .unwrap();
    fs::write(dir.join("b.md"), "text\n### The heading\n").unwrap();
    let broken = broken_links(std::slice::from_ref(&page));
    fs::remove_dir_all(&dir).unwrap();
    let targets: Vec<&str> = broken
        .iter()
        .map(|b| b.split(": ").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["missing.md", "b.md#no-such", "#a-pag"],
        "{broken:?}"
    );
}
