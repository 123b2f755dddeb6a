//! Runner labels: what a workflow's `runs_on` asks of a runner and what a
//! runner's `SLIPWAY_RUNNER_LABELS` offers. A task runs only on a runner that
//! has every label of its workflow.
//!
//! A label set has one canonical text form, its labels sorted and joined by
//! `+` (`gpu+linux`, empty for no labels): tasks store it, and the task queue
//! of a set is named after it, so a runner can consume the queue of every
//! subset of its labels and never receive a task it cannot run.

use std::collections::BTreeSet;
use std::fmt;

/// Most labels a workflow may ask for or a runner may have: a runner consumes
/// one queue per subset of its labels, 2^6 = 64 at most.
pub const MAX_LABELS: usize = 6;

/// Longest label.
pub const MAX_LABEL_LEN: usize = 32;

/// What starts the label a runner's host gives it ([`host_label`]): no
/// configured label may start so.
pub const HOST_PREFIX: &str = "host.";

/// Why a label or a set of them was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("invalid label {0:?}: use 1 to 32 characters a-z, 0-9, ., _ and -")]
    Invalid(String),
    #[error("too many labels ({0}): at most 6")]
    TooMany(usize),
    #[error(
        "invalid label {0:?}: labels starting with \"host.\" name a runner's host and are given by SLIPWAY_RUNNER_HOST"
    )]
    Reserved(String),
}

/// The label every runner of `host` (`SLIPWAY_RUNNER_HOST`) has besides its
/// own: what pins the tasks of a routed environment to the host whose proxy
/// serves it. Lowercase, other characters than `[a-z0-9._-]` as `-`, and a
/// long name cut with a hash of the whole, so it stays a valid label.
pub fn host_label(host: &str) -> String {
    let clean: String = host
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let room = MAX_LABEL_LEN - HOST_PREFIX.len();
    if !clean.is_empty() && clean.len() <= room {
        return format!("{HOST_PREFIX}{clean}");
    }
    // FNV-1a: stable across builds and machines.
    let hash = host.trim().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let cut: String = clean.chars().take(room - 9).collect();
    format!("{HOST_PREFIX}{cut}-{hash:08x}")
}

/// A set of valid labels, kept sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(BTreeSet<String>);

impl Labels {
    /// The empty set: any runner qualifies.
    pub fn none() -> Self {
        Self::default()
    }

    /// A set from single labels; a label given twice counts once.
    pub fn new<I, S>(labels: I) -> Result<Self, LabelError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set = Self::offered(labels)?;
        if let Some(host) = set.0.iter().find(|l| l.starts_with(HOST_PREFIX)) {
            return Err(LabelError::Reserved(host.clone()));
        }
        Ok(set)
    }

    /// The labels a runner offers: valid ones, at most [`MAX_LABELS`] of
    /// them besides one host label.
    pub fn offered<I, S>(labels: I) -> Result<Self, LabelError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = BTreeSet::new();
        for label in labels {
            let label = label.as_ref();
            if !is_label(label) {
                return Err(LabelError::Invalid(label.to_owned()));
            }
            set.insert(label.to_owned());
        }
        let hosts = set.iter().filter(|l| l.starts_with(HOST_PREFIX)).count();
        if hosts > 1 {
            let second = set.iter().filter(|l| l.starts_with(HOST_PREFIX)).nth(1);
            return Err(LabelError::Reserved(second.cloned().unwrap_or_default()));
        }
        if set.len() - hosts > MAX_LABELS {
            return Err(LabelError::TooMany(set.len() - hosts));
        }
        Ok(Self(set))
    }

    /// These labels and the one of `host` ([`host_label`]), in place of any
    /// host label they had.
    pub fn with_host(&self, host: &str) -> Labels {
        let mut set: BTreeSet<String> = self
            .0
            .iter()
            .filter(|l| !l.starts_with(HOST_PREFIX))
            .cloned()
            .collect();
        set.insert(host_label(host));
        Labels(set)
    }

    /// A setting's form: labels separated by commas, spaces around them and
    /// empty items ignored (`linux, gpu`).
    pub fn parse_list(s: &str) -> Result<Self, LabelError> {
        Self::new(s.split(',').map(str::trim).filter(|l| !l.is_empty()))
    }

    /// The canonical form back: labels joined by `+`, as [`Labels::key`]
    /// writes them.
    pub fn from_key(key: &str) -> Result<Self, LabelError> {
        Self::offered(key.split('+').filter(|l| !l.is_empty()))
    }

    /// The canonical form: sorted, joined by `+`; empty for no labels.
    pub fn key(&self) -> String {
        self.0
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("+")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The labels of `self` that `offered` lacks: empty when a runner with
    /// `offered` may run a task needing `self`.
    pub fn missing_from(&self, offered: &Labels) -> Vec<&str> {
        self.iter().filter(|l| !offered.0.contains(*l)).collect()
    }

    /// Every subset, the empty one and the set itself included: the label
    /// sets of the tasks a runner with these labels may run.
    pub fn subsets(&self) -> Vec<Labels> {
        let labels: Vec<&String> = self.0.iter().collect();
        (0u32..(1 << labels.len()))
            .map(|mask| {
                Labels(
                    labels
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, l)| (*l).clone())
                        .collect(),
                )
            })
            .collect()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        f.write_str(&self.iter().collect::<Vec<_>>().join(", "))
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL_LEN
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_round_trip() {
        let labels = Labels::new(["linux", "gpu", "linux"]).unwrap();
        assert_eq!(labels.key(), "gpu+linux");
        assert_eq!(Labels::from_key("gpu+linux").unwrap(), labels);
        assert_eq!(Labels::none().key(), "");
        assert_eq!(Labels::from_key("").unwrap(), Labels::none());
    }

    #[test]
    fn settings_lists_tolerate_spaces_and_empty_items() {
        let labels = Labels::parse_list(" linux , gpu,,").unwrap();
        assert_eq!(labels.key(), "gpu+linux");
        assert_eq!(Labels::parse_list("").unwrap(), Labels::none());
    }

    #[test]
    fn bad_labels_are_named() {
        assert_eq!(
            Labels::parse_list("linux,GPU"),
            Err(LabelError::Invalid("GPU".into()))
        );
        assert!(matches!(Labels::new(["a+b"]), Err(LabelError::Invalid(_))));
        assert!(Labels::new(["x".repeat(33)]).is_err());
        assert_eq!(
            Labels::new(["a", "b", "c", "d", "e", "f", "g"]),
            Err(LabelError::TooMany(7))
        );
    }

    #[test]
    fn subsets_cover_every_combination() {
        let labels = Labels::new(["a", "b", "c"]).unwrap();
        let keys: BTreeSet<String> = labels.subsets().iter().map(Labels::key).collect();
        let expected = ["", "a", "b", "c", "a+b", "a+c", "b+c", "a+b+c"];
        assert_eq!(keys, expected.iter().map(|s| s.to_string()).collect());
        assert_eq!(Labels::none().subsets(), vec![Labels::none()]);
    }

    #[test]
    fn a_host_gives_one_label_of_its_own() {
        assert_eq!(host_label("vps-1.Example.com"), "host.vps-1.example.com");
        assert_eq!(host_label("büro pc"), "host.b-ro-pc");
        let long = host_label("a-very-long-host-name.in.a.data-centre.example");
        assert_eq!(long.len(), MAX_LABEL_LEN, "{long}");
        assert!(long.starts_with("host.a-very-long-host-n"), "{long}");
        assert_ne!(long, host_label("a-very-long-host-name.in.another.example"));
        assert!(is_label(&long));

        // Configured labels may not claim a host; six of them and the
        // host's fit, and the canonical form reads back.
        assert_eq!(
            Labels::parse_list("linux,host.x"),
            Err(LabelError::Reserved("host.x".into()))
        );
        let six = Labels::new(["a", "b", "c", "d", "e", "f"]).unwrap();
        let pinned = six.with_host("vps1");
        assert_eq!(pinned.len(), 7);
        assert_eq!(Labels::from_key(&pinned.key()).unwrap(), pinned);
        assert_eq!(pinned.with_host("vps2").key(), "a+b+c+d+e+f+host.vps2");
        assert!(Labels::from_key("host.a+host.b").is_err());
    }

    #[test]
    fn missing_labels_are_listed() {
        let needed = Labels::new(["gpu", "linux"]).unwrap();
        let offered = Labels::new(["linux", "arm"]).unwrap();
        assert_eq!(needed.missing_from(&offered), vec!["gpu"]);
        assert!(Labels::none().missing_from(&offered).is_empty());
    }
}
