//! What the fuzz targets share: the property each target checks, written
//! once, and the YAML tree the structured workflow target builds.

use std::fmt::Write as _;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::mask::{MASK, Masker, MaskingStream};

/// Chooses one of `items` by a byte.
pub fn pick<'a>(items: &[&'a str], selector: u8) -> &'a str {
    items[usize::from(selector) % items.len()]
}

/// Keys the workflow parser reads somewhere, so that built documents get
/// past the unknown-key checks and reach the values' rules.
const KEYS: &[&str] = &[
    "name",
    "repo",
    "on",
    "push",
    "pull_request",
    "workflow_run",
    "branches",
    "tags",
    "paths",
    "ignore",
    "types",
    "drafts",
    "forks",
    "workflows",
    "concurrency",
    "cancel_in_progress",
    "runs_on",
    "env",
    "secrets",
    "timeout",
    "steps",
    "run",
    "container",
    "continue_on_error",
    "image",
    "context",
    "dockerfile",
    "build_args",
    "deploy",
    "environment",
    "target",
    "compose",
    "project",
    "file",
    "service",
    "port",
    "ports",
    "volumes",
    "network",
    "restart",
    "health",
    "path",
    "interval",
    "watch",
    "expect_status",
    "route",
    "listen",
    "domains",
    "tls",
    "drain",
    "rollback",
    "manual",
    "when",
    "notify",
    "event",
    "to",
    "channel",
    "slack",
    "email",
    "dingtalk",
    "webhook",
    "webhook_url",
    "url",
    "token",
    "secret",
    "cache",
    "key_files",
    "retention",
    "days",
    "keep_last",
    "branch",
];

/// Scalars the parser gives meaning to: names, durations, globs, repository
/// URLs, placeholders, secret references.
const SCALARS: &[&str] = &[
    "app",
    "build",
    "dev",
    "main",
    "v*",
    "**/*.go",
    "!docs/**",
    "10m",
    "0s",
    "90s",
    "300ms",
    "721h",
    "https://github.com/acme/app.git",
    "git@github.com:acme/app.git",
    "file:///srv/a",
    "{{sha}}",
    "{{sha_short}}",
    "{{branch}}",
    "{{ nope }}",
    "${{ secrets.TOKEN }}",
    "TOKEN",
    "always",
    "auto",
    "no",
    "unless-stopped",
    "on-failure",
    "80",
    "8080",
    "65536",
    "0",
    "-1",
    "true",
    "false",
    "~",
    "null",
    "''",
    "\"\"",
    "a b",
    ".",
    "..",
    "/",
    "example.com",
    "*.example.com",
    "registry:5000/app:1",
    "success",
    "failure",
    "task_failed",
];

/// A YAML value built from arbitrary choices.
#[derive(Debug, Arbitrary)]
pub enum Node {
    /// One of [`SCALARS`].
    Known(u8),
    /// Any text, quoted.
    Text(String),
    Number(i64),
    Seq(Vec<Node>),
    /// Keys from [`KEYS`], or any text when the byte is past its end.
    Map(Vec<(u8, Option<String>, Node)>),
}

impl Node {
    /// The document as block YAML.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        self.write(0, &mut out);
        out
    }

    fn inline(&self) -> Option<String> {
        match self {
            Node::Known(i) => Some(pick(SCALARS, *i).to_owned()),
            Node::Text(s) => Some(quoted(s)),
            Node::Number(n) => Some(n.to_string()),
            Node::Seq(items) if items.is_empty() => Some("[]".to_owned()),
            Node::Map(entries) if entries.is_empty() => Some("{}".to_owned()),
            Node::Seq(_) | Node::Map(_) => None,
        }
    }

    fn write(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Node::Seq(items) if !items.is_empty() => {
                for item in items {
                    match item.inline() {
                        Some(s) => {
                            let _ = writeln!(out, "{pad}- {s}");
                        }
                        None => {
                            let _ = writeln!(out, "{pad}-");
                            item.write(indent + 2, out);
                        }
                    }
                }
            }
            Node::Map(entries) if !entries.is_empty() => {
                for (key, text, value) in entries {
                    let key = match text {
                        Some(t) if usize::from(*key) >= KEYS.len() => quoted(t),
                        _ => pick(KEYS, *key).to_owned(),
                    };
                    match value.inline() {
                        Some(s) => {
                            let _ = writeln!(out, "{pad}{key}: {s}");
                        }
                        None => {
                            let _ = writeln!(out, "{pad}{key}:");
                            value.write(indent + 2, out);
                        }
                    }
                }
            }
            other => {
                let _ = writeln!(out, "{pad}{}", other.inline().unwrap_or_default());
            }
        }
    }
}

/// `s` as a double-quoted YAML scalar (JSON's escapes are YAML's too).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c) & 0xffff);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Workflow parsing answers and places its errors inside the document.
pub fn check_workflow(yaml: &str) {
    if let Err(e) = domain::workflow::parse(yaml) {
        let lines = yaml_lines(yaml);
        assert!(
            (1..=lines).contains(&e.line) && e.column >= 1,
            "error outside the document ({lines} lines): {e:?}"
        );
    }
}

/// Secret masking across chunks: the secret and its base64 forms never come
/// out, and the stream masks exactly as masking the whole text at once would.
#[derive(Debug, Arbitrary)]
pub struct MaskCase {
    pub secret: String,
    pub others: Vec<String>,
    pub prefix: Vec<u8>,
    pub middle: Vec<u8>,
    pub suffix: Vec<u8>,
    /// Where the text is cut into chunks, each taken modulo its length.
    pub cuts: Vec<u16>,
}

pub fn check_mask(case: &MaskCase) {
    // Masking replaces a secret by `***`; a secret made with `*` could be
    // formed again from the mask and the text beside it without any of its
    // own bytes leaking, so those are not what this property is about.
    if case.secret.is_empty() || case.secret.bytes().any(|b| MASK.contains(&b)) {
        return;
    }
    let encoded = STANDARD.encode(&case.secret);
    let mut text = case.prefix.clone();
    text.extend_from_slice(case.secret.as_bytes());
    text.extend_from_slice(&case.middle);
    text.extend_from_slice(encoded.as_bytes());
    text.extend_from_slice(&case.suffix);

    let masker = Masker::new(std::iter::once(&case.secret).chain(&case.others));
    let mut cuts: Vec<usize> = case
        .cuts
        .iter()
        .map(|&c| usize::from(c) % (text.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut stream = MaskingStream::new(masker.clone());
    let mut out = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([text.len()]) {
        out.extend(stream.push(&text[from..cut]));
        from = cut;
    }
    out.extend(stream.finish());

    for pattern in [
        case.secret.as_str(),
        &encoded,
        encoded.trim_end_matches('='),
    ] {
        assert!(
            !contains(&out, pattern.as_bytes()),
            "{pattern:?} leaked: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(out, masker.mask(&text), "streamed and whole masking differ");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A task's log composed from chunks delivered over several pages.
#[derive(Debug, Arbitrary)]
pub struct LogCase {
    pub names: Vec<String>,
    pub chunks: Vec<(i8, Vec<u8>)>,
    /// Where the chunks are cut into pages, each taken modulo their count.
    pub pages: Vec<u8>,
}

/// The composed log does not depend on how chunks are paged, and reads as
/// the chunks in order with a header, on a line of its own, wherever the
/// step changes.
pub fn check_log(case: &LogCase) {
    let mut composer = domain::logs::Composer::new(case.names.clone());
    let mut paged = Vec::new();
    let mut page = Vec::new();
    for (i, (position, data)) in case.chunks.iter().enumerate() {
        if case
            .pages
            .iter()
            .any(|&p| usize::from(p) % case.chunks.len() == i)
        {
            paged.append(&mut page);
        }
        composer.push(i32::from(*position), data, &mut page);
    }
    paged.append(&mut page);

    let mut want = Vec::new();
    let mut current = None;
    for (position, data) in case.chunks.iter().filter(|(_, d)| !d.is_empty()) {
        if current != Some(*position) {
            if !want.is_empty() && !want.ends_with(b"\n") {
                want.push(b'\n');
            }
            let name = usize::try_from(*position)
                .ok()
                .and_then(|i| case.names.get(i))
                .map_or("?", String::as_str);
            want.extend_from_slice(format!("==> {name}\n").as_bytes());
            current = Some(*position);
        }
        want.extend_from_slice(data);
    }
    assert_eq!(paged, want);
}

/// A duration that parses is within the limit and reads back from how it
/// is written.
pub fn check_duration(s: &str) {
    use domain::workflow::{MAX_DURATION, format_duration, parse_duration};
    if let Ok(d) = parse_duration(s) {
        assert!(d <= MAX_DURATION, "{s:?} gave {d:?}");
        assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{s:?}");
    }
}

/// An image reference that parses prints as written and parses again to
/// the same parts.
pub fn check_image_ref(s: &str) {
    use domain::image::ImageRef;
    if let Ok(r) = ImageRef::parse(s) {
        assert_eq!(r.to_string(), s);
        assert_eq!(ImageRef::parse(&r.to_string()).as_ref(), Ok(&r));
        assert!(!r.name.is_empty() && r.registry.as_ref().is_none_or(|h| !h.is_empty()));
    }
}

/// The lines of a document as YAML counts them: `\r\n`, `\n` and a lone
/// `\r` each end one (and the last line need not end).
fn yaml_lines(yaml: &str) -> usize {
    1 + yaml.replace("\r\n", "\n").matches(['\n', '\r']).count()
}
