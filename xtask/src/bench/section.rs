//! Replacing one `## ` section of BENCHMARKS.md, so that `--only generation|grpo|lora`
//! refresh their part and leave the others as they are.

/// `markdown` with the section starting at `heading` (up to the next `## `) replaced by
/// `section`, or `section` inserted before "How the numbers are computed" (else at the end).
pub(super) fn replace_section(markdown: &str, heading: &str, section: &str) -> String {
    if let Some(start) = markdown.find(heading) {
        let rest = &markdown[start + heading.len()..];
        let end = rest
            .find("\n## ")
            .map_or(markdown.len(), |i| start + heading.len() + i + 1);
        return format!("{}{section}\n{}", &markdown[..start], &markdown[end..]);
    }
    match markdown.find("## How the numbers are computed") {
        Some(at) => format!("{}{section}\n{}", &markdown[..at], &markdown[at..]),
        None => format!("{markdown}\n{section}"),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_section;

    #[test]
    fn a_section_is_replaced_or_inserted() {
        let doc = "# B\n\n## Kernels\nk\n\n## How the numbers are computed\nh\n";
        let once = replace_section(doc, "## Generation", "## Generation: x\n\nrow 1\n");
        assert!(once.contains("## Kernels\nk\n\n## Generation: x\n\nrow 1\n\n## How"));
        let twice = replace_section(&once, "## Generation", "## Generation: x\n\nrow 2\n");
        assert!(
            twice.contains("row 2") && !twice.contains("row 1"),
            "{twice}"
        );
        assert!(twice.contains("## How the numbers are computed\nh\n"));
    }

    #[test]
    fn only_the_named_section_changes() {
        let doc = "# B\n\n## Generation: x\n\ng 1\n\n## GRPO: y\n\nr 1\n\n## How the numbers are computed\nh\n";
        let out = replace_section(doc, "## GRPO", "## GRPO: y\n\nr 2\n");
        assert!(
            out.contains("## Generation: x\n\ng 1\n\n## GRPO: y\n\nr 2\n\n## How"),
            "{out}"
        );
        let out = replace_section(&out, "## Generation", "## Generation: x\n\ng 2\n");
        assert!(
            out.contains("g 2") && out.contains("r 2") && !out.contains("g 1"),
            "{out}"
        );
    }
}
