//! latex2sympy2_extended's `extract_boxed_content`: which `\\boxed{...}` / `\\fbox{...}`
//! contents stand for the answer.

use std::sync::LazyLock;

use regex::Regex;

use super::normalize::Boxed;

/// Whether `between` (the text between two boxes) lets both count as one answer.
fn boxes_belong_together(between: &str, content: &str, next_content: &str) -> bool {
    static SEPARATOR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(and|or)\b|,|;").expect("valid regex"));
    let length = between.chars().count();
    length < 10 || (next_content != content && length < 70 && SEPARATOR.is_match(between))
}

/// `extract_boxed_content`: the contents of the `\boxed{...}` / `\fbox{...}` boxes, searched
/// from the right; `Last` keeps the last box (and the ones just before it that a short text
/// or a separator joins to it), `All` every box; several are joined by commas. Text without a
/// box is returned unchanged.
pub fn extract_boxed_content(text: &str, mode: Boxed) -> String {
    let bytes = text.as_bytes();
    let mut results: Vec<String> = Vec::new();
    let mut current = text.len();
    let mut max_pos = text.len();
    let mut last_boxed_start: Option<usize> = None;
    loop {
        let boxed = text[..current].rfind(r"\boxed");
        let fbox = text[..current].rfind(r"\fbox");
        let (start, command_end) = match (boxed, fbox) {
            (None, None) => break,
            (Some(b), Some(f)) if f > b => (f, f + 5),
            (Some(b), _) => (b, b + 6),
            (None, Some(f)) => (f, f + 5),
        };
        let mut brace = command_end;
        while brace < max_pos && text[brace..].starts_with(char::is_whitespace) {
            brace += text[brace..].chars().next().map_or(1, char::len_utf8);
        }
        if brace >= max_pos {
            break;
        }
        if bytes[brace] != b'{' {
            if results.is_empty() {
                results.push(text[brace..].to_string());
            }
            break;
        }
        let Some(close) = closing_brace(bytes, brace, max_pos) else {
            if results.is_empty() {
                results.push(text[brace..].to_string());
            }
            break;
        };
        let content = text[brace + 1..close].trim().to_string();
        if let (Boxed::Last, Some(next_start)) = (mode, last_boxed_start) {
            let next = results.last().map(String::as_str).unwrap_or("");
            let between = text.get(close + 1..next_start).unwrap_or("");
            if !boxes_belong_together(between, &content, next) {
                break;
            }
        }
        if results.last() != Some(&content) {
            results.push(content);
        }
        last_boxed_start = Some(start);
        max_pos = start;
        current = start;
    }
    if results.is_empty() {
        return text.to_string();
    }
    results.reverse();
    results.join(",")
}

/// The `}` closing the `{` at `open`, looking no further than `max_pos`.
fn closing_brace(bytes: &[u8], open: usize, max_pos: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = open;
    while i + 1 < max_pos {
        i += 1;
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_content_is_extracted_from_the_right() {
        assert_eq!(
            extract_boxed_content(r"x \boxed{\frac{1}{2}} y", Boxed::All),
            r"\frac{1}{2}"
        );
        assert_eq!(
            extract_boxed_content(r"\boxed{3} then \boxed{5}", Boxed::Last),
            "3,5"
        );
        let far = r"\boxed{3} then much later we say \boxed{5}";
        assert_eq!(extract_boxed_content(far, Boxed::Last), "5");
        assert_eq!(extract_boxed_content(far, Boxed::All), "3,5");
        let joined = r"\boxed{3} and then much later we say \boxed{5}";
        assert_eq!(extract_boxed_content(joined, Boxed::Last), "3,5");
        assert_eq!(extract_boxed_content("no box", Boxed::All), "no box");
        assert_eq!(
            extract_boxed_content(r"\boxed{1 + {2}", Boxed::All),
            "{1 + {2}"
        );
    }
}
