//! The reading of the located YAML tree: a [`Field`] is a node with its key
//! path, and its extractors turn it into values or into a [`SpecError`] that
//! names the key path, line and column, so every rule of workflow.md reports
//! where it was broken in the same way.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use super::yaml::{self, Node, Pos, Value};
use super::{Patterns, SecretName, ValueError, parse_duration, values};

/// Why a workflow was rejected, e.g.
/// `deploy[1].health.timeout: invalid duration "5 minutes" at line 31, column 16`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// Key path like `steps[2].env.FOO`; empty for the document as a whole.
    pub path: String,
    /// Line of the offending value, 1-based.
    pub line: usize,
    /// Column of the offending value, 1-based, in characters.
    pub column: usize,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl SpecError {
    pub(super) fn at(path: &str, pos: Pos, message: impl Into<String>) -> SpecError {
        SpecError {
            path: path.to_owned(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(
            f,
            "{} at line {}, column {}",
            self.message, self.line, self.column
        )
    }
}

pub(super) type Result<T, E = SpecError> = std::result::Result<T, E>;

/// An `env` mapping; deploy targets allow secrets placeholders in the
/// values (`secrets_allowed`), steps get secrets as variables instead.
pub(super) fn env_vars(f: &Field<'_>, secrets_allowed: bool) -> Result<BTreeMap<String, String>> {
    f.dict()?
        .into_iter()
        .map(|(name, value)| {
            if !values::is_env_var_name(name) {
                return Err(value.key_error(format!(
                    "invalid variable name \"{name}\": use A-Z, a-z, 0-9 and _, not starting with a digit"
                )));
            }
            let text = if secrets_allowed {
                value.text_with_secrets()?
            } else {
                value.text()?
            };
            Ok((name.to_owned(), text))
        })
        .collect()
}

/// An `http://` or `https://` URL with something after the scheme.
pub(super) fn is_http_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    ["http://", "https://"].iter().any(|scheme| {
        lower
            .strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty())
    }) && !s.contains(char::is_whitespace)
}

/// Finds `${{ ... }}` placeholders: each as written, with its trimmed
/// inside (`None` when unclosed; the placeholder then runs to the end).
fn placeholders(s: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let open = rest.find("${{")?;
        let after = &rest[open + 3..];
        match after.find("}}") {
            Some(close) => {
                let whole = &rest[open..open + 3 + close + 2];
                let inner = after[..close].trim();
                rest = &after[close + 2..];
                Some((whole, Some(inner)))
            }
            None => {
                let whole = &rest[open..];
                rest = "";
                Some((whole, None))
            }
        }
    })
}

/// A mapping with a fixed set of keys, checked for unknown and duplicate keys.
pub(super) struct Record<'a> {
    field: Field<'a>,
    entries: &'a [yaml::Entry],
}

impl<'a> Record<'a> {
    /// The value of `key` unless absent or null: an optional key written
    /// without a value counts as not written.
    pub(super) fn field(&self, key: &str) -> Option<Field<'a>> {
        self.present(key).filter(|f| !f.node.is_null())
    }

    /// The value of `key`, null included.
    pub(super) fn present(&self, key: &str) -> Option<Field<'a>> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| self.field.child_node(key, &e.value, e.key_pos))
    }

    pub(super) fn required(&self, key: &str) -> Result<Field<'a>> {
        self.present(key)
            .ok_or_else(|| self.field.error(format!("missing required key \"{key}\"")))
    }
}

/// A node with its key path; the extractors below turn it into values or
/// into errors that point at it.
#[derive(Clone)]
pub(super) struct Field<'a> {
    /// The value as written, for callers that look at its shape.
    pub(super) node: &'a Node,
    /// Key path like `steps[2].env`, named by every error about this value.
    path: String,
    /// Where the key of this value was written, for errors about the key
    /// itself (an invalid variable name, say); `None` for list items.
    key_pos: Option<Pos>,
}

impl<'a> Field<'a> {
    /// The document itself, with an empty key path.
    pub(super) fn root(node: &'a Node) -> Field<'a> {
        Field {
            node,
            path: String::new(),
            key_pos: None,
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn child_node(&self, key: &str, node: &'a Node, key_pos: Pos) -> Field<'a> {
        Field {
            node,
            path: self.child_path(key),
            key_pos: Some(key_pos),
        }
    }

    /// The field of `key` in this mapping, for errors found after its value
    /// was read (a duplicate step name, say); this node if `key` is absent.
    pub(super) fn child(&self, key: &str) -> Field<'a> {
        let entry = match &self.node.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        };
        Field {
            node: entry.map_or(self.node, |e| &e.value),
            path: self.child_path(key),
            key_pos: entry.map(|e| e.key_pos),
        }
    }

    pub(super) fn error(&self, message: impl Into<String>) -> SpecError {
        SpecError::at(&self.path, self.node.pos, message)
    }

    /// An error about the key of this field rather than its value.
    pub(super) fn key_error(&self, message: impl Into<String>) -> SpecError {
        let pos = self.key_pos.unwrap_or(self.node.pos);
        SpecError::at(&self.path, pos, message)
    }

    pub(super) fn type_error(&self, expected: &str) -> SpecError {
        self.error(format!(
            "expected {expected}, found {}",
            self.node.describe()
        ))
    }

    pub(super) fn record(&self, allowed: &[&str]) -> Result<Record<'a>> {
        let entries: &'a [yaml::Entry] = match &self.node.value {
            Value::Map(entries) => entries,
            // `key:` with no value is an empty mapping (`on: {push: }` and the like).
            _ if self.node.is_null() => &[],
            _ => return Err(self.type_error("a mapping")),
        };
        check_keys(self, entries, Some(allowed))?;
        Ok(Record {
            field: self.clone(),
            entries,
        })
    }

    /// A mapping with keys chosen by the user (`env`, `build_args`).
    pub(super) fn dict(&self) -> Result<Vec<(&'a str, Field<'a>)>> {
        let Value::Map(entries) = &self.node.value else {
            return Err(self.type_error("a mapping"));
        };
        check_keys(self, entries, None)?;
        Ok(entries
            .iter()
            .map(|e| (e.key.as_str(), self.child_node(&e.key, &e.value, e.key_pos)))
            .collect())
    }

    pub(super) fn seq(&self) -> Result<Vec<Field<'a>>> {
        let Value::Seq(items) = &self.node.value else {
            return Err(self.type_error("a sequence"));
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, node)| Field {
                node,
                path: format!("{}[{i}]", self.path),
                key_pos: None,
            })
            .collect())
    }

    /// Any scalar but null, as written: `true` and `1.10` are kept as text.
    fn scalar(&self) -> Result<&'a str> {
        match &self.node.value {
            Value::Scalar { text, .. } if !self.node.is_null() => Ok(text),
            _ => Err(self.type_error("a string")),
        }
    }

    /// Text where secrets placeholders are not allowed.
    pub(super) fn text(&self) -> Result<String> {
        let s = self.scalar()?;
        // `whole` starts with `${{`; an unclosed one counts too.
        if let Some((whole, _)) = placeholders(s).find(|(whole, _)| {
            whole
                .strip_prefix("${{")
                .is_some_and(|rest| rest.trim_start().starts_with("secrets"))
        }) {
            return Err(self.error(format!(
                "\"{whole}\": secrets placeholders are only allowed in notify and deploy target values; steps get the secrets listed under \"secrets\" as environment variables"
            )));
        }
        Ok(s.to_owned())
    }

    /// Text in notify and target values, where `${{ secrets.NAME }}` is kept
    /// for later resolution; any other `${{ }}` is a mistake.
    pub(super) fn text_with_secrets(&self) -> Result<String> {
        let s = self.scalar()?;
        for (whole, inner) in placeholders(s) {
            let valid = inner
                .and_then(|inner| inner.strip_prefix("secrets."))
                .is_some_and(|name| SecretName::parse(name).is_ok());
            if !valid {
                return Err(self.error(format!(
                    "invalid placeholder \"{whole}\": use ${{{{ secrets.NAME }}}}"
                )));
            }
        }
        Ok(s.to_owned())
    }

    pub(super) fn secret_or_text(&self) -> Result<String> {
        self.text_with_secrets().and_then(|s| self.no_blank(s))
    }

    pub(super) fn url_or_secret(&self) -> Result<String> {
        let s = self.text_with_secrets()?;
        // A URL from a secret is checked when it is resolved.
        if s.contains("${{") || is_http_url(&s) {
            Ok(s)
        } else {
            Err(self.error(format!(
                "invalid URL \"{s}\": use http://, https:// or ${{{{ secrets.NAME }}}}"
            )))
        }
    }

    pub(super) fn no_blank(&self, s: String) -> Result<String> {
        if s.trim().is_empty() {
            Err(self.error("must not be empty"))
        } else {
            Ok(s)
        }
    }

    pub(super) fn nonempty_text(&self) -> Result<String> {
        self.text().and_then(|s| self.no_blank(s))
    }

    /// Text without whitespace, e.g. an image reference.
    pub(super) fn token(&self) -> Result<String> {
        let s = self.nonempty_text()?;
        if s.contains(char::is_whitespace) {
            return Err(self.error(format!("\"{s}\" must not contain whitespace")));
        }
        Ok(s)
    }

    /// A path inside the repository: relative, never leaving it.
    pub(super) fn repo_path(&self) -> Result<String> {
        let s = self.nonempty_text()?;
        if s.starts_with('/') || s.split(['/', '\\']).any(|part| part == "..") {
            return Err(self.error(format!(
                "\"{s}\" must be a relative path inside the repository"
            )));
        }
        Ok(s)
    }

    pub(super) fn parse_with<T>(
        &self,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Result<T> {
        let s = self.text()?;
        parse(&s).map_err(|e| self.error(e.to_string()))
    }

    /// `true` or `false`, quoted or not: a quoted `"true"` is a string to
    /// YAML, but nobody writing it means anything else.
    pub(super) fn boolean(&self) -> Result<bool> {
        match self
            .scalar()
            .map_err(|_| self.type_error("true or false"))?
        {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            other => Err(self.error(format!("invalid boolean \"{other}\": use true or false"))),
        }
    }

    pub(super) fn duration(&self) -> Result<Duration> {
        self.parse_with(parse_duration)
    }

    pub(super) fn positive_duration(&self) -> Result<Duration> {
        let d = self.duration()?;
        if d.is_zero() {
            return Err(self.error("must be longer than 0s"));
        }
        Ok(d)
    }

    pub(super) fn patterns(&self) -> Result<Patterns> {
        let items = self.seq()?;
        let texts = items.iter().map(Field::text).collect::<Result<Vec<_>>>()?;
        Patterns::new(texts).map_err(|e| match items.get(e.index) {
            Some(item) => item.error(e.to_string()),
            None => self.error(e.to_string()),
        })
    }
}

/// Rejects duplicate keys and, when `allowed` is given, unknown ones.
fn check_keys(f: &Field<'_>, entries: &[yaml::Entry], allowed: Option<&[&str]>) -> Result<()> {
    let mut seen = HashSet::new();
    for e in entries {
        let path = f.child_path(&e.key);
        if let Some(allowed) = allowed
            && !allowed.contains(&e.key.as_str())
        {
            let hint = match closest(&e.key, allowed) {
                Some(key) => format!("did you mean \"{key}\"?"),
                None => format!("expected one of: {}", allowed.join(", ")),
            };
            return Err(SpecError::at(
                &path,
                e.key_pos,
                format!("unknown key ({hint})"),
            ));
        }
        if !seen.insert(e.key.as_str()) {
            return Err(SpecError::at(&path, e.key_pos, "duplicate key"));
        }
    }
    Ok(())
}

/// The allowed key a misspelt one most likely meant: one edit for every
/// three characters, rounded up, so `nme` finds `name` and `contiue_on_error`
/// finds `continue_on_error`, while `x` suggests nothing.
fn closest<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    allowed
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(d, candidate)| *d < key.len() && *d <= candidate.len().div_ceil(3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
