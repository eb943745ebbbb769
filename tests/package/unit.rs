//! Reading systemd unit files, environment files and command lines as
//! systemd does, for the package tests.

use super::*;

// ---------------------------------------------------------------------------
// Unit files, environment files, command lines

/// A systemd unit file: its assignments in order, as (section, key, value).
pub(crate) struct Unit {
    pub(crate) path: PathBuf,
    pub(crate) entries: Vec<(String, String, String)>,
}

impl Unit {
    pub(crate) fn read(path: &Path) -> Unit {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read unit {}: {e}", path.display()));
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
                continue;
            }
            // A trailing backslash continues the value on the next line.
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let logical = std::mem::take(&mut pending);
            if let Some(name) = logical.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
            } else if let Some((key, value)) = logical.split_once('=') {
                entries.push((
                    section.clone(),
                    key.trim().to_owned(),
                    value.trim().to_owned(),
                ));
            } else {
                panic!("{}: not an assignment: {logical:?}", path.display());
            }
        }
        Unit {
            path: path.to_owned(),
            entries,
        }
    }

    /// Every value assigned to `key` in `section`, in order.
    pub(crate) fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The value that counts (the last assignment).
    pub(crate) fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.all(section, key).last().copied()
    }

    pub(crate) fn service(&self, key: &str) -> Option<&str> {
        self.get("Service", key)
    }

    pub(crate) fn require(&self, key: &str) -> &str {
        self.service(key)
            .unwrap_or_else(|| panic!("{} has no {key}=", self.path.display()))
    }
}

/// The assignments of a systemd EnvironmentFile (`KEY=VALUE`, `#` and `;`
/// comments, values optionally quoted).
pub(crate) fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read environment file {}: {e}", path.display()));
    let mut env = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not KEY=VALUE: {line:?}", path.display()));
        let value = value.trim();
        let unquoted = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(a, b)| value.strip_prefix(*a)?.strip_suffix(*b))
            .unwrap_or(value);
        env.insert(key.trim().to_owned(), unquoted.to_owned());
    }
    env
}

/// An `ExecStart=` value as the argv systemd runs: its prefixes (`-`, `@`,
/// `:`, `+`, `!`) dropped, split at spaces outside quotes, and `$VAR` /
/// `${VAR}` replaced from `env`.
pub(crate) fn exec_argv(exec: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let exec = exec.trim_start_matches(['-', '@', ':', '+', '!']);
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in exec.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
        .into_iter()
        .map(|w| {
            let name = w
                .strip_prefix("${")
                .and_then(|n| n.strip_suffix('}'))
                .or_else(|| w.strip_prefix('$'));
            match name {
                Some(name) => env.get(name).cloned().unwrap_or_default(),
                None => w,
            }
        })
        .collect()
}

/// The `--flag value` pairs of an argv (flags without a value are skipped).
pub(crate) fn flag_values(argv: &[String]) -> Vec<(String, String)> {
    argv.windows(2)
        .filter(|w| w[0].starts_with("--") && !w[1].starts_with("--"))
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect()
}

/// `--max-rate-per-ip` -> `PRIME_SERVER_MAX_RATE_PER_IP`
pub(crate) fn env_name(flag: &str) -> String {
    format!(
        "PRIME_SERVER_{}",
        flag.trim_start_matches("--")
            .replace('-', "_")
            .to_uppercase()
    )
}
