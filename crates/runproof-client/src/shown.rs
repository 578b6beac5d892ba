//! What is printed: every string that came from the server or the workspace is escaped for
//! where it goes (a log line, a Markdown table cell) and bounded in length.

use std::borrow::Cow;

/// The most characters of a server's string (a problem's `detail`, a `reason`) printed.
pub(crate) const MAX_SHOWN_CHARS: usize = 1000;

/// `text` made safe for a log line: control characters (line breaks included), Unicode line
/// separators and bidirectional controls become `\u{…}`, a leading `::` (a workflow command)
/// is broken, and the length is bounded.
#[must_use]
pub fn log_safe(text: &str) -> Cow<'_, str> {
    let risky = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    let starts_command = text.trim_start().starts_with("::");
    if !starts_command && !text.chars().any(risky) && text.chars().count() <= MAX_SHOWN_CHARS {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.chars().enumerate() {
        if i >= MAX_SHOWN_CHARS {
            out.push('…');
            break;
        }
        if risky(c) || (starts_command && c == ':' && out.trim_start().is_empty()) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A multi-line message made safe for a log: each line as [`log_safe`] makes it, line breaks
/// kept.
#[must_use]
pub fn log_lines_safe(text: &str) -> String {
    text.split('\n')
        .map(|line| log_safe(line).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` as the content of a Markdown table cell: every ASCII punctuation character
/// backslash-escaped (no cell break, link, image, HTML, emphasis or code span can start), and
/// control characters replaced, so the cell stays one cell of one row.
#[must_use]
pub fn markdown_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars().take(MAX_SHOWN_CHARS) {
        if c.is_ascii_punctuation() {
            out.push('\\');
            out.push(c);
        } else if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.push('\u{fffd}');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_log_lines_cannot_start_a_workflow_command() {
        for hostile in [
            "x\n::warning::injected",
            "::error::pwned",
            "  ::add-mask::x",
            "a\r::set-output name=x::y",
            "\u{1b}[2K::warning::erase",
            "x\u{2028}::warning::y",
        ] {
            let safe = log_safe(hostile);
            assert!(!safe.contains(['\n', '\r', '\u{1b}', '\u{2028}']), "{safe}");
            assert!(!safe.trim_start().starts_with("::"), "{safe}");
        }
        let lines = log_lines_safe("error: one\n::warning::two\nthree");
        assert!(
            lines.lines().all(|l| !l.trim_start().starts_with("::")),
            "{lines}"
        );
        assert_eq!(lines.lines().count(), 3);
        assert_eq!(log_safe("plain text: fine"), "plain text: fine");
        assert!(log_safe(&"x".repeat(5000)).chars().count() <= MAX_SHOWN_CHARS + 1);
    }

    #[test]
    fn rule_markdown_cells_stay_one_cell_of_one_row() {
        let cell = markdown_cell("a|b\n| x | y |\n<img src=x>[link](https://evil)`code`\\|");
        assert!(!cell.contains(['\n', '\r']), "{cell}");
        // Every ASCII punctuation character comes escaped: no pipe, tag, link or code span.
        let mut chars = cell.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                assert!(
                    chars.next().is_some_and(|e| e.is_ascii_punctuation()),
                    "{cell}"
                );
            } else {
                assert!(!c.is_ascii_punctuation(), "unescaped {c:?} in {cell}");
            }
        }
        assert_eq!(markdown_cell("report one"), "report one");
    }
}
