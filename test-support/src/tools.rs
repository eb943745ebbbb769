//! External tools a test needs (`haproxy`, `socat`, `strace`, ...) and
//! what to do without one: skip loudly, except on CI, where every test
//! must run and a missing tool fails the test.

use std::path::PathBuf;

/// Whether this run is on CI (`CI` set, and not to `false` or `0`).
fn on_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skips the calling test loudly, or fails it on CI. Returns so the test
/// can `return` right after.
pub fn skip(reason: &str) {
    assert!(!on_ci(), "cannot run on CI: {reason}");
    eprintln!("SKIPPED (not on CI): {reason}");
}

/// `tool` on the PATH or in /usr/sbin, /sbin (where Debian puts haproxy,
/// and which a non-root PATH often lacks).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Whether [`find_tool`] finds `tool`.
pub fn have_tool(tool: &str) -> bool {
    find_tool(tool).is_some()
}
