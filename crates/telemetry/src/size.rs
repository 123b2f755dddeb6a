//! Sizes in settings: `256MiB`, `10 GiB`, `1048576`.

/// A size: a number of bytes, alone or with `B`, `KiB`, `MiB`, `GiB` or
/// `TiB` after it (a space between is fine).
pub fn parse_bytes(text: &str) -> Result<u64, &'static str> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err("not a size");
    }
    let shift = match unit.trim_start() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return Err("unknown unit"),
    };
    let number: u64 = number.parse().map_err(|_| "too large")?;
    number.checked_mul(1u64 << shift).ok_or("too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_bytes_and_binary_units() {
        let cases = [
            ("10GiB", Ok(10 << 30)),
            ("0", Ok(0)),
            ("1048576", Ok(1 << 20)),
            ("512 B", Ok(512)),
            (" 3 MiB ", Ok(3 << 20)),
            ("1KiB", Ok(1024)),
            ("2TiB", Ok(2 << 40)),
            ("", Err("not a size")),
            ("GiB", Err("not a size")),
            ("-1", Err("not a size")),
            ("10GB", Err("unknown unit")),
            ("1.5GiB", Err("unknown unit")),
            ("ten", Err("not a size")),
            ("99999999999999999999", Err("too large")),
            ("17179869184GiB", Err("too large")),
        ];
        for (text, want) in cases {
            assert_eq!(parse_bytes(text), want, "{text:?}");
        }
    }
}
