//! The one reader of `name=value` fields in a fixed order, shared by seal
//! records (fields separated by spaces) and the state file (one per line).

use super::key::{Hash32, KEY_LEN};

/// Fields taken one by one, each required to have the expected name.
pub(super) struct Fields<'a, I: Iterator<Item = &'a str>> {
    /// The `name=value` items left.
    items: I,
    /// What an item is called in errors: "field" or "line".
    unit: &'static str,
    /// Whether an error may quote the unexpected item (not in a state file:
    /// its lines hold the key).
    quote: bool,
}

impl<'a> Fields<'a, std::str::Split<'a, char>> {
    /// The space-separated fields of a seal record (after its prefix).
    pub(super) fn words(line: &'a str) -> Self {
        Fields {
            items: line.split(' '),
            unit: "field",
            quote: true,
        }
    }
}

impl<'a> Fields<'a, std::str::Lines<'a>> {
    /// The lines of a state file; errors never quote them.
    pub(super) fn lines(text: &'a str) -> Self {
        Fields {
            items: text.lines(),
            unit: "line",
            quote: false,
        }
    }
}

impl<'a, I: Iterator<Item = &'a str>> Fields<'a, I> {
    /// The next item as it is, whatever its shape (a record's `seal`, `v1`).
    pub(super) fn raw(&mut self) -> Option<&'a str> {
        self.items.next()
    }

    /// The value of the next item, which must be `name=value`.
    pub(super) fn text(&mut self, name: &str) -> Result<&'a str, String> {
        let unit = self.unit;
        let item = self
            .items
            .next()
            .ok_or_else(|| format!("no `{name}=` {unit} where expected"))?;
        item.strip_prefix(name)
            .and_then(|w| w.strip_prefix('='))
            .ok_or_else(|| {
                if self.quote {
                    format!("expected `{name}=`, found `{item}`")
                } else {
                    format!("no `{name}=` {unit} where expected")
                }
            })
    }

    /// The next item's value as a decimal number.
    pub(super) fn number(&mut self, name: &str) -> Result<u64, String> {
        number(self.text(name)?, name)
    }

    /// The next item's value as 64 hex digits.
    pub(super) fn hash(&mut self, name: &str) -> Result<Hash32, String> {
        hash(self.text(name)?, name)
    }

    /// Whether every item was taken.
    pub(super) fn done(&mut self) -> bool {
        self.items.next().is_none()
    }
}

/// `text` as a decimal number (the field `name`, for the error).
pub(super) fn number(text: &str, name: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|_| format!("`{name}` is not a number"))
}

/// `text` as 64 hex digits (the field `name`, for the error).
pub(super) fn hash(text: &str, name: &str) -> Result<Hash32, String> {
    let mut out = [0u8; KEY_LEN];
    hex::decode_to_slice(text, &mut out).map_err(|_| format!("`{name}` is not 64 hex digits"))?;
    Ok(out)
}
