//! `${{ secrets.NAME }}` placeholders in notify and target values: which
//! secrets a value needs, and the value with them filled in. The parser has
//! already refused any other placeholder.

use std::collections::HashMap;

/// The secret names a value refers to, in order of appearance.
pub fn secret_refs(value: &str) -> Vec<String> {
    value
        .split("${{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}"))
        .filter_map(|(inner, _)| {
            inner
                .trim()
                .strip_prefix("secrets.")
                .map(|n| n.trim().to_owned())
        })
        .collect()
}

/// The value with each placeholder replaced by the secret's value; the
/// error names the missing secret, never a value.
pub fn resolve_secrets(value: &str, secrets: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            return Err("unclosed secrets placeholder".to_owned());
        };
        let inner = rest[start + 3..start + end].trim();
        let name = inner
            .strip_prefix("secrets.")
            .ok_or_else(|| format!("unknown placeholder ${{{{ {inner} }}}}"))?
            .trim();
        let secret = secrets
            .get(name)
            .ok_or_else(|| format!("secret {name} is not set"))?;
        out.push_str(secret);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_secret_values() {
        let secrets = HashMap::from([("DB".to_owned(), "pw".to_owned())]);
        assert_eq!(
            resolve_secrets("postgres://u:${{ secrets.DB }}@db", &secrets).unwrap(),
            "postgres://u:pw@db"
        );
        assert_eq!(resolve_secrets("plain", &secrets).unwrap(), "plain");
        assert_eq!(
            resolve_secrets("${{ secrets.NOPE }}", &secrets).unwrap_err(),
            "secret NOPE is not set"
        );
        assert!(resolve_secrets("${{ env.X }}", &secrets).is_err());
        assert!(resolve_secrets("${{ secrets.DB", &secrets).is_err());
    }

    #[test]
    fn refs_in_order() {
        assert_eq!(
            secret_refs("https://x/${{ secrets.A }}?k=${{secrets.B}}"),
            vec!["A".to_owned(), "B".to_owned()]
        );
        assert!(secret_refs("https://x/plain").is_empty());
    }
}
