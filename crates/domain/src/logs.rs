//! A task's log as users read it: the steps' chunks in order, with a header
//! line whenever the output moves on to another step. Pure, so that the
//! whole log and the live stream compose alike and it can be fuzzed.

/// Turns chunks into text with step headers.
#[derive(Debug)]
pub struct Composer {
    /// Step names by position, for the headers.
    names: Vec<String>,
    /// The position of the step whose output came last.
    current: Option<i32>,
    /// Whether the output so far ends a line, so a header needs no newline first.
    at_line_start: bool,
}

impl Composer {
    pub fn new(names: Vec<String>) -> Self {
        Self {
            names,
            current: None,
            at_line_start: true,
        }
    }

    /// Appends the chunk `data` of the step at `position` to `out`, after a
    /// header when the step changed. Empty chunks change nothing.
    pub fn push(&mut self, position: i32, data: &[u8], out: &mut Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if self.current != Some(position) {
            if !self.at_line_start {
                out.push(b'\n');
            }
            let name = usize::try_from(position)
                .ok()
                .and_then(|i| self.names.get(i))
                .map_or("?", String::as_str);
            out.extend_from_slice(format!("==> {name}\n").as_bytes());
            self.current = Some(position);
        }
        out.extend_from_slice(data);
        self.at_line_start = data.ends_with(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compose(names: &[&str], chunks: &[(i32, &[u8])]) -> Vec<u8> {
        let mut c = Composer::new(names.iter().map(|n| (*n).to_owned()).collect());
        let mut out = Vec::new();
        for (position, data) in chunks {
            c.push(*position, data, &mut out);
        }
        out
    }

    #[test]
    fn headers_mark_each_step() {
        let out = compose(
            &["clone", "build"],
            &[
                (0, b"cloning\n"),
                (1, b"compiling"),
                (1, b" done"),
                (0, b"late\n"),
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "==> clone\ncloning\n==> build\ncompiling done\n==> clone\nlate\n"
        );
    }

    #[test]
    fn unknown_positions_and_empty_chunks() {
        let out = compose(&["clone"], &[(-1, b"a"), (0, b""), (7, b"b\n")]);
        assert_eq!(String::from_utf8_lossy(&out), "==> ?\na\n==> ?\nb\n");
    }
}
