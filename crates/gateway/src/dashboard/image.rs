//! How the dashboard shows an image reference. Deployments store their
//! image by digest (`registry:5000/name@sha256:...`), tasks by their first
//! tag; users recognise a version by its tag or commit, and tell two builds
//! apart by the digest, so every page shows those two, short, with the whole
//! reference on hover.

/// How long a digest's hex is shown: enough to tell images apart.
const DIGEST_HEX: usize = 12;

/// How long a commit is shown, as in image tags.
const COMMIT_HEX: usize = 12;

/// An image reference, taken apart for display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageView {
    /// The repository's path without the registry (`shop`, `team/shop`).
    pub name: String,
    /// The tag; empty for a reference by digest alone.
    pub tag: String,
    /// `sha256:` and the first hex digits; empty without a digest.
    pub digest: String,
    /// The whole reference, for the title.
    pub full: String,
}

impl ImageView {
    /// Reads `[registry/]path[:tag][@algo:hex]` as Docker does: the first
    /// component is a registry when it has a `.` or a `:` or is
    /// `localhost`, and a `:` after the last `/` starts the tag.
    pub fn parse(reference: &str) -> Self {
        let (named, digest) = match reference.split_once('@') {
            Some((named, digest)) => (named, short_digest(digest)),
            None => (reference, String::new()),
        };
        let (registry_less, last_slash) = match named.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (rest, rest.rfind('/'))
            }
            _ => (named, named.rfind('/')),
        };
        let tail_start = last_slash.map_or(0, |i| i + 1);
        let (name, tag) = match registry_less[tail_start..].rsplit_once(':') {
            Some((_, tag)) => (
                &registry_less[..registry_less.len() - tag.len() - 1],
                tag.to_owned(),
            ),
            None => (registry_less, String::new()),
        };
        Self {
            name: name.to_owned(),
            tag,
            digest,
            full: reference.to_owned(),
        }
    }

    /// The version a user recognises: the tag, else the commit of the task
    /// that built it, short; empty when neither is known.
    pub fn version(&self, commit: Option<&str>) -> String {
        if !self.tag.is_empty() {
            return self.tag.clone();
        }
        commit
            .map(|c| c.chars().take(COMMIT_HEX).collect())
            .unwrap_or_default()
    }

    /// `name@sha256:abcdef123456` or `name:tag`: the reference in a few
    /// words, for text that quotes it (alert summaries).
    pub fn compact(&self) -> String {
        match (self.digest.is_empty(), self.tag.is_empty()) {
            (false, _) => format!("{}@{}", self.name, self.digest),
            (true, false) => format!("{}:{}", self.name, self.tag),
            (true, true) => self.name.clone(),
        }
    }
}

/// `sha256:` and the first hex digits of a digest.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) => format!(
            "{algo}:{}",
            hex.chars().take(DIGEST_HEX).collect::<String>()
        ),
        None => digest.chars().take(DIGEST_HEX).collect(),
    }
}

/// `text` with every image reference by digest in it made compact: alert
/// summaries quote whole references, which push a table's other columns
/// off the screen.
pub fn compact_references(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains("@sha256:") {
                ImageView::parse(word).compact()
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "abcdef1234567890abcdef1234567890abcdef1234567890abcdef1234567890";

    #[test]
    fn references_by_digest_tag_or_both() {
        let by_digest = ImageView::parse(&format!("shop@sha256:{HEX}"));
        assert_eq!(
            (by_digest.name.as_str(), by_digest.tag.as_str()),
            ("shop", "")
        );
        assert_eq!(by_digest.digest, "sha256:abcdef123456");
        assert_eq!(by_digest.full, format!("shop@sha256:{HEX}"));

        let both = ImageView::parse(&format!(
            "127.0.0.1:5000/team/shop:4f1c2a9b3d5e@sha256:{HEX}"
        ));
        assert_eq!(
            (both.name.as_str(), both.tag.as_str(), both.digest.as_str()),
            ("team/shop", "4f1c2a9b3d5e", "sha256:abcdef123456")
        );

        let tagged = ImageView::parse("hello-go:main");
        assert_eq!(
            (
                tagged.name.as_str(),
                tagged.tag.as_str(),
                tagged.digest.as_str()
            ),
            ("hello-go", "main", "")
        );

        // A registry's port is not a tag.
        let port = ImageView::parse(&format!("localhost:5000/app@sha256:{HEX}"));
        assert_eq!(
            (port.name.as_str(), port.tag.as_str(), port.digest.as_str()),
            ("app", "", "sha256:abcdef123456")
        );
        let port_tag = ImageView::parse("registry.example.com:5000/app:v2");
        assert_eq!(
            (port_tag.name.as_str(), port_tag.tag.as_str()),
            ("app", "v2")
        );
        let localhost = ImageView::parse("localhost/app");
        assert_eq!(
            (localhost.name.as_str(), localhost.tag.as_str()),
            ("app", "")
        );
        let hub = ImageView::parse("library/busybox:1.36");
        assert_eq!(
            (hub.name.as_str(), hub.tag.as_str()),
            ("library/busybox", "1.36")
        );
    }

    #[test]
    fn the_version_is_the_tag_else_the_short_commit() {
        let commit = "4f1c2a9b3d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a";
        let by_digest = ImageView::parse(&format!("127.0.0.1:5000/shop@sha256:{HEX}"));
        assert_eq!(by_digest.version(Some(commit)), "4f1c2a9b3d5e");
        assert_eq!(by_digest.version(None), "");
        let tagged = ImageView::parse(&format!("127.0.0.1:5000/shop:v1@sha256:{HEX}"));
        assert_eq!(tagged.version(Some(commit)), "v1");
    }

    #[test]
    fn summaries_quote_references_compactly() {
        assert_eq!(
            compact_references(&format!(
                "deploy of 127.0.0.1:5000/slipway-ui/shop-4242@sha256:{HEX} to dev failed"
            )),
            "deploy of slipway-ui/shop-4242@sha256:abcdef123456 to dev failed"
        );
        assert_eq!(compact_references("task 3 succeeded"), "task 3 succeeded");
        assert_eq!(ImageView::parse("app:v1").compact(), "app:v1");
    }
}
