//! Templates for image tags and build arguments: text with the placeholders
//! `{{sha}}`, `{{sha_short}}`, `{{branch}}`, `{{tag}}` and `{{task_id}}`.
//! Unknown placeholders are rejected when the workflow is stored, so that
//! rendering cannot fail at build time.

use std::fmt;

use super::ValueError;
use crate::push::CommitSha;

#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Sha,
    ShaShort,
    Branch,
    Tag,
    TaskId,
}

/// The values a template can refer to, for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVars {
    pub sha: CommitSha,
    /// Absent for tag pushes; renders as an empty string.
    pub branch: Option<String>,
    /// Absent for branch pushes; renders as an empty string.
    pub tag: Option<String>,
    pub task_id: i64,
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, ValueError> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or(ValueError::UnclosedPlaceholder)?;
            let var = match after[..close].trim() {
                "sha" => Var::Sha,
                "sha_short" => Var::ShaShort,
                "branch" => Var::Branch,
                "tag" => Var::Tag,
                "task_id" => Var::TaskId,
                _ => {
                    return Err(ValueError::UnknownPlaceholder(
                        rest[open..open + 2 + close + 2].to_owned(),
                    ));
                }
            };
            parts.push(Part::Var(var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template {
            source: s.to_owned(),
            parts,
        })
    }

    /// The default image tag, `{{sha_short}}`.
    pub(crate) fn sha_short() -> Template {
        Template {
            source: "{{sha_short}}".to_owned(),
            parts: vec![Part::Var(Var::ShaShort)],
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal text between placeholders, for callers that restrict it
    /// (image tags allow only a few characters).
    pub(crate) fn literal_text(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Text(text) => Some(text.as_str()),
            Part::Var(_) => None,
        })
    }

    pub fn render(&self, vars: &TemplateVars) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(Var::Sha) => out.push_str(vars.sha.as_str()),
                Part::Var(Var::ShaShort) => out.push_str(vars.sha.short()),
                // A branch like `feature/x` is not a valid image tag.
                Part::Var(Var::Branch) => {
                    out.push_str(&vars.branch.as_deref().unwrap_or_default().replace('/', "-"));
                }
                Part::Var(Var::Tag) => out.push_str(vars.tag.as_deref().unwrap_or_default()),
                Part::Var(Var::TaskId) => out.push_str(&vars.task_id.to_string()),
            }
        }
        out
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(branch: Option<&str>, tag: Option<&str>) -> TemplateVars {
        TemplateVars {
            sha: CommitSha::parse("0123456789ABCDEF0123456789abcdef01234567").unwrap(),
            branch: branch.map(str::to_owned),
            tag: tag.map(str::to_owned),
            task_id: 42,
        }
    }

    #[test]
    fn rendering() {
        let cases = [
            ("{{sha_short}}", Some("main"), None, "0123456789ab"),
            (
                "{{sha}}",
                Some("main"),
                None,
                "0123456789abcdef0123456789abcdef01234567",
            ),
            ("{{branch}}", Some("feature/a/b"), None, "feature-a-b"),
            ("{{ branch }}-{{task_id}}", Some("main"), None, "main-42"),
            ("{{tag}}", None, Some("v1.2.3"), "v1.2.3"),
            ("b-{{branch}}", None, Some("v1"), "b-"),
            ("t{{tag}}", Some("main"), None, "t"),
            ("latest", Some("main"), None, "latest"),
            ("", Some("main"), None, ""),
            ("{{sha_short}}{{task_id}}", None, None, "0123456789ab42"),
        ];
        for (source, branch, tag, want) in cases {
            let t = Template::parse(source).unwrap();
            assert_eq!(t.render(&vars(branch, tag)), want, "{source}");
            assert_eq!(t.as_str(), source);
        }
        assert_eq!(
            Template::sha_short(),
            Template::parse("{{sha_short}}").unwrap()
        );
    }

    #[test]
    fn invalid() {
        assert_eq!(
            Template::parse("x-{{ commit }}-y"),
            Err(ValueError::UnknownPlaceholder("{{ commit }}".to_owned()))
        );
        assert_eq!(
            Template::parse("{{sha"),
            Err(ValueError::UnclosedPlaceholder)
        );
        assert_eq!(
            Template::parse("{{SHA}}").unwrap_err().to_string(),
            r#"unknown placeholder "{{SHA}}": use {{sha}}, {{sha_short}}, {{branch}}, {{tag}} or {{task_id}}"#
        );
    }
}
