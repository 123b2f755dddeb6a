//! Image references, `[registry/]name[:tag][@digest]`, as one type: parsed
//! once where a string comes in, cut apart and put together only here.

use std::fmt;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("invalid image reference {0:?}: {1}")]
    Reference(String, &'static str),
    #[error("invalid digest {0:?}: expected sha256: and 64 hex digits")]
    Digest(String),
}

/// A content digest as registries give it: `sha256:` and 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, ImageRefError> {
        let valid = s
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if valid {
            Ok(Digest(s.to_owned()))
        } else {
            Err(ImageRefError::Digest(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An image reference, cut into its parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `host[:port]` when the first path component names one (it holds a
    /// `.` or a `:`, or is `localhost`); `None` for Docker Hub.
    pub registry: Option<String>,
    /// The repository path on the registry (`app`, `team/app`, `busybox`).
    pub name: String,
    /// The tag, when the reference names one.
    pub tag: Option<String>,
    /// The digest after `@`, as written (the engine checks its form).
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, ImageRefError> {
        let invalid = |why| ImageRefError::Reference(s.to_owned(), why);
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("empty, or with white space"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((_, "")) => return Err(invalid("nothing after @")),
            Some((rest, digest)) => (rest, Some(digest.to_owned())),
            None => (s, None),
        };
        let last = rest.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match rest[last..].rfind(':') {
            Some(i) => (&rest[..last + i], Some(rest[last + i + 1..].to_owned())),
            None => (rest, None),
        };
        if tag.as_deref() == Some("") {
            return Err(invalid("nothing after :"));
        }
        let (registry, name) = match path.split_once('/') {
            Some((first, name))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_owned()), name)
            }
            _ => (None, path),
        };
        if name.is_empty() || name.split('/').any(str::is_empty) {
            return Err(invalid("no repository name"));
        }
        Ok(ImageRef {
            registry,
            name: name.to_owned(),
            tag,
            digest,
        })
    }

    /// `[registry/]name`: the repository, without tag or digest.
    pub fn repository(&self) -> String {
        match &self.registry {
            Some(registry) => format!("{registry}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The same repository at `tag`.
    pub fn tagged(&self, tag: &str) -> ImageRef {
        ImageRef {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest`, without a tag: what deploys
    /// run, since a tag can move.
    pub fn pinned(&self, digest: &Digest) -> ImageRef {
        ImageRef {
            tag: None,
            digest: Some(digest.as_str().to_owned()),
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_and_prints_references() {
        let digest = format!("127.0.0.1:5000/app@{D}");
        let both = format!("localhost/a/b:v1@{D}");
        // input, registry, name, tag, digest
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: [Case; 8] = [
            ("busybox", None, "busybox", None, None),
            ("busybox:1.36", None, "busybox", Some("1.36"), None),
            ("library/busybox", None, "library/busybox", None, None),
            (
                "127.0.0.1:5000/app:abc",
                Some("127.0.0.1:5000"),
                "app",
                Some("abc"),
                None,
            ),
            (&digest, Some("127.0.0.1:5000"), "app", None, Some(D)),
            (
                "localhost:5000/a/b",
                Some("localhost:5000"),
                "a/b",
                None,
                None,
            ),
            (&both, Some("localhost"), "a/b", Some("v1"), Some(D)),
            (
                "registry.example.com/team/app:1",
                Some("registry.example.com"),
                "team/app",
                Some("1"),
                None,
            ),
        ];
        for (input, registry, name, tag, digest) in cases {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.registry.as_deref(), registry, "{input}");
            assert_eq!(r.name, name, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest.as_deref(), digest, "{input}");
            assert_eq!(r.to_string(), input);
        }
    }

    #[test]
    fn refuses_what_is_no_reference() {
        for bad in ["", "a b", "app:", "app@", "/app", "host.io/", "a//b"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pins_and_tags() {
        let digest = Digest::parse(D).unwrap_or_else(|e| panic!("{e}"));
        let r = ImageRef::parse("127.0.0.1:5000/app:abc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.pinned(&digest).to_string(),
            format!("127.0.0.1:5000/app@{D}")
        );
        assert_eq!(r.tagged("v2").to_string(), "127.0.0.1:5000/app:v2");
        assert_eq!(r.repository(), "127.0.0.1:5000/app");
    }

    #[test]
    fn digests() {
        assert!(Digest::parse(D).is_ok());
        for bad in [
            "",
            "sha256:",
            "sha256:00ff",
            "md5:00",
            &D.replace('0', "g"),
            &D.to_uppercase(),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }
}
