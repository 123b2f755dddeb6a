//! Printing answers: aligned tables for people, or JSON in the REST API's
//! shapes (`proto::json`) for scripts.

use std::io::Write;

use serde::Serialize;

use crate::args::Format;
use crate::error::Error;

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> Result<(), Error> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Io(format!("cannot write to stdout: {e}"))),
    }
}

/// Prints text on stdout, adding the final newline.
pub fn line(text: &str) -> Result<(), Error> {
    let mut text = text.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_bytes(&mut std::io::stdout().lock(), text.as_bytes())
}

/// Prints a value as JSON.
pub fn json(value: &impl Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Io(format!("cannot encode the answer as json: {e}")))?;
    line(&text)
}

/// JSON with `--output json`, else the table or text `human` renders.
pub fn show<T: Serialize>(
    format: Format,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> Result<(), Error> {
    match format {
        Format::Json => json(value),
        Format::Table => line(&human(value)),
    }
}

/// Columns aligned on the widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut text = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                text.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                text.push_str(&format!("{cell:<pad$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// `key  value` lines, keys aligned; pairs without a value are left out.
pub fn fields(pairs: &[(&str, Option<String>)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k:<width$}  {v}\n")))
        .collect()
}

/// An RFC 3339 time as `2024-05-01 12:00:00` (UTC); `-` when unset.
pub fn time(at: Option<&String>) -> String {
    match at {
        Some(t) if t.len() >= 19 => t[..19].replace('T', " "),
        Some(t) => t.clone(),
        None => "-".to_owned(),
    }
}

/// A value or `-`.
pub fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The first 12 hex digits of a commit.
pub fn short(commit: Option<&String>) -> String {
    commit.map_or_else(|| "-".to_owned(), |c| c.chars().take(12).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec!["1".to_owned(), "hello".to_owned(), "success".to_owned()],
            vec!["12".to_owned(), "a".to_owned(), "-".to_owned()],
        ];
        assert_eq!(
            super::table(&["ID", "NAME", "STATUS"], &rows),
            "ID  NAME   STATUS\n1   hello  success\n12  a      -\n"
        );
    }

    #[test]
    fn times_are_shortened() {
        let t = "2024-05-01T12:00:00.123Z".to_owned();
        assert_eq!(super::time(Some(&t)), "2024-05-01 12:00:00");
        assert_eq!(super::time(None), "-");
    }
}
