//! How large a workflow definition may be: the bounds on the work and the
//! memory one definition can cost, given to the parser by whoever parses
//! (the orchestrator from its settings; everyone else takes the defaults).

/// Bounds on a workflow definition. A definition past one is refused with
/// the key path, line and column of what went past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The YAML text, in bytes.
    pub max_bytes: usize,
    /// Nesting of sequences and mappings.
    pub max_depth: usize,
    /// Nodes of the document with its aliases expanded; the text of its
    /// scalars, aliases expanded, may be at most [`EXPANSION`] times
    /// `max_bytes` too ("billion laughs" stop here).
    pub max_nodes: usize,
    /// Entries of `steps`.
    pub max_steps: usize,
    /// Entries of `deploy`.
    pub max_environments: usize,
    /// Entries of `notify`.
    pub max_notify_rules: usize,
}

/// How many times its own size a document's text may grow by aliases.
pub const EXPANSION: usize = 4;

impl Limits {
    /// The most any limit may be raised to: what the parser's recursion and
    /// a service's memory still take. Definitions already stored are read
    /// again with these, so lowering a limit never breaks them.
    pub const CEILING: Limits = Limits {
        max_bytes: 16 * 1024 * 1024,
        max_depth: 256,
        max_nodes: 10_000_000,
        max_steps: 4096,
        max_environments: 256,
        max_notify_rules: 256,
    };

    /// Bytes of scalar text the document may hold with aliases expanded.
    pub fn max_expanded_bytes(&self) -> usize {
        self.max_bytes.saturating_mul(EXPANSION)
    }

    /// Each limit checked against [`Limits::CEILING`] and for being at
    /// least 1; the error names the first one that is not.
    pub fn check(&self) -> Result<(), OutOfRange> {
        let pairs = [
            ("max_bytes", self.max_bytes, Self::CEILING.max_bytes),
            ("max_depth", self.max_depth, Self::CEILING.max_depth),
            ("max_nodes", self.max_nodes, Self::CEILING.max_nodes),
            ("max_steps", self.max_steps, Self::CEILING.max_steps),
            (
                "max_environments",
                self.max_environments,
                Self::CEILING.max_environments,
            ),
            (
                "max_notify_rules",
                self.max_notify_rules,
                Self::CEILING.max_notify_rules,
            ),
        ];
        for (name, value, ceiling) in pairs {
            if !(1..=ceiling).contains(&value) {
                return Err(OutOfRange {
                    name,
                    value,
                    ceiling,
                });
            }
        }
        Ok(())
    }
}

/// A limit set outside what [`Limits::CEILING`] allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} = {value}: must be from 1 to {ceiling}")]
pub struct OutOfRange {
    /// The field of [`Limits`], such as `max_steps`.
    pub name: &'static str,
    pub value: usize,
    pub ceiling: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1024 * 1024,
            max_depth: 64,
            max_nodes: 100_000,
            max_steps: 256,
            max_environments: 32,
            max_notify_rules: 32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, parse_stored, parse_with};
    use super::*;

    const HEAD: &str = "name: w\nrepo: https://example.com/w.git\n";

    fn steps(n: usize) -> String {
        let mut yaml = format!("{HEAD}steps:\n");
        for i in 0..n {
            yaml += &format!("  - {{name: s{i}, run: make}}\n");
        }
        yaml
    }

    fn error(yaml: &str, limits: &Limits) -> String {
        match parse_with(yaml, limits) {
            Ok(_) => panic!("parsed: {yaml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn lists_past_their_limit_are_refused_where_they_start() {
        assert!(parse(&steps(256)).is_ok());
        assert_eq!(
            error(&steps(257), &Limits::default()),
            "steps: 257 steps, more than the limit of 256 at line 4, column 3"
        );

        let mut yaml = format!("{HEAD}image: {{name: w}}\ndeploy:\n");
        for i in 0..3 {
            yaml += &format!("  - {{environment: e{i}, target: {{container: {{name: c{i}}}}}}}\n");
        }
        let few = Limits {
            max_environments: 2,
            max_notify_rules: 1,
            ..Limits::default()
        };
        assert_eq!(
            error(&yaml, &few),
            "deploy: 3 environments, more than the limit of 2 at line 5, column 3"
        );

        let notify = format!(
            "{}notify:\n  - {{on: [build_failed], webhook: {{url: \"https://x\"}}}}\n  - {{on: [deploy_failed], webhook: {{url: \"https://x\"}}}}\n",
            steps(1)
        );
        assert!(parse(&notify).is_ok());
        assert_eq!(
            error(&notify, &few),
            "notify: 2 rules, more than the limit of 1 at line 6, column 3"
        );
    }

    #[test]
    fn size_and_depth_follow_the_limits_given() {
        let small = Limits {
            max_bytes: 64,
            max_depth: 3,
            ..Limits::default()
        };
        let long = steps(3);
        assert_eq!(
            error(&long, &small),
            format!(
                "the definition is {} bytes, more than the limit of 64 bytes at line 1, column 1",
                long.len()
            )
        );
        assert_eq!(
            error("a: [[[x]]]\n", &small),
            "nesting too deep (more than 3 levels) at line 1, column 6"
        );
    }

    #[test]
    fn a_stored_definition_reads_past_the_default_limits() {
        let many = steps(300);
        assert!(parse(&many).is_err());
        assert!(parse_stored(&many).is_ok());
    }

    #[test]
    fn limits_are_checked_against_the_ceiling() {
        assert_eq!(Limits::default().check(), Ok(()));
        assert_eq!(Limits::CEILING.check(), Ok(()));
        let zero = Limits {
            max_steps: 0,
            ..Limits::default()
        };
        assert_eq!(
            zero.check().map_err(|e| e.to_string()),
            Err("max_steps = 0: must be from 1 to 4096".to_owned())
        );
    }
}
