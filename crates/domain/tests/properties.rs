//! Property tests of the domain's parsers, the secret masker and the log
//! composer, on stable: the same properties the fuzz targets in `fuzz/`
//! check (docs/fuzzing.md), with a few hundred cases each so that the whole
//! set takes seconds.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::image::ImageRef;
use domain::logs::Composer;
use domain::mask::{MASK, Masker, MaskingStream};
use domain::workflow::{MAX_DURATION, format_duration, parse, parse_duration};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Text from a small alphabet, so that secrets and their near misses meet
/// often; or any text.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[abYQ=\n*]{0,12}", ".{0,12}"]
}

/// A secret as the masker takes it, without the mask's own `*`: such a
/// secret could be formed again from the mask and the text beside it
/// without any of its bytes leaking.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof!["[abYQ=]{1,6}", "[^*]{1,16}"]
}

/// `text` cut at `cuts` (each taken modulo the length) and streamed
/// through a masker of `secrets`.
fn stream_masked(secrets: &[String], text: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
    cuts.sort_unstable();
    let mut stream = MaskingStream::new(Masker::new(secrets));
    let mut out = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([text.len()]) {
        out.extend(stream.push(&text[from..cut]));
        from = cut;
    }
    out.extend(stream.finish());
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn secrets_split_anywhere_never_come_out(
        secret in secret(),
        others in prop::collection::vec(secret(), 0..3),
        (prefix, middle, suffix) in (text(), text(), text()),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        prop_assume!(!secret.bytes().any(|b| MASK.contains(&b)));
        let encoded = STANDARD.encode(&secret);
        let text = format!("{prefix}{secret}{middle}{encoded}{suffix}");
        let mut secrets = others;
        secrets.insert(0, secret.clone());
        let out = stream_masked(&secrets, text.as_bytes(), &cuts);
        for pattern in [secret.as_str(), &encoded, encoded.trim_end_matches('=')] {
            prop_assert!(
                !contains(&out, pattern.as_bytes()),
                "{pattern:?} in {:?}",
                String::from_utf8_lossy(&out)
            );
        }
        prop_assert_eq!(out, Masker::new(&secrets).mask(text.as_bytes()));
    }

    #[test]
    fn a_log_does_not_depend_on_its_paging(
        names in prop::collection::vec("[a-z]{1,5}", 0..4),
        chunks in prop::collection::vec((-1i32..5, "[ab\n]{0,4}"), 0..12),
        pages in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let breaks: Vec<usize> = pages.iter().map(|p| p.index(chunks.len().max(1))).collect();
        let mut composer = Composer::new(names.clone());
        let mut paged = Vec::new();
        let mut page = Vec::new();
        for (i, (position, data)) in chunks.iter().enumerate() {
            if breaks.contains(&i) {
                paged.append(&mut page);
            }
            composer.push(*position, data.as_bytes(), &mut page);
        }
        paged.append(&mut page);

        // The chunks in order, and a header on a line of its own wherever
        // the step changes.
        let mut want = String::new();
        let mut current = None;
        for (position, data) in chunks.iter().filter(|(_, d)| !d.is_empty()) {
            if current != Some(*position) {
                if !want.is_empty() && !want.ends_with('\n') {
                    want.push('\n');
                }
                let name = usize::try_from(*position)
                    .ok()
                    .and_then(|i| names.get(i))
                    .map_or("?", String::as_str);
                want.push_str(&format!("==> {name}\n"));
                current = Some(*position);
            }
            want.push_str(data);
        }
        prop_assert_eq!(String::from_utf8_lossy(&paged), want);
    }

    #[test]
    fn durations_read_back_as_written(
        n in prop_oneof![0u64..100_000, any::<u64>()],
        unit in prop::sample::select(vec!["ms", "s", "m", "h", "", "d", "min"]),
    ) {
        let s = format!("{n}{unit}");
        let factor = match unit {
            "ms" => Some(1),
            "s" => Some(1000),
            "m" => Some(60_000),
            "h" => Some(3_600_000),
            _ => None,
        };
        let want_ms = factor.and_then(|f| u128::from(n).checked_mul(f));
        match parse_duration(&s) {
            Ok(d) => {
                prop_assert_eq!(Some(d.as_millis()), want_ms);
                prop_assert!(d <= MAX_DURATION);
                prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
            }
            Err(_) => prop_assert!(
                want_ms.is_none_or(|ms| ms > MAX_DURATION.as_millis()),
                "{s} refused"
            ),
        }
    }

    #[test]
    fn formatted_durations_parse(ms in 0..=MAX_DURATION.as_millis() as u64) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn any_text_is_a_duration_or_refused(s in ".{0,12}") {
        if let Ok(d) = parse_duration(&s) {
            prop_assert!(d <= MAX_DURATION);
        }
    }

    #[test]
    fn image_references_print_as_written(
        s in prop_oneof!["[a-z0-9./:@_-]{0,24}", ".{0,16}"],
    ) {
        if let Ok(r) = ImageRef::parse(&s) {
            prop_assert_eq!(r.to_string(), s);
            prop_assert_eq!(ImageRef::parse(&r.to_string()), Ok(r.clone()));
            prop_assert!(!r.name.is_empty());
        }
    }

    #[test]
    fn any_text_is_a_workflow_or_an_error_inside_it(yaml in ".{0,64}") {
        check_workflow(&yaml)?;
    }

    #[test]
    fn built_workflows_are_read_or_refused(root in tree()) {
        check_workflow(&to_yaml(&root, 0))?;
    }
}

/// Parsing answers, and an error points inside the document.
fn check_workflow(yaml: &str) -> Result<(), TestCaseError> {
    if let Err(e) = parse(yaml) {
        let lines = yaml_lines(yaml);
        prop_assert!(
            (1..=lines).contains(&e.line) && e.column >= 1,
            "{e:?} outside {yaml:?}"
        );
    }
    Ok(())
}

/// A YAML value of the workflow's own keys and meaningful scalars.
#[derive(Debug, Clone)]
enum Node {
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn tree() -> impl Strategy<Value = Node> {
    let scalar = prop_oneof![
        prop::sample::select(vec![
            "app",
            "build",
            "main",
            "v*",
            "**/*.go",
            "10m",
            "0s",
            "300ms",
            "721h",
            "https://github.com/acme/app.git",
            "{{sha}}",
            "{{ nope }}",
            "${{ secrets.TOKEN }}",
            "TOKEN",
            "always",
            "auto",
            "80",
            "65536",
            "-1",
            "true",
            "~",
            "''",
            "example.com",
            "registry:5000/app:1",
            "success",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9 ]{0,8}".prop_map(|s| format!("{s:?}")),
    ];
    let key = prop::sample::select(vec![
        "name",
        "repo",
        "on",
        "push",
        "pull_request",
        "workflow_run",
        "branches",
        "tags",
        "paths",
        "types",
        "steps",
        "run",
        "env",
        "secrets",
        "timeout",
        "image",
        "deploy",
        "environment",
        "target",
        "container",
        "port",
        "health",
        "path",
        "route",
        "listen",
        "domains",
        "notify",
        "event",
        "to",
        "cache",
        "key_files",
        "retention",
        "days",
        "runs_on",
        "concurrency",
        "cancel_in_progress",
        "unknown",
    ]);
    scalar
        .prop_map(Node::Scalar)
        .prop_recursive(4, 32, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Node::Seq),
                prop::collection::vec((key.clone().prop_map(str::to_owned), inner), 0..5)
                    .prop_map(Node::Map),
            ]
        })
}

/// The node as block YAML, `indent` spaces in.
fn to_yaml(node: &Node, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let inline = |node: &Node| match node {
        Node::Scalar(s) => Some(s.clone()),
        Node::Seq(items) if items.is_empty() => Some("[]".to_owned()),
        Node::Map(entries) if entries.is_empty() => Some("{}".to_owned()),
        _ => None,
    };
    match node {
        Node::Seq(items) if !items.is_empty() => items
            .iter()
            .map(|item| match inline(item) {
                Some(s) => format!("{pad}- {s}\n"),
                None => format!("{pad}-\n{}", to_yaml(item, indent + 2)),
            })
            .collect(),
        Node::Map(entries) if !entries.is_empty() => entries
            .iter()
            .map(|(key, value)| match inline(value) {
                Some(s) => format!("{pad}{key}: {s}\n"),
                None => format!("{pad}{key}:\n{}", to_yaml(value, indent + 2)),
            })
            .collect(),
        other => format!("{pad}{}\n", inline(other).unwrap_or_default()),
    }
}

/// The lines of a document as YAML counts them: `\r\n`, `\n` and a lone
/// `\r` each end one (and the last line need not end).
fn yaml_lines(yaml: &str) -> usize {
    1 + yaml.replace("\r\n", "\n").matches(['\n', '\r']).count()
}

/// Found by the `workflow_text` target: a lone `\r` ends a line in YAML, so
/// an error after a run of them is placed on a later line than `str::lines`
/// counts; the error is where an editor shows it.
#[test]
fn lone_carriage_returns_end_lines() {
    let yaml = format!("# comment{}\u{2}", "\r".repeat(99));
    let e = parse(&yaml).err();
    assert_eq!(e.map(|e| (e.line, yaml_lines(&yaml))), Some((100, 100)));
    assert_eq!(yaml_lines("a\r\nb\rc\n"), 4);
}
