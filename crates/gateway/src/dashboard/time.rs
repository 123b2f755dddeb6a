//! Times as pages show them: relative ("3 min ago") in a `<time>` element
//! whose `datetime` is the instant and whose title is the absolute time in
//! UTC. That is what a page shows without script; `static/app.js` rewrites
//! the words as time passes and the title in the viewer's time zone.
//!
//! The words change at most once a minute, so a list refreshed in place is
//! not replaced for a clock's sake every few seconds.

use chrono::{DateTime, Utc};

/// An instant, ready for a `<time>` element; empty fields when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    /// RFC 3339 in UTC: the element's `datetime`, read by the script.
    pub iso: String,
    /// `2026-12-01 18:22:05 UTC`: the title, until the script localises it.
    pub utc: String,
    /// `3 min ago`, `in 2 min`: the text.
    pub ago: String,
}

impl Stamp {
    /// The stamp of an RFC 3339 time, relative to `now`.
    pub fn at(ts: Option<&str>, now: DateTime<Utc>) -> Self {
        match parse(ts) {
            Some(t) => Self {
                iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                utc: t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                ago: relative(t, now),
            },
            None => Self::default(),
        }
    }

    /// The stamp of an RFC 3339 time, relative to the present.
    pub fn of(ts: &Option<String>) -> Self {
        Self::at(ts.as_deref(), Utc::now())
    }

    pub fn is_empty(&self) -> bool {
        self.iso.is_empty()
    }
}

pub fn parse(ts: Option<&str>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// `t` in words, seen from `now`: `just now`, `5 min ago`, `3 h ago`,
/// `2 days ago`, and `in 5 min` for what is still to come; past a month,
/// the date.
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let (ahead, secs) = (secs < 0, secs.unsigned_abs());
    let words = match secs {
        0..60 => return if ahead { "in a moment" } else { "just now" }.to_owned(),
        60..3_600 => format!("{} min", secs / 60),
        3_600..86_400 => format!("{} h", secs / 3_600),
        86_400..2_592_000 => match secs / 86_400 {
            1 => "1 day".to_owned(),
            n => format!("{n} days"),
        },
        _ => return t.format("%Y-%m-%d").to_string(),
    };
    if ahead {
        format!("in {words}")
    } else {
        format!("{words} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        parse(Some(s)).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn times_read_as_words_from_now() {
        let now = at("2026-12-01T12:00:00Z");
        let cases = [
            ("2026-12-01T11:59:30Z", "just now"),
            ("2026-12-01T11:57:00Z", "3 min ago"),
            ("2026-12-01T11:00:00Z", "1 h ago"),
            ("2026-12-01T02:30:00Z", "9 h ago"),
            ("2026-11-30T11:00:00Z", "1 day ago"),
            ("2026-11-20T12:00:00Z", "11 days ago"),
            ("2026-10-01T12:00:00Z", "2026-10-01"),
            ("2026-12-01T12:00:20Z", "in a moment"),
            ("2026-12-01T12:05:00Z", "in 5 min"),
        ];
        for (t, want) in cases {
            assert_eq!(relative(at(t), now), want, "{t}");
        }
    }

    #[test]
    fn a_stamp_falls_back_to_utc_words() {
        let now = at("2026-12-01T12:00:00Z");
        let s = Stamp::at(Some("2026-12-01T13:56:59.750+02:00"), now);
        assert_eq!(s.iso, "2026-12-01T11:56:59Z");
        assert_eq!(s.utc, "2026-12-01 11:56:59 UTC");
        assert_eq!(s.ago, "3 min ago");
        assert!(Stamp::at(None, now).is_empty());
        assert!(Stamp::at(Some("yesterday"), now).is_empty());
    }
}
