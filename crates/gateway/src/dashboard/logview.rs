//! A task's log as the task page lays it out: one section per step, each
//! line numbered with an anchor (`#build-L12`) and stamped with the time its
//! chunk was stored. Chunks arrive as the runner shipped them and may end
//! inside a line; such a line stays open, and the next chunk of its step
//! continues it. Pure, so it can be tested without a stream.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::ansi;

/// Positions past this are no step of a task (the plan has far fewer).
const MAX_STEPS: usize = 1_000;

/// What one chunk adds to its step's section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Addition {
    /// The step's position: which section.
    pub step: i32,
    /// HTML that continues the section's last line (open before this chunk).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cont: String,
    /// HTML of the new lines.
    pub html: String,
}

/// One step's part of the log so far.
#[derive(Default)]
struct StepLog {
    /// Colours carry over from chunk to chunk within a step.
    renderer: ansi::Renderer,
    /// Lines started so far.
    lines: u32,
    /// Whether the last line has not ended yet.
    open: bool,
}

/// The log of one task, chunk by chunk.
pub struct LogView {
    /// The steps' names by position: the anchors' prefixes.
    names: Vec<String>,
    steps: Vec<StepLog>,
}

/// The anchor of a step's section, linked from the steps table.
pub fn section_id(name: &str) -> String {
    format!("log-{name}")
}

impl LogView {
    pub fn new(names: Vec<String>) -> Self {
        Self {
            steps: names.iter().map(|_| StepLog::default()).collect(),
            names,
        }
    }

    /// Renders the chunk `data` of the step at `position`, stored at `at`.
    pub fn push(&mut self, position: i32, data: &[u8], at: DateTime<Utc>) -> Addition {
        let empty = Addition {
            step: position,
            cont: String::new(),
            html: String::new(),
        };
        let index = match usize::try_from(position) {
            Ok(i) if i < MAX_STEPS && !data.is_empty() => i,
            _ => return empty,
        };
        if index >= self.steps.len() {
            // A position the task does not know gets its own numbering,
            // never another step's.
            self.names.resize(index + 1, String::new());
            self.steps.resize_with(index + 1, StepLog::default);
        }
        let step = &mut self.steps[index];
        let prefix = match self.names.get(index) {
            Some(n) if !n.is_empty() => escape(n),
            _ => format!("step{position}"),
        };
        let iso = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let clock = at.format("%H:%M:%S").to_string();
        let mut out = empty;
        let mut parts = data.split(|b| *b == b'\n').peekable();
        let mut first = true;
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            // The empty piece after a final newline is no line.
            if last && part.is_empty() {
                step.open = false;
                break;
            }
            let text = step.renderer.render(part);
            if first && step.open {
                out.cont = text;
            } else {
                step.lines += 1;
                let n = step.lines;
                let _ = write!(
                    out.html,
                    "<div class=\"ln\" id=\"{prefix}-L{n}\"><a class=\"n\" href=\"#{prefix}-L{n}\">{n}</a>\
                     <time class=\"ts\" datetime=\"{iso}\">{clock}</time><span class=\"tx\">{text}</span></div>"
                );
            }
            step.open = last;
            first = false;
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:05.250Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn line(prefix: &str, n: u32, text: &str) -> String {
        format!(
            "<div class=\"ln\" id=\"{prefix}-L{n}\"><a class=\"n\" href=\"#{prefix}-L{n}\">{n}</a>\
             <time class=\"ts\" datetime=\"2026-12-01T10:00:05.250Z\">10:00:05</time><span class=\"tx\">{text}</span></div>"
        )
    }

    #[test]
    fn lines_are_numbered_per_step_and_open_lines_continue() {
        let mut log = LogView::new(vec!["clone".into(), "build".into()]);
        let a = log.push(1, b"one\ntw", at());
        assert_eq!(a.cont, "");
        assert_eq!(
            a.html,
            format!("{}{}", line("build", 1, "one"), line("build", 2, "tw"))
        );
        let b = log.push(1, b"o\nthree\n", at());
        assert_eq!(b.cont, "o");
        assert_eq!(b.html, line("build", 3, "three"));
        // Another step numbers from 1, and a bare newline is an empty line.
        let c = log.push(0, b"\n", at());
        assert_eq!(c.html, line("clone", 1, ""));
        let d = log.push(1, b"four\n", at());
        assert_eq!((d.cont.as_str(), d.html), ("", line("build", 4, "four")));
    }

    #[test]
    fn colours_and_markup_stay_inside_their_line() {
        let mut log = LogView::new(vec!["test".into()]);
        let a = log.push(0, b"\x1b[32mok <a>\nstill green\x1b[0m\n", at());
        assert_eq!(
            a.html,
            format!(
                "{}{}",
                line("test", 1, "<span class=\"f2\">ok &lt;a&gt;</span>"),
                line("test", 2, "<span class=\"f2\">still green</span>")
            )
        );
    }

    #[test]
    fn unknown_positions_get_their_own_numbering() {
        let mut log = LogView::new(vec!["clone".into()]);
        let a = log.push(3, b"late\n", at());
        assert_eq!(a.step, 3);
        assert_eq!(a.html, line("step3", 1, "late"));
        let b = log.push(-1, b"x\n", at());
        assert_eq!(b.html, "");
        assert_eq!(section_id("deploy:prod"), "log-deploy:prod");
    }
}
