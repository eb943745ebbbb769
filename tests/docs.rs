//! The documentation's links hold: every relative link in `README.md`,
//! `CONTRIBUTING.md` and `docs/*.md` points at a file that exists, and
//! every `#anchor` at a heading of the page it names (GitHub's anchors:
//! lower case, punctuation dropped, spaces as hyphens). External links are
//! not fetched. Code, tests and deployment files cite the docs the same
//! way (`docs/operations.md#stopping` in a comment), and those citations
//! must name a heading that exists too. And the README stays a front door:
//! at most 300 lines (see CONTRIBUTING.md#conventions).

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

/// Every file under `dir` (recursively), or `dir` itself if it is a file.
fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    if dir.is_file() {
        found.push(dir.to_owned());
    } else if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries {
            files_under(&entry.unwrap().path(), found);
        }
    }
}

/// The doc citations in `text`: `README.md#x`, `CONTRIBUTING.md#x`,
/// `docs/page.md#x`, and `#y` right after `and` for the same page.
fn citations(text: &str) -> Vec<(String, String)> {
    let mut cited = Vec::new();
    for line in text.lines() {
        let mut page: Option<String> = None;
        let mut after_and = false;
        for word in line.split_whitespace() {
            let word = word.trim_matches(|c: char| "()[]`'\",;:.".contains(c));
            if let Some((path, anchor)) = word.split_once(".md#") {
                let path = format!("{path}.md");
                if path.starts_with("docs/") || path == "README.md" || path == "CONTRIBUTING.md" {
                    cited.push((path.clone(), anchor.to_owned()));
                    page = Some(path);
                }
            } else if let (Some(anchor), true, Some(path)) =
                (word.strip_prefix('#'), after_and, &page)
            {
                cited.push((path.clone(), anchor.to_owned()));
            }
            after_and = word == "and";
        }
    }
    cited
}

#[test]
fn every_citation_in_the_code_names_a_heading_that_exists() {
    let root = Path::new(ROOT);
    let mut files = Vec::new();
    for place in [
        "src",
        "tests",
        "benches",
        "bench/src",
        "bench/tests",
        "fuzz/fuzz_targets",
        "deploy",
        "scripts",
        "Makefile",
        ".cargo",
        ".ci",
    ] {
        files_under(&root.join(place), &mut files);
    }
    let mut count = 0;
    let mut broken = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("tests/docs.rs")) {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for (page, anchor) in citations(&text) {
            count += 1;
            let headings = fs::read_to_string(root.join(&page)).map(|t| anchors(&t));
            if !headings.is_ok_and(|h| h.contains(&anchor)) {
                broken.push(format!("{}: {page}#{anchor}", file.display()));
            }
        }
    }
    assert!(
        count > 50,
        "only {count} citations found: is the scan broken?"
    );
    assert!(
        broken.is_empty(),
        "citations of missing headings:\n{}",
        broken.join("\n")
    );
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

#[test]
fn the_flags_table_lists_every_option_of_the_server() {
    // docs/operations.md#running-it is the reference of the server's
    // flags: a flag added to the code without a row here fails.
    let page = fs::read_to_string(Path::new(ROOT).join("docs/operations.md")).unwrap();
    let rows: Vec<&str> = page.lines().filter(|l| l.starts_with("| `--")).collect();
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_prime-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let envs: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split_once('=').map(|(name, _)| name))
        .collect();
    assert!(envs.len() >= 20, "{envs:?}");
    for env in envs {
        assert!(
            rows.iter().any(|row| row.contains(&format!("`{env}`"))),
            "{env} has no row in docs/operations.md's flags table"
        );
    }
}
