//! Text from elsewhere made safe for a terminal.
//!
//! Process names are chosen by any local user (`prctl(PR_SET_NAME)`), and
//! reset-reason names and lost-record sources can come from a recording
//! made on another host. Printed raw, an ESC starts a terminal escape
//! sequence (colours, cursor moves, an OSC 52 clipboard write), a newline or
//! CR forges a whole line, and a bidi override (U+202E) reorders what the
//! operator reads. So every such string is shown with visible escapes:
//! `\n`, `\t`, `\r`, `\e`, `\xNN` for other C0 controls, DEL and bytes that
//! are not UTF-8, `\u{NNNN}` for C1 controls and invisible formatting
//! characters, `\\` for the backslash itself (so an escape cannot be
//! forged either). JSON output needs none of this: serde_json escapes
//! control characters, and JSON readers do not interpret the rest.

/// Appends `s` with the escapes above, at most `max_chars` characters of
/// it (an ellipsis `…` marks a cut).
pub fn text(out: &mut Vec<u8>, s: &[u8], max_chars: usize) {
    if s.len() <= max_chars && s.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b'\\') {
        // Plain ASCII, as process names almost always are.
        out.extend_from_slice(s);
        return;
    }
    let mut left = max_chars;
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            if left == 0 {
                out.extend_from_slice("…".as_bytes());
                return;
            }
            left -= 1;
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\x1b' => out.extend_from_slice(b"\\e"),
                c if (c as u32) < 0x20 || c == '\x7f' => hex_byte(out, c as u8),
                c if c.is_control() || invisible(c) => {
                    out.extend_from_slice(format!("\\u{{{:04x}}}", c as u32).as_bytes());
                }
                c => {
                    let mut b = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        for &b in chunk.invalid() {
            if left == 0 {
                out.extend_from_slice("…".as_bytes());
                return;
            }
            left -= 1;
            hex_byte(out, b);
        }
    }
}

/// [`text`] into a new string.
pub fn to_string(s: &[u8], max_chars: usize) -> String {
    let mut v = Vec::with_capacity(s.len());
    text(&mut v, s, max_chars);
    // Only whole characters and ASCII escapes were appended.
    String::from_utf8(v).unwrap_or_default()
}

fn hex_byte(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 15)],
    ]);
}

/// Characters that change how text around them is shown without showing
/// themselves: bidi embeddings, overrides and isolates, zero-width
/// characters, the byte-order mark, interlinear annotation and line or
/// paragraph separators.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{061c}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &[u8]) -> String {
        to_string(s, 64)
    }

    #[test]
    fn plain_names_pass_unchanged() {
        assert_eq!(esc(b"nginx"), "nginx");
        assert_eq!(esc("añb".as_bytes()), "añb");
        assert_eq!(esc(b"kworker/0:1 x"), "kworker/0:1 x");
    }

    #[test]
    fn controls_and_escapes_become_visible() {
        assert_eq!(esc(b"\x1b[31mev\nil"), "\\e[31mev\\nil");
        assert_eq!(esc(b"a\rb\x07c\x7f"), "a\\rb\\x07c\\x7f");
        assert_eq!(esc(b"back\\slash"), "back\\\\slash");
        // C1 (CSI as one code point), a bidi override, invalid UTF-8.
        assert_eq!(esc("x\u{9b}y".as_bytes()), "x\\u{009b}y");
        assert_eq!(esc("gnp.\u{202e}exe".as_bytes()), "gnp.\\u{202e}exe");
        assert_eq!(esc(b"\xff\xfeok"), "\\xff\\xfeok");
        // OSC 52: a clipboard write.
        let osc = esc(b"\x1b]52;c;ZXZpbA==\x07");
        assert!(!osc.bytes().any(|b| b < 0x20), "{osc}");
    }

    #[test]
    fn lengths_are_bounded() {
        assert_eq!(to_string(b"abcdef", 3), "abc…");
        assert_eq!(to_string(&[b'\n'; 100], 2), "\\n\\n…");
        let long = "é".repeat(500);
        assert_eq!(to_string(long.as_bytes(), 10).chars().count(), 11);
    }
}
