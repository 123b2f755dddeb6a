//! `.dockerignore`: which files of a build context go to the engine, by
//! Docker's own rules (how its CLI reads the file, matches the patterns and
//! walks the context), with the matching itself done by `globset`.
//!
//! The rules, which are not `.gitignore`'s: a pattern is anchored at the
//! root of the context (`*.md` is only the root's), `*` and `?` stay within
//! one path segment, `**` spans any number of segments, a pattern that
//! matches a directory matches everything below it, `!` makes an exception,
//! and the last pattern that matches a path decides. Docker turns each
//! pattern into a regular expression, or into a plain comparison (equal,
//! prefix, suffix) when its only wildcard is a leading or trailing `**`;
//! each of those becomes one or more globs here that mean the same.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The file the patterns are read from, at the root of the context.
pub const FILE: &str = ".dockerignore";

/// A pattern Docker would refuse, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: {reason}: {pattern:?}")]
pub struct IgnoreError {
    /// 1-based, counting comments and blank lines, as an editor shows it.
    pub line: usize,
    /// The line as written, trimmed.
    pub pattern: String,
    pub reason: String,
}

/// The patterns of a `.dockerignore`, ready to match the paths of a walk.
#[derive(Debug, Clone)]
pub struct Ignore {
    patterns: Vec<Pattern>,
    /// Every glob of every pattern; `owner[i]` is the pattern of glob `i`.
    set: GlobSet,
    owner: Vec<usize>,
    /// Paths sent whatever the patterns say (the Dockerfile and the
    /// `.dockerignore` itself: the engine needs them), cleaned.
    kept: Vec<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned, without the `!`: Docker decides which excluded directories
    /// to enter by comparing it as text.
    text: String,
    /// A `!` pattern: it re-includes what it matches.
    exception: bool,
    /// Only ASCII: then it is matched against a path whose other characters
    /// are squashed to one byte each, so that `?` and `[^a]` take one
    /// character as Docker's regular expressions do, not one byte as globset.
    ascii: bool,
}

/// Which patterns a directory matched; what its entries are matched with
/// (Docker's `MatchInfo`). Empty: nothing is known of the parents.
pub type Matched = Vec<bool>;

/// Globs one pattern may expand to; beyond, the pattern is refused.
const MAX_GLOBS: usize = 64;

impl Ignore {
    /// Nothing ignored: a context without `.dockerignore`.
    pub fn none() -> Ignore {
        Ignore {
            patterns: Vec::new(),
            set: GlobSet::empty(),
            owner: Vec::new(),
            kept: Vec::new(),
        }
    }

    /// Reads the content of a `.dockerignore` as Docker does: a UTF-8 BOM
    /// dropped, lines starting with `#` skipped, whitespace around a line
    /// and around what follows `!` trimmed, blank lines skipped, each
    /// pattern cleaned as a path (`./a//b/` is `a/b`) and a leading `/`
    /// dropped. A pattern Docker refuses is an error naming its line.
    pub fn parse(content: &[u8]) -> Result<Ignore, IgnoreError> {
        let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
        let mut patterns = Vec::new();
        let mut set = GlobSetBuilder::new();
        let mut owner = Vec::new();
        for (index, raw) in content.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let error = |reason: &str| IgnoreError {
                line,
                pattern: String::from_utf8_lossy(raw).trim().to_owned(),
                reason: reason.to_owned(),
            };
            // A comment only when `#` is the very first character.
            if raw.starts_with(b"#") {
                continue;
            }
            let Ok(text) = std::str::from_utf8(raw) else {
                return Err(error("not UTF-8"));
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let (exception, text) = match text.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, text),
            };
            let alone = || error("\"!\" alone excepts nothing");
            if exception && text.is_empty() {
                return Err(alone());
            }
            let mut text = clean(text);
            // Docker cleans `!/` to `!` too.
            if exception && text == "/" {
                return Err(alone());
            }
            if text.len() > 1 && text.starts_with('/') {
                text.remove(0);
            }
            let globs = globs(&text).map_err(|reason| error(&reason))?;
            for glob in globs {
                set.add(glob);
                owner.push(patterns.len());
            }
            patterns.push(Pattern {
                ascii: text.is_ascii(),
                text,
                exception,
            });
        }
        let set = set.build().map_err(|e| IgnoreError {
            line: 0,
            pattern: String::new(),
            reason: e.to_string(),
        })?;
        Ok(Ignore {
            patterns,
            set,
            owner,
            kept: Vec::new(),
        })
    }

    /// Sends `path` (relative to the context) whatever the patterns say, as
    /// Docker does with the Dockerfile and the `.dockerignore`.
    pub fn keep(&mut self, path: &str) {
        let path = clean(path).into_bytes();
        if !self.kept.contains(&path) {
            self.kept.push(path);
        }
    }

    /// Whether `path` (relative to the context, `/`-separated, clean) is
    /// left out, given what its directory matched (empty for an entry of
    /// the root); with what `path` matched, for its own entries.
    ///
    /// Docker's `MatchesUsingParentResults`: the patterns in order, a
    /// pattern the parent matched matches too, and a pattern that could not
    /// change the outcome so far (an exception while nothing is excluded,
    /// an exclusion while it is) is not tried.
    pub fn excludes(&self, path: &[u8], parent: &[bool]) -> (bool, Matched) {
        let hits = self.hits(path);
        let mut matched = vec![false; self.patterns.len()];
        let mut excluded = false;
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = parent.get(i).copied().unwrap_or(false);
            if !hit {
                if pattern.exception != excluded {
                    continue;
                }
                hit =
                    hits[i] || (parent.is_empty() && ancestors(path).any(|dir| self.hits(dir)[i]));
            }
            matched[i] = hit;
            if hit {
                excluded = !pattern.exception;
            }
        }
        if excluded && self.kept.iter().any(|k| k.as_slice() == path) {
            excluded = false;
        }
        (excluded, matched)
    }

    /// Whether an excluded directory is still walked, because something in
    /// it may be sent: as Docker decides, when an exception's text starts
    /// with the directory's path (`!dir/keep` for `dir`), or a kept path
    /// lies below it.
    pub fn enters(&self, dir: &[u8]) -> bool {
        let starts = |text: &[u8]| {
            text.len() > dir.len() && text.starts_with(dir) && text[dir.len()] == b'/'
        };
        self.patterns
            .iter()
            .any(|p| p.exception && (starts(p.text.as_bytes()) || p.text.as_bytes() == dir))
            || self.kept.iter().any(|k| starts(k))
    }

    /// Which patterns match `path` itself (not through a parent).
    fn hits(&self, path: &[u8]) -> Vec<bool> {
        let mut hits = vec![false; self.patterns.len()];
        if self.patterns.is_empty() {
            return hits;
        }
        let ascii_path = path.is_ascii();
        for g in self.set.matches(Path::new(OsStr::from_bytes(path))) {
            let p = self.owner[g];
            if ascii_path || !self.patterns[p].ascii {
                hits[p] = true;
            }
        }
        if !ascii_path {
            let squashed = squash(path);
            for g in self.set.matches(Path::new(OsStr::from_bytes(&squashed))) {
                let p = self.owner[g];
                if self.patterns[p].ascii {
                    hits[p] = true;
                }
            }
        }
        hits
    }
}

/// `a`, `a/b`, ... for `a/b/c`: the directories above a path.
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(move |(i, _)| &path[..i])
}

/// Every character outside ASCII (and every byte that is not UTF-8) as one
/// byte 0x80, which no ASCII pattern names but `?`, `*` and `[^a]` match.
fn squash(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        out.extend(
            chunk
                .valid()
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { 0x80 }),
        );
        out.extend(std::iter::repeat_n(0x80, chunk.invalid().len()));
    }
    out
}

/// Go's `filepath.Clean`: the shortest path that names the same thing,
/// lexically (`.` and empty segments dropped, `x/..` folded).
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// How Docker compares a pattern with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No wildcard: the path is the pattern.
    Exact,
    /// `literal**`: the path starts with the literal.
    Prefix,
    /// `**literal`: the path ends with the literal (or, for `**/x`, is `x`).
    Suffix,
    /// Anything else, through a regular expression.
    Regexp,
}

/// A piece of a pattern, as Docker's regular expression reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(char),
    /// `*`: any characters but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `[...]`, already in globset's syntax.
    Class(String),
    /// `**` before more of the pattern (a `/` after it is part of it):
    /// nothing, or anything that ends with `/`.
    AnyDirs,
    /// `**` at the end, after some other wildcard: anything.
    Rest,
}

/// The globs that together match what Docker's reading of `pattern`
/// (clean, without `!`) matches.
fn globs(pattern: &str) -> Result<Vec<Glob>, String> {
    let (kind, pieces) = read(pattern)?;
    let build = |text: &str, literal_separator: bool| {
        GlobBuilder::new(text)
            .literal_separator(literal_separator)
            .backslash_escape(true)
            .build()
            .map_err(|e| e.kind().to_string())
    };
    match kind {
        Kind::Exact => Ok(vec![build(&escape(pattern), true)?]),
        // `*` may cross `/` here: Docker compares the text.
        Kind::Prefix => {
            let prefix = &pattern[..pattern.len() - 2];
            Ok(vec![build(&format!("{}*", escape(prefix)), false)?])
        }
        Kind::Suffix => {
            let suffix = &pattern[2..];
            let mut globs = vec![build(&format!("*{}", escape(suffix)), false)?];
            if let Some(rest) = suffix.strip_prefix('/') {
                globs.push(build(&escape(rest), true)?);
            }
            Ok(globs)
        }
        Kind::Regexp => expand(&pieces)?
            .iter()
            .map(|text| build(text, true))
            .collect(),
    }
}

/// Docker's scan of a pattern: its kind and its pieces. The syntax is Go's
/// `filepath.Match` (which Docker checks every pattern with) plus `**`.
fn read(pattern: &str) -> Result<(Kind, Vec<Piece>), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut kind = Kind::Exact;
    let mut pieces = Vec::new();
    let mut at = 0;
    let mut first = true;
    while at < chars.len() {
        let ch = chars[at];
        at += 1;
        match ch {
            '*' if chars.get(at) == Some(&'*') => {
                at += 1;
                if chars.get(at) == Some(&'/') {
                    at += 1;
                }
                if at == chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        pieces.push(Piece::Rest);
                        kind = Kind::Regexp;
                    }
                } else {
                    pieces.push(Piece::AnyDirs);
                    kind = Kind::Regexp;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                pieces.push(Piece::Star);
                kind = Kind::Regexp;
            }
            '?' => {
                pieces.push(Piece::One);
                kind = Kind::Regexp;
            }
            '\\' => {
                let Some(&next) = chars.get(at) else {
                    return Err("a trailing \\ escapes nothing".to_owned());
                };
                at += 1;
                pieces.push(Piece::Literal(next));
                kind = Kind::Regexp;
            }
            '[' => {
                let (class, used) = class(&chars[at..])?;
                at += used;
                pieces.push(Piece::Class(class));
                kind = Kind::Regexp;
            }
            ']' => {
                pieces.push(Piece::Literal(']'));
                kind = Kind::Regexp;
            }
            c => pieces.push(Piece::Literal(c)),
        }
        first = false;
    }
    Ok((kind, pieces))
}

/// A character class after its `[`, in Go's syntax (`[^...]` negates, `\`
/// escapes, `a-z` ranges; `-` or `]` where a character is due is an error);
/// as globset writes it, and how many characters it took.
fn class(chars: &[char]) -> Result<(String, usize), String> {
    let unclosed = || "an unclosed [".to_owned();
    let mut at = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        at += 1;
    }
    // One character of the class, as Go's getEsc reads it.
    let char_at = |at: &mut usize| -> Result<char, String> {
        let mut c = *chars.get(*at).ok_or_else(unclosed)?;
        if c == '-' || c == ']' {
            return Err(format!("{c:?} where a character of a class is due"));
        }
        if c == '\\' {
            *at += 1;
            c = *chars.get(*at).ok_or_else(unclosed)?;
        }
        *at += 1;
        if *at >= chars.len() {
            return Err(unclosed());
        }
        Ok(c)
    };
    let mut ranges: Vec<(char, char)> = Vec::new();
    loop {
        if chars.get(at) == Some(&']') && !ranges.is_empty() {
            at += 1;
            break;
        }
        let lo = char_at(&mut at)?;
        let mut hi = lo;
        if chars.get(at) == Some(&'-') {
            at += 1;
            hi = char_at(&mut at)?;
        }
        if lo > hi {
            return Err(format!("the range {lo}-{hi} of a class runs backwards"));
        }
        if !lo.is_ascii() || !hi.is_ascii() {
            return Err("a character class may hold only ASCII characters".to_owned());
        }
        ranges.push((lo, hi));
    }
    Ok((glob_class(negated, &ranges), at))
}

/// A class in globset's syntax, which has no escapes inside `[...]`: a `]`
/// must come first, a `-` last, and `!` or `^` not first (they would negate).
fn glob_class(negated: bool, ranges: &[(char, char)]) -> String {
    const SPECIAL: [char; 4] = [']', '-', '!', '^'];
    let mut specials: Vec<char> = Vec::new();
    let mut plain: Vec<(char, char)> = Vec::new();
    for &(lo, hi) in ranges {
        // Split the range around the special characters it holds.
        let mut start = lo;
        let mut c = lo;
        loop {
            if SPECIAL.contains(&c) {
                if start < c {
                    plain.push((start, prev(c)));
                }
                if !specials.contains(&c) {
                    specials.push(c);
                }
                start = next(c);
            }
            if c == hi {
                break;
            }
            c = next(c);
        }
        if start <= hi && !SPECIAL.contains(&start) {
            plain.push((start, hi));
        }
    }
    let has = |c: char| specials.contains(&c);
    let mut out = String::from("[");
    if negated {
        out.push('!');
    }
    if has(']') {
        out.push(']');
    }
    let leading_dash = !negated && !has(']') && plain.is_empty() && has('-');
    if leading_dash {
        out.push('-');
    }
    for (lo, hi) in &plain {
        out.push(*lo);
        if lo != hi {
            out.push('-');
            out.push(*hi);
        }
    }
    let mut tail: Vec<char> = ['!', '^'].into_iter().filter(|&c| has(c)).collect();
    let opens = !negated && !has(']') && plain.is_empty() && !leading_dash;
    if opens {
        // Only `!` and/or `^`: a class cannot start with them, a literal can.
        return match tail.as_slice() {
            [one] => escape(&one.to_string()),
            _ => "{\\!,^}".to_owned(),
        };
    }
    out.extend(tail.drain(..));
    if has('-') && !leading_dash {
        out.push('-');
    }
    out.push(']');
    out
}

fn next(c: char) -> char {
    char::from_u32(c as u32 + 1).unwrap_or(c)
}

fn prev(c: char) -> char {
    char::from_u32(c as u32 - 1).unwrap_or(c)
}

/// The pieces of a regular-expression pattern as globs. `**` is whole
/// segments in globset; Docker's can also be glued to other characters
/// (`a**b`, which matches `ab` and `a…/b`): such a `**` becomes two globs.
fn expand(pieces: &[Piece]) -> Result<Vec<String>, String> {
    let mut globs = vec![String::new()];
    // Whether what was written last ends at a segment boundary.
    let mut boundary = true;
    for piece in pieces {
        let (alone, glued): (&str, Option<[&str; 2]>) = match piece {
            Piece::Literal(c) => {
                let text = escape(&c.to_string());
                globs.iter_mut().for_each(|g| g.push_str(&text));
                boundary = *c == '/';
                continue;
            }
            Piece::Star => ("*", None),
            Piece::One => ("?", None),
            Piece::Class(class) => (class.as_str(), None),
            Piece::AnyDirs if boundary => ("**/", None),
            Piece::AnyDirs => ("", Some(["", "*/**/"])),
            Piece::Rest if boundary => ("**", None),
            Piece::Rest => ("", Some(["*", "*/**"])),
        };
        match glued {
            None => globs.iter_mut().for_each(|g| g.push_str(alone)),
            Some(ways) => {
                if globs.len() * 2 > MAX_GLOBS {
                    return Err("too many ** inside path segments".to_owned());
                }
                globs = globs
                    .iter()
                    .flat_map(|g| ways.iter().map(move |w| format!("{g}{w}")))
                    .collect();
            }
        }
        boundary = matches!(piece, Piece::AnyDirs);
    }
    Ok(globs)
}

/// `text` as literal characters of a glob.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
