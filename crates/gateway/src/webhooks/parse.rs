//! The providers' parsers behind one call, for the fuzz targets in `fuzz/`
//! and the property tests below: whatever the event and the body, reading a
//! delivery answers, never panics.

use super::{github, gitlab};

/// The `X-GitHub-Event` values the parser reads, and one it does not.
pub const GITHUB_EVENTS: &[&str] = &["ping", "push", "workflow_run", "pull_request", "issues"];

/// The `X-Gitlab-Event` values the parser reads, and one it does not.
pub const GITLAB_EVENTS: &[&str] = &[
    "Push Hook",
    "Tag Push Hook",
    "Merge Request Hook",
    "Note Hook",
];

/// Reads the delivery of `event` from `provider` (`github` or `gitlab`) as
/// the webhook handlers do; `Err` holds the `400` answer's message.
pub fn parse(provider: &str, event: &str, body: &[u8]) -> Result<(), String> {
    let read = match provider {
        "github" => github::read,
        "gitlab" => gitlab::read,
        other => return Err(format!("unknown provider {other:?}")),
    };
    read(event, body).map(drop).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;
    use serde_json::Value;

    use super::*;

    /// Every fixture, with the provider and event it was sent as.
    const FIXTURES: &[(&str, &str, &str)] = &[
        (
            "github",
            "pull_request",
            include_str!("fixtures/github/pull_request.opened.fork.json"),
        ),
        (
            "github",
            "pull_request",
            include_str!("fixtures/github/pull_request.closed.with-installation.json"),
        ),
        (
            "github",
            "push",
            include_str!("fixtures/github/push.with-installation.json"),
        ),
        (
            "github",
            "push",
            include_str!("fixtures/github/push.tag.json"),
        ),
        (
            "github",
            "workflow_run",
            include_str!("fixtures/github/workflow_run.completed.json"),
        ),
        (
            "gitlab",
            "Merge Request Hook",
            include_str!("fixtures/gitlab/merge_request.json"),
        ),
        (
            "gitlab",
            "Push Hook",
            include_str!("fixtures/gitlab/push.json"),
        ),
        (
            "gitlab",
            "Tag Push Hook",
            include_str!("fixtures/gitlab/tag_push.json"),
        ),
    ];

    /// Any JSON value, a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            "[0-9a-f]{40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The JSON pointer of every value in `doc`, the root included.
    fn pointers(doc: &Value, at: String, all: &mut Vec<String>) {
        match doc {
            Value::Object(map) => {
                for (key, value) in map {
                    let key = key.replace('~', "~0").replace('/', "~1");
                    pointers(value, format!("{at}/{key}"), all);
                }
            }
            Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    pointers(value, format!("{at}/{i}"), all);
                }
            }
            _ => {}
        }
        all.push(at);
    }

    #[test]
    fn fixtures_parse() {
        for (provider, event, body) in FIXTURES {
            assert_eq!(parse(provider, event, body.as_bytes()), Ok(()), "{event}");
        }
        assert!(parse("bitbucket", "push", b"{}").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_body_is_answered(
            github in any::<bool>(),
            event in any::<Index>(),
            body in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let (provider, events) = if github {
                ("github", GITHUB_EVENTS)
            } else {
                ("gitlab", GITLAB_EVENTS)
            };
            let event: &&str = event.get(events);
            let _ = parse(provider, event, &body);
        }

        /// A fixture with a few of its values, objects or arrays replaced by
        /// anything: each field the parsers read, given the wrong type or
        /// an odd value.
        #[test]
        fn fixtures_with_odd_values_are_answered(
            fixture in any::<Index>(),
            changes in prop::collection::vec((any::<Index>(), json_value()), 1..4),
        ) {
            let (provider, event, body) = fixture.get(FIXTURES);
            let mut doc: Value = serde_json::from_str(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (at, value) in changes {
                let mut all = Vec::new();
                pointers(&doc, String::new(), &mut all);
                let at: &String = at.get(&all);
                if let Some(slot) = doc.pointer_mut(at) {
                    *slot = value;
                }
            }
            let _ = parse(provider, event, doc.to_string().as_bytes());
        }
    }
}
