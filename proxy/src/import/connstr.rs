//! The value of a `[databases]` (or `[users]`) line: `key=value` pairs
//! separated by spaces, a value optionally single-quoted (`'a b'`, with
//! `\'` or `''` for a quote and `\\` for a backslash).

/// Parses `host=db port=5432 dbname='my db'` into pairs, in order.
/// `Err` carries what is wrong.
pub fn parse(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("expected key=value at {rest:?}"))?;
        let key = rest[..eq].trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("bad key before '=' in {rest:?}"));
        }
        let (value, after) = value(rest[eq + 1..].trim_start())?;
        out.push((key, value));
        rest = after.trim_start();
    }
    Ok(out)
}

/// One value and what follows it.
fn value(s: &str) -> Result<(String, &str), String> {
    let Some(body) = s.strip_prefix('\'') else {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        return Ok((s[..end].to_owned(), &s[end..]));
    };
    let mut out = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, n)) => out.push(n),
                None => break,
            },
            '\'' if chars.peek().is_some_and(|(_, n)| *n == '\'') => {
                out.push('\'');
                chars.next();
            }
            '\'' => return Ok((out, &body[i + 1..])),
            c => out.push(c),
        }
    }
    Err(format!("unterminated quote in {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_plain_and_quoted() {
        let p =
            parse("host=db.internal port=5433  dbname='my db' password='it''s\\\\x' pool_size=5")
                .unwrap();
        assert_eq!(
            p,
            vec![
                ("host".into(), "db.internal".into()),
                ("port".into(), "5433".into()),
                ("dbname".into(), "my db".into()),
                ("password".into(), "it's\\x".into()),
                ("pool_size".into(), "5".into()),
            ]
        );
        assert!(parse("host").is_err());
        assert!(parse("dbname='open").is_err());
        assert_eq!(parse("").unwrap(), vec![]);
    }
}
