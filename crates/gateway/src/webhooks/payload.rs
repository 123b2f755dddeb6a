//! What the providers' parsers share: the body read as JSON, required
//! fields named by their path when missing, and what a parsed delivery
//! hands to the orchestrator. Nothing here knows a provider's wire format.

use serde::de::DeserializeOwned;

/// What a delivery's body came to, as the orchestrator records it.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub push: Option<proto::PushEvent>,
    /// Only for a completed, successful run; otherwise `ignored` says why.
    pub workflow_run: Option<proto::WorkflowRunEvent>,
    pub pull_request: Option<proto::PullRequestEvent>,
    /// Where the event's commit statuses go and whose credentials clone;
    /// `None` when the payload does not name its repository on the forge.
    pub forge: Option<proto::ForgeRef>,
    /// Why nothing is to be done (an event Slipway does not handle, ...).
    pub ignored: Option<String>,
    /// GitHub's `ping` is answered `200 {"pong": true}` rather than `202`.
    pub pong: bool,
}

impl Parsed {
    pub fn ignored(why: impl Into<String>) -> Parsed {
        Parsed {
            ignored: Some(why.into()),
            ..Parsed::default()
        }
    }
}

/// Why a delivery's body cannot be read: answered `400` with this message,
/// and nothing is recorded.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("malformed json: {0}")]
    Json(serde_json::Error),
    /// `what` is the event as the message names it (`push`, `pull_request`,
    /// `merge request`); `why` names the field at fault.
    #[error("malformed {what} event: {why}")]
    Event { what: &'static str, why: String },
}

/// The body as JSON, whatever its shape.
pub fn json(body: &[u8]) -> Result<serde_json::Value, Malformed> {
    serde_json::from_slice(body).map_err(Malformed::Json)
}

/// The body read as `T`, the payload of event `what`, and converted.
pub fn read<T: DeserializeOwned>(
    body: &[u8],
    what: &'static str,
    convert: impl FnOnce(T) -> Result<Parsed, String>,
) -> Result<Parsed, Malformed> {
    let malformed = |why: String| Malformed::Event { what, why };
    let payload = serde_json::from_value(json(body)?).map_err(|e| malformed(e.to_string()))?;
    convert(payload).map_err(malformed)
}

/// An event Slipway does not act on; its body must still be JSON.
pub fn not_handled(body: &[u8], event: &str) -> Result<Parsed, Malformed> {
    json(body)?;
    Ok(Parsed::ignored(format!("event {event} not handled")))
}

/// The field at `path`, or why not.
pub fn required<T>(value: Option<T>, path: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("missing {path}"))
}

/// The text at `path`; an empty one is as good as missing.
pub fn text(value: Option<String>, path: &str) -> Result<String, String> {
    required(value.filter(|v| !v.is_empty()), path)
}

/// The full commit sha at `path` (40 hex digits), as the forge wrote it.
pub fn commit_sha(value: Option<String>, path: &str) -> Result<String, String> {
    let sha = text(value, path)?;
    if sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha)
    } else {
        Err(format!("invalid {path} {sha:?}: expected 40 hex digits"))
    }
}

/// The repository's URLs, each once and in the order given, without empty ones.
pub fn distinct_urls(urls: impl IntoIterator<Item = Option<String>>) -> Vec<String> {
    let mut distinct: Vec<String> = Vec::new();
    for url in urls.into_iter().flatten() {
        if !url.is_empty() && !distinct.contains(&url) {
            distinct.push(url);
        }
    }
    distinct
}

/// Every path the listed commits touched, sorted and without repeats.
pub fn changed_paths<'a>(paths: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut paths: Vec<String> = paths.cloned().collect();
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
pub mod testing {
    //! Fixtures changed in place, for the variants the forges publish no
    //! example of.

    use serde_json::Value;

    /// A JSON pointer and the value to set there.
    pub type Patch = (&'static str, Value);

    /// `body` with each JSON pointer set to its value; the last segment of a
    /// pointer may name a key the object does not have yet.
    pub fn patched(body: &str, patches: &[Patch]) -> String {
        let mut doc: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}"));
        for (pointer, value) in patches {
            let (parent, key) = pointer
                .rsplit_once('/')
                .unwrap_or_else(|| panic!("{pointer}"));
            let Some(Value::Object(object)) = doc.pointer_mut(parent) else {
                panic!("no object at {parent}");
            };
            object.insert(key.to_owned(), value.clone());
        }
        doc.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_shas() {
        let sha = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
        let cases = [
            (Some(sha), Ok(sha.to_owned())),
            (None, Err("missing head.sha".to_owned())),
            (Some(""), Err("missing head.sha".to_owned())),
            (
                Some("ec26c3e"),
                Err(r#"invalid head.sha "ec26c3e": expected 40 hex digits"#.to_owned()),
            ),
            (
                Some("zc26c3e57ca3a959ca5aad62de7213c562f8c821"),
                Err(r#"invalid head.sha "zc26c3e57ca3a959ca5aad62de7213c562f8c821": expected 40 hex digits"#.to_owned()),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(
                commit_sha(value.map(str::to_owned), "head.sha"),
                want,
                "{value:?}"
            );
        }
    }

    #[test]
    fn urls_once_each_in_order() {
        let urls = ["b", "", "a", "b"].map(|u| Some(u.to_owned()));
        assert_eq!(distinct_urls(urls.into_iter().chain([None])), ["b", "a"]);
    }
}

/// A commit's time as a provider writes it (RFC 3339, with its offset);
/// `None` when absent or unreadable: lead time then counts from the task.
pub fn commit_time(text: Option<&str>) -> Option<proto::Timestamp> {
    let at = chrono::DateTime::parse_from_rfc3339(text?.trim()).ok()?;
    Some(proto::timestamp(at.with_timezone(&chrono::Utc)))
}
