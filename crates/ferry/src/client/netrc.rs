//! A small `~/.netrc` reader: `machine`, `default`, `login`, `password` (and `account`,
//! `macdef`, which are skipped).

/// Credentials found for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetrcEntry {
    pub(crate) login: Option<String>,
    pub(crate) password: Option<String>,
}

/// Tokens of a netrc file: whitespace-separated, `"..."` quoting with `\` escapes.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            // Comment to the end of the line.
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
        } else if c == '"' {
            chars.next();
            let mut tok = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(n) = chars.next() {
                            tok.push(n);
                        }
                    }
                    _ => tok.push(c),
                }
            }
            out.push(tok);
        } else {
            let mut tok = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                tok.push(c);
                chars.next();
            }
            out.push(tok);
        }
    }
    out
}

/// The entry for `host` (and `user`, when given, must match its `login`), falling back to
/// `default`. `macdef` bodies (up to a blank line) are skipped.
pub(crate) fn lookup(text: &str, host: &str, user: Option<&str>) -> Option<NetrcEntry> {
    // Remove macdef bodies first: they end at an empty line.
    let mut cleaned = String::new();
    let mut in_macro = false;
    for line in text.lines() {
        if in_macro {
            if line.trim().is_empty() {
                in_macro = false;
            }
            continue;
        }
        if line.split_whitespace().any(|t| t == "macdef") {
            in_macro = true;
            let before: Vec<&str> = line
                .split_whitespace()
                .take_while(|t| *t != "macdef")
                .collect();
            cleaned.push_str(&before.join(" "));
            cleaned.push('\n');
            continue;
        }
        cleaned.push_str(line);
        cleaned.push('\n');
    }
    let toks = tokens(&cleaned);
    let mut entries: Vec<(Option<String>, NetrcEntry)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match toks[i].as_str() {
            "machine" => {
                let name = toks.get(i + 1).cloned();
                entries.push((
                    Some(name.unwrap_or_default()),
                    NetrcEntry {
                        login: None,
                        password: None,
                    },
                ));
                i += 2;
            }
            "default" => {
                entries.push((
                    None,
                    NetrcEntry {
                        login: None,
                        password: None,
                    },
                ));
                i += 1;
            }
            key @ ("login" | "password" | "account") => {
                let value = toks.get(i + 1).cloned();
                if let Some((_, e)) = entries.last_mut() {
                    match key {
                        "login" => e.login = value,
                        "password" => e.password = value,
                        _ => {}
                    }
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    let fits = |e: &NetrcEntry| match (user, &e.login) {
        (Some(u), Some(l)) => u == l,
        _ => true,
    };
    entries
        .iter()
        .find(|(m, e)| m.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(host)) && fits(e))
        .or_else(|| entries.iter().find(|(m, e)| m.is_none() && fits(e)))
        .map(|(_, e)| e.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETRC: &str = r#"
# work
machine ftp.example.org login alice password "s3 cret\"x"
machine ftp.example.org
  login bob
  password hunter2
macdef init
cd /pub
binary

machine other password onlypass
default login anonymous password me@
"#;

    #[test]
    fn finds_entries() {
        let e = lookup(NETRC, "ftp.example.org", None).unwrap();
        assert_eq!(e.login.as_deref(), Some("alice"));
        assert_eq!(e.password.as_deref(), Some("s3 cret\"x"));
        let e = lookup(NETRC, "FTP.example.org", Some("bob")).unwrap();
        assert_eq!(e.password.as_deref(), Some("hunter2"));
        let e = lookup(NETRC, "other", Some("zed")).unwrap();
        assert_eq!(e.login, None);
        assert_eq!(e.password.as_deref(), Some("onlypass"));
        let e = lookup(NETRC, "unknown", None).unwrap();
        assert_eq!(e.login.as_deref(), Some("anonymous"));
        assert_eq!(lookup("machine a login b", "c", None), None);
        assert_eq!(lookup("", "c", None), None);
        assert_eq!(lookup("machine", "c", None), None);
    }
}
