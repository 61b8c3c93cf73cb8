//! Text a peer chose (names, replies, paths), made safe to show on a terminal or write to a
//! log: characters that could drive the terminal, forge or hide what follows, or make one
//! name read as another are shown as escapes (`\x1b`, `\u{202e}`).

use std::borrow::Cow;

/// Whether `c` is shown as an escape: control characters (C0, DEL, C1) and the characters
/// that are invisible or change how the text around them reads: bidirectional controls
/// (U+202A-202E, U+2066-2069, U+200E/U+200F, U+061C), zero-width and joining characters,
/// line and paragraph separators, the byte-order mark, tag characters and the other format
/// characters (Unicode category Cf).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{0600}'..='\u{0605}'
                | '\u{06dd}'
                | '\u{070f}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08e2}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
        )
}

/// `text` with every [`is_hidden`] character but tab shown as an escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    escaped(text, |c| c == '\t')
}

/// `text` with every [`is_hidden`] character for which `keep` is false shown as an escape:
/// `\xHH` below U+0100, `\u{H...}` above. Borrowed when there is nothing to escape.
pub fn escaped(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let shown_as_escape = |c: char| is_hidden(c) && !keep(c);
    if !text.chars().any(shown_as_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !shown_as_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_reordering_characters_are_escaped() {
        assert_eq!(printable("plain name.txt"), "plain name.txt");
        assert!(matches!(printable("été 東京"), Cow::Borrowed(_)));
        assert_eq!(printable("a\tb"), "a\tb");
        assert_eq!(
            printable("\x1b[2J\r\n\x7f\u{9b}"),
            "\\x1b[2J\\x0d\\x0a\\x7f\\x9b"
        );
        assert_eq!(printable("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        for c in [
            '\u{061c}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{2066}',
            '\u{2069}',
            '\u{200b}',
            '\u{2028}',
            '\u{2029}',
            '\u{feff}',
            '\u{e0041}',
        ] {
            let shown = printable(&format!("a{c}b")).into_owned();
            assert_eq!(shown, format!("a\\u{{{:x}}}b", c as u32));
        }
    }

    #[test]
    fn kept_characters_pass() {
        assert_eq!(escaped("a\nb\u{202e}", |c| c == '\n'), "a\nb\\u{202e}");
    }
}
