//! Log text with ANSI colour codes to HTML for the dashboard. Logs arrive in
//! chunks that may split an escape sequence, so the parser (vte, the one
//! terminal emulators use) and the current style live across chunks; each
//! rendered chunk is well-formed HTML on its own.

use std::fmt::Write;

use vte::{Params, Parser, Perform};

/// The text attributes an SGR sequence sets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Style {
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    fg: Option<Colour>,
    bg: Option<Colour>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    /// One of the 16 named colours (0-7 normal, 8-15 bright): a CSS class,
    /// so the palette follows the page's theme.
    Named(u8),
    Rgb(u8, u8, u8),
}

impl Style {
    fn is_plain(&self) -> bool {
        *self == Self::default()
    }

    fn open_tag(&self, out: &mut String) {
        let mut classes = Vec::new();
        let mut css = String::new();
        if self.bold {
            classes.push("b".to_owned());
        }
        if self.dim {
            classes.push("d".to_owned());
        }
        if self.italic {
            classes.push("i".to_owned());
        }
        if self.underline {
            classes.push("u".to_owned());
        }
        match self.fg {
            Some(Colour::Named(n)) => classes.push(format!("f{n}")),
            Some(Colour::Rgb(r, g, b)) => {
                let _ = write!(css, "color:#{r:02x}{g:02x}{b:02x};");
            }
            None => {}
        }
        match self.bg {
            Some(Colour::Named(n)) => classes.push(format!("g{n}")),
            Some(Colour::Rgb(r, g, b)) => {
                let _ = write!(css, "background:#{r:02x}{g:02x}{b:02x};");
            }
            None => {}
        }
        out.push_str("<span");
        if !classes.is_empty() {
            let _ = write!(out, " class=\"{}\"", classes.join(" "));
        }
        if !css.is_empty() {
            let _ = write!(out, " style=\"{css}\"");
        }
        out.push('>');
    }

    /// Applies one SGR sequence's parameters.
    fn apply(&mut self, params: &Params) {
        let mut it = params.iter().map(|p| p.first().copied().unwrap_or(0));
        let mut any = false;
        while let Some(code) = it.next() {
            any = true;
            match code {
                0 => *self = Self::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => {
                    self.bold = false;
                    self.dim = false;
                }
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.fg = Some(Colour::Named((code - 30) as u8)),
                90..=97 => self.fg = Some(Colour::Named((code - 90 + 8) as u8)),
                40..=47 => self.bg = Some(Colour::Named((code - 40) as u8)),
                100..=107 => self.bg = Some(Colour::Named((code - 100 + 8) as u8)),
                39 => self.fg = None,
                49 => self.bg = None,
                38 | 48 => {
                    let colour = extended(&mut it);
                    if code == 38 {
                        self.fg = colour;
                    } else {
                        self.bg = colour;
                    }
                }
                _ => {}
            }
        }
        // `ESC[m` is a reset.
        if !any {
            *self = Self::default();
        }
    }
}

/// The colour of `38;5;n` or `38;2;r;g;b` (after the 38 or 48).
fn extended(it: &mut impl Iterator<Item = u16>) -> Option<Colour> {
    let byte = |v: Option<u16>| v.map(|v| v.min(255) as u8);
    match it.next()? {
        5 => {
            let n = byte(it.next())?;
            Some(match n {
                0..=15 => Colour::Named(n),
                16..=231 => {
                    let n = n - 16;
                    let level = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
                    Colour::Rgb(level(n / 36), level((n / 6) % 6), level(n % 6))
                }
                _ => {
                    let grey = 8 + (n - 232) * 10;
                    Colour::Rgb(grey, grey, grey)
                }
            })
        }
        2 => Some(Colour::Rgb(
            byte(it.next())?,
            byte(it.next())?,
            byte(it.next())?,
        )),
        _ => None,
    }
}

/// What the parser calls back into: text goes out escaped, inside a span
/// for the style it was written in.
#[derive(Default)]
struct Sink {
    style: Style,
    /// Whether a span for `style` is open in `out`.
    open: bool,
    out: String,
}

impl Sink {
    fn put(&mut self, c: char) {
        if !self.open && !self.style.is_plain() {
            self.style.open_tag(&mut self.out);
            self.open = true;
        }
        match c {
            '<' => self.out.push_str("&lt;"),
            '>' => self.out.push_str("&gt;"),
            '&' => self.out.push_str("&amp;"),
            '"' => self.out.push_str("&quot;"),
            '\'' => self.out.push_str("&#39;"),
            c => self.out.push(c),
        }
    }

    fn close(&mut self) {
        if self.open {
            self.out.push_str("</span>");
            self.open = false;
        }
    }
}

impl Perform for Sink {
    fn print(&mut self, c: char) {
        self.put(c);
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\n' => self.put('\n'),
            b'\t' => self.put('\t'),
            _ => {}
        }
    }

    fn csi_dispatch(&mut self, params: &Params, _: &[u8], ignore: bool, action: char) {
        if action == 'm' && !ignore {
            let before = self.style.clone();
            self.style.apply(params);
            if self.style != before {
                self.close();
            }
        }
    }
}

/// Renders one task's log, chunk by chunk.
#[derive(Default)]
pub struct Renderer {
    parser: Parser,
    sink: Sink,
}

impl Renderer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The HTML of the next chunk of log bytes; any span it opens is closed
    /// at its end, and the style carries over to the next chunk.
    pub fn render(&mut self, bytes: &[u8]) -> String {
        self.parser.advance(&mut self.sink, bytes);
        self.sink.close();
        std::mem::take(&mut self.sink.out)
    }
}

/// The whole of a log as HTML.
pub fn to_html(text: &str) -> String {
    Renderer::new().render(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_escaped() {
        assert_eq!(
            to_html("a <b> & \"c\"\n"),
            "a &lt;b&gt; &amp; &quot;c&quot;\n"
        );
    }

    #[test]
    fn colours_become_spans() {
        assert_eq!(
            to_html("\x1b[31mred\x1b[0m plain \x1b[1;92mok\x1b[m"),
            "<span class=\"f1\">red</span> plain <span class=\"b f10\">ok</span>"
        );
        assert_eq!(
            to_html("\x1b[38;2;255;0;16mx\x1b[48;5;196my"),
            "<span style=\"color:#ff0010;\">x</span>\
             <span style=\"color:#ff0010;background:#ff0000;\">y</span>"
        );
    }

    #[test]
    fn a_sequence_split_across_chunks_still_applies() {
        let mut r = Renderer::new();
        assert_eq!(r.render(b"a\x1b[3"), "a");
        assert_eq!(r.render(b"2mgreen"), "<span class=\"f2\">green</span>");
        assert_eq!(
            r.render(b" still\x1b[0m"),
            "<span class=\"f2\"> still</span>"
        );
        assert_eq!(r.render(b"done"), "done");
    }

    #[test]
    fn other_escape_sequences_are_dropped() {
        assert_eq!(to_html("\x1b[2K\x1b[1Gline\r\n"), "line\n");
    }

    #[test]
    fn utf8_split_across_chunks_is_kept() {
        let mut r = Renderer::new();
        let text = "日本".as_bytes();
        let first = r.render(&text[..2]);
        let second = r.render(&text[2..]);
        assert_eq!(format!("{first}{second}"), "日本");
    }
}
