//! The glob patterns `datasets` matches data files with (fsspec's `glob`): `*` and `?` stay
//! inside one path part, `**` crosses `/` (and `**/` also matches no folder at all), `[...]`
//! is a set of characters (`[!...]` its complement, `a-z` a range).

/// Whether the `/`-separated relative `path` matches `pattern`.
pub(crate) fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let path: Vec<char> = path.chars().collect();
    matches_from(&pattern, &path)
}

fn matches_from(pattern: &[char], path: &[char]) -> bool {
    match pattern {
        [] => path.is_empty(),
        ['*', '*', '/', rest @ ..] => {
            // No folder, or any number of whole folders.
            matches_from(rest, path)
                || (0..path.len()).any(|i| path[i] == '/' && matches_from(rest, &path[i + 1..]))
        }
        ['*', '*', rest @ ..] => (0..=path.len()).any(|i| matches_from(rest, &path[i..])),
        ['*', rest @ ..] => {
            let part_end = path.iter().position(|&c| c == '/').unwrap_or(path.len());
            (0..=part_end).any(|i| matches_from(rest, &path[i..]))
        }
        ['?', rest @ ..] => {
            matches!(path.first(), Some(&c) if c != '/') && matches_from(rest, &path[1..])
        }
        ['[', rest @ ..] => match parse_set(rest) {
            Some((set, after)) => match path.first() {
                Some(&c) if c != '/' && set.contains(c) => matches_from(after, &path[1..]),
                _ => false,
            },
            // An unclosed `[` is a literal character.
            None => path.first() == Some(&'[') && matches_from(rest, &path[1..]),
        },
        [literal, rest @ ..] => path.first() == Some(literal) && matches_from(rest, &path[1..]),
    }
}

struct CharSet {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl CharSet {
    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|&(low, high)| low <= c && c <= high) != self.negated
    }
}

/// Parses the inside of `[...]` (after the `[`); returns the set and the pattern after `]`.
fn parse_set(pattern: &[char]) -> Option<(CharSet, &[char])> {
    let (negated, mut i) = match pattern.first() {
        Some('!') | Some('^') => (true, 1),
        _ => (false, 0),
    };
    let mut ranges = Vec::new();
    let start = i;
    while i < pattern.len() {
        let c = pattern[i];
        if c == ']' && i > start {
            return Some((CharSet { negated, ranges }, &pattern[i + 1..]));
        }
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&end| end != ']') {
            ranges.push((c, pattern[i + 2]));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn star_stays_inside_one_part() {
        assert!(glob_match(
            "data/train-*",
            "data/train-00000-of-00001.parquet"
        ));
        assert!(!glob_match("data/*", "data/sub/x.jsonl"));
        assert!(glob_match("*.jsonl", "a.jsonl"));
        assert!(!glob_match("*.jsonl", "d/a.jsonl"));
    }

    #[test]
    fn double_star_crosses_folders_and_may_match_none() {
        assert!(glob_match("**", "a/b/c.json"));
        assert!(glob_match("**/train[-._ 0-9]*", "train.jsonl"));
        assert!(glob_match("**/train[-._ 0-9]*", "data/train-1.jsonl"));
        assert!(!glob_match("**/train[-._ 0-9]*", "trainer.jsonl"));
        assert!(glob_match(
            "**/*[-._ 0-9]train[-._ 0-9]*",
            "my_train_set.jsonl"
        ));
        assert!(glob_match("**/train/**", "data/train/x.jsonl"));
        assert!(!glob_match("**/train/**", "data/training/x.jsonl"));
    }

    #[test]
    fn sets_ranges_and_question_marks() {
        assert!(glob_match("[0-9][0-9].json", "42.json"));
        assert!(!glob_match("[!0-9]x", "1x"));
        assert!(glob_match("?.json", "a.json"));
        assert!(!glob_match("?", "/"));
        assert!(glob_match("a[", "a["));
    }
}
