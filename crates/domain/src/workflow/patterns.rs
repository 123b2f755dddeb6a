//! Glob pattern lists for branches, tags and paths, with the semantics of
//! GitHub Actions filters: `*` stays within one `/`-separated segment, `**`
//! crosses segments, and a pattern starting with `!` excludes what earlier
//! patterns included (the last matching pattern decides).

use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid glob {pattern:?}: {reason}")]
pub struct PatternError {
    /// Index of the offending pattern in the list, so that callers can point at it.
    pub index: usize,
    pub pattern: String,
    pub reason: String,
}

#[derive(Clone)]
pub struct Patterns {
    patterns: Vec<String>,
    /// `negated[i]` says whether `patterns[i]` starts with `!`; the glob in
    /// `set` at index `i` is the pattern without it.
    negated: Vec<bool>,
    set: GlobSet,
}

impl Patterns {
    pub fn new<I, S>(patterns: I) -> Result<Patterns, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns: Vec<String> = patterns.into_iter().map(Into::into).collect();
        let mut negated = Vec::with_capacity(patterns.len());
        let mut builder = GlobSetBuilder::new();
        for (index, pattern) in patterns.iter().enumerate() {
            let error = |reason: String| PatternError {
                index,
                pattern: pattern.clone(),
                reason,
            };
            let (negate, glob) = match pattern.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, pattern.as_str()),
            };
            if glob.is_empty() {
                return Err(error("empty pattern".to_owned()));
            }
            // GitHub reads `**.md` as "any .md file", globset as `*.md`: rather
            // than silently matching less than the user meant, ask for the
            // spelling both agree on.
            if !double_stars_are_segments(glob) {
                return Err(error(
                    "** must be a whole path segment, as in src/** or **/*.md".to_owned(),
                ));
            }
            let glob = GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .map_err(|e| error(e.kind().to_string()))?;
            builder.add(glob);
            negated.push(negate);
        }
        if !patterns.is_empty() && negated.iter().all(|&n| n) {
            return Err(PatternError {
                index: 0,
                pattern: patterns[0].clone(),
                reason: "a list of only !-patterns matches nothing; add a pattern to include"
                    .to_owned(),
            });
        }
        let set = builder.build().map_err(|e| PatternError {
            index: 0,
            pattern: patterns.first().cloned().unwrap_or_default(),
            reason: e.kind().to_string(),
        })?;
        Ok(Patterns {
            patterns,
            negated,
            set,
        })
    }

    /// True when the last pattern that matches `s` is not a `!`-pattern; an
    /// empty list matches nothing.
    pub fn matches(&self, s: &str) -> bool {
        self.set
            .matches(s)
            .into_iter()
            .max()
            .and_then(|i| self.negated.get(i))
            .is_some_and(|&negated| !negated)
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

fn double_stars_are_segments(glob: &str) -> bool {
    let bytes = glob.as_bytes();
    glob.match_indices("**").all(|(i, _)| {
        let before = i.checked_sub(1).and_then(|j| bytes.get(j));
        let after = bytes.get(i + 2);
        matches!(before, None | Some(b'/')) && matches!(after, None | Some(b'/'))
    })
}

impl fmt::Debug for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Patterns").field(&self.patterns).finish()
    }
}

/// The compiled set follows from the strings, so they alone decide equality.
impl PartialEq for Patterns {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for Patterns {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["main"], "main", true),
            (&["main"], "mainline", false),
            (&["release/*"], "release/1.0", true),
            (&["release/*"], "release/1.0/hotfix", false),
            (&["release/**"], "release/1.0/hotfix", true),
            (&["*"], "feature/x", false),
            (&["**"], "feature/x", true),
            (&["v*"], "v1.2.3", true),
            (&["v*"], "1.2.3", false),
            (&["src/**", "go.mod"], "src/a/b.go", true),
            (&["src/**", "go.mod"], "go.mod", true),
            (&["src/**", "go.mod"], "docs/go.mod", false),
            (&["**/*.md"], "docs/a/readme.md", true),
            (&["**/*.md"], "readme.md", true),
            (&["feature/{a,b}"], "feature/b", true),
            (&["**", "!docs/**"], "docs/x.md", false),
            (&["**", "!docs/**"], "src/x.rs", true),
            (&["**", "!docs/**", "docs/keep.md"], "docs/keep.md", true),
            (&[], "main", false),
        ];
        for (patterns, input, want) in cases {
            let p = Patterns::new(patterns.iter().copied()).unwrap();
            assert_eq!(p.matches(input), *want, "{patterns:?} vs {input}");
        }
    }

    #[test]
    fn invalid_patterns_name_their_index() {
        let err = Patterns::new(["main", "release/[1"]).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(
            err.to_string()
                .starts_with(r#"invalid glob "release/[1": "#),
            "{err}"
        );
        assert_eq!(Patterns::new(["main", ""]).unwrap_err().index, 1);
        assert_eq!(Patterns::new(["!"]).unwrap_err().index, 0);
        assert!(Patterns::new(["!main"]).is_err());
        for bad in ["**.md", "src/**x", "a***", "x/***/y"] {
            assert!(Patterns::new([bad]).is_err(), "{bad}");
        }
        assert!(Patterns::new(["**", "a/**/b", "**/x"]).is_ok());
    }

    #[test]
    fn equality_is_by_source() {
        let a = Patterns::new(["main", "dev"]).unwrap();
        assert_eq!(a, Patterns::new(["main", "dev"]).unwrap());
        assert_ne!(a, Patterns::new(["dev", "main"]).unwrap());
        assert_eq!(a.patterns(), ["main", "dev"]);
    }
}
