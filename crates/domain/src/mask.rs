//! Keeps secret values out of logs. A step's output arrives in chunks of any
//! size, so a secret may be split across two chunks: [`MaskingStream`] holds
//! back just the bytes that could still become a secret and masks the
//! completed text.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// What a masked secret is replaced with.
pub const MASK: &[u8] = b"***";

/// A URL as it may be shown: a password in its userinfo becomes `***`
/// (`https://bot:***@host/x.git`), and so does a userinfo without one, which
/// is usually a token (`https://***@host/x.git`). Anything else is unchanged.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return url.into();
    };
    let shown = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    // `rest` continues with the `@` after the userinfo.
    format!("{scheme}://{shown}{}", &rest[userinfo.len()..]).into()
}

/// The set of byte strings to hide: each secret and its base64 form.
#[derive(Debug, Clone)]
pub struct Masker {
    /// `None` when there is nothing to mask, so output passes straight through.
    matcher: Option<AhoCorasick>,
    /// The patterns, kept to decide how much of a chunk's tail to hold back.
    patterns: Vec<Vec<u8>>,
}

impl Masker {
    /// A masker for these secret values. Empty values are ignored: masking
    /// the empty string would mean masking nothing and everything at once.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.is_empty() {
                continue;
            }
            let encoded = STANDARD.encode(secret);
            // Without padding too: the padded tail is often cut off when a
            // value is embedded in a longer text.
            let unpadded = encoded.trim_end_matches('=').to_owned();
            for pattern in [secret.to_owned(), encoded, unpadded] {
                let bytes = pattern.into_bytes();
                if !bytes.is_empty() && !patterns.contains(&bytes) {
                    patterns.push(bytes);
                }
            }
        }
        let matcher = if patterns.is_empty() {
            None
        } else {
            // Leftmost-longest so that a secret and its own prefix (another
            // secret) mask the whole longer value.
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .ok()
        };
        Self { matcher, patterns }
    }

    /// True when there is no secret to mask.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every complete secret replaced by [`MASK`].
    pub fn mask(&self, text: &[u8]) -> Vec<u8> {
        match &self.matcher {
            None => text.to_vec(),
            Some(ac) => {
                let mut out = Vec::with_capacity(text.len());
                ac.replace_all_with_bytes(text, &mut out, |_, _, dst| {
                    dst.extend_from_slice(MASK);
                    true
                });
                out
            }
        }
    }

    /// Where `text` must be cut so that everything before it can be masked
    /// and released now: before any tail that may still grow into a
    /// secret, and never inside a match that reaches past that point.
    fn release_point(&self, text: &[u8]) -> usize {
        let Some(ac) = &self.matcher else {
            return text.len();
        };
        let longest = self.patterns.iter().map(Vec::len).max().unwrap_or(0);
        let first = text.len().saturating_sub(longest.saturating_sub(1));
        let mut cut = (first..text.len())
            .find(|&start| {
                let tail = &text[start..];
                self.patterns
                    .iter()
                    .any(|p| p.len() > tail.len() && p.starts_with(tail))
            })
            .unwrap_or(text.len());
        // A complete match that straddles the cut moves it back to its start.
        loop {
            let straddling = ac
                .find_iter(text)
                .find(|m| m.start() < cut && m.end() > cut)
                .map(|m| m.start());
            match straddling {
                Some(start) => cut = start,
                None => return cut,
            }
        }
    }
}

/// A masker applied to one stream of output chunks.
#[derive(Debug, Clone)]
pub struct MaskingStream {
    masker: Masker,
    /// Bytes held back because they may be the start of a secret.
    held: Vec<u8>,
}

impl MaskingStream {
    pub fn new(masker: Masker) -> Self {
        Self {
            masker,
            held: Vec::new(),
        }
    }

    /// Takes the next chunk and returns what can be released now, masked.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.masker.is_empty() {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let cut = self.masker.release_point(&self.held);
        let out = self.masker.mask(&self.held[..cut]);
        self.held.drain(..cut);
        out
    }

    /// Releases what is still held back, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        self.masker.mask(&held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        let cases = [
            (
                "https://bot:pw@github.com/acme/x.git",
                "https://bot:***@github.com/acme/x.git",
            ),
            (
                "https://ghp_token@github.com/acme/x.git",
                "https://***@github.com/acme/x.git",
            ),
            (
                "postgres://slipway:pw@127.0.0.1:5432/slipway",
                "postgres://slipway:***@127.0.0.1:5432/slipway",
            ),
            ("amqp://u:p:q@h/%2f", "amqp://u:***@h/%2f"),
            ("https://host/a@b", "https://host/a@b"),
            ("https://host?x=a@b", "https://host?x=a@b"),
            ("amqp://127.0.0.1:5672/%2f", "amqp://127.0.0.1:5672/%2f"),
            ("file:///srv/x.git", "file:///srv/x.git"),
            ("git@github.com:acme/x.git", "git@github.com:acme/x.git"),
            ("", ""),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    fn stream_through(secrets: &[&str], chunks: &[&str]) -> String {
        let mut stream = MaskingStream::new(Masker::new(secrets.iter().copied()));
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(stream.push(chunk.as_bytes()));
        }
        out.extend(stream.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn masks_secrets_and_their_base64_form() {
        let masker = Masker::new(["hunter2"]);
        let b64 = STANDARD.encode("hunter2");
        let text = format!("pw=hunter2 b64={b64} end");
        assert_eq!(masker.mask(text.as_bytes()), b"pw=*** b64=*** end");
    }

    #[test]
    fn masks_across_chunk_boundaries() {
        let cases: &[(&[&str], &[&str], &str)] = &[
            (&["s3cr3t"], &["value: s3c", "r3t\n"], "value: ***\n"),
            (&["s3cr3t"], &["s", "3", "c", "r", "3", "t"], "***"),
            (&["s3cr3t"], &["s3cr", "3t", "s3", "cr3t"], "******"),
            (&["abc"], &["xxab", "yab", "c"], "xxaby***"),
            (&["abc"], &["xxab"], "xxab"),
            (&["abc", "abcdef"], &["abcd", "ef"], "***"),
            (&["abc", "abcdef"], &["abcd", "xy"], "***dxy"),
            (&["abc", "bcdz"], &["abcd", "x"], "***dx"),
            (&["token-1"], &["plain output\n"], "plain output\n"),
            (&[], &["nothing", " to hide"], "nothing to hide"),
        ];
        for (secrets, chunks, want) in cases {
            assert_eq!(
                stream_through(secrets, chunks),
                *want,
                "{secrets:?} {chunks:?}"
            );
        }
    }

    #[test]
    fn masks_base64_split_across_chunks() {
        let b64 = STANDARD.encode("correct horse battery");
        let (a, b) = b64.split_at(10);
        assert_eq!(
            stream_through(&["correct horse battery"], &["x=", a, b, "\n"]),
            "x=***\n"
        );
    }

    #[test]
    fn releases_ordinary_output_at_once() {
        let mut stream = MaskingStream::new(Masker::new(["zzz-secret"]));
        assert_eq!(stream.push(b"building...\n"), b"building...\n");
        // A tail that could start a secret is held back until it is decided.
        assert_eq!(stream.push(b"zz"), b"");
        assert_eq!(stream.push(b"top\n"), b"zztop\n");
    }

    #[test]
    fn empty_secrets_are_ignored() {
        let masker = Masker::new([""]);
        assert!(masker.is_empty());
        assert_eq!(masker.mask(b"abc"), b"abc");
    }
}
