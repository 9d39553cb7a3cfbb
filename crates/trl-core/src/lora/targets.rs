//! Which linear layers an adapter wraps, as peft's `check_target_module_exists` decides it:
//! `target_modules` (a list of names, `all-linear`, or a regular expression), minus
//! `exclude_modules`, limited to `layers_to_transform` (found with `layers_pattern`).
//!
//! Adapters made in Python use all of these; reading one and then wrapping other layers than
//! peft would (or ignoring a field) would load its weights into the wrong places, so every
//! field peft applies is applied here the same way.

use fancy_regex::Regex;

/// A module selector: `target_modules` or `exclude_modules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetModules {
    /// Names matched as peft matches a list: the module path equals the name or ends with
    /// `.name`.
    Names(Vec<String>),
    /// `all-linear`: every linear layer except the output layer (`lm_head`, `score`).
    AllLinear,
    /// A regular expression the whole module path must match (peft passes a string to
    /// Python's `re.fullmatch`); checked when read, see [`TargetModules::regex`].
    Regex(ModulePattern),
}

/// A `target_modules` regular expression, compiled once when read (it is matched against
/// every module path of the model).
#[derive(Debug, Clone)]
pub struct ModulePattern {
    source: String,
    full_match: Regex,
}

impl ModulePattern {
    /// The pattern as written in `adapter_config.json` / on the command line.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Two patterns are the same selector when they are the same text.
impl PartialEq for ModulePattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for ModulePattern {}

impl TargetModules {
    /// A regex selector, or an error naming the pattern when it does not compile (Python's
    /// `re` syntax, look-arounds included, through `fancy_regex`).
    pub fn regex(pattern: &str) -> std::result::Result<Self, String> {
        Ok(TargetModules::Regex(ModulePattern {
            source: pattern.to_string(),
            full_match: full_match_regex(pattern)?,
        }))
    }

    /// Whether the module at `path` (e.g. `model.layers.0.self_attn.q_proj`) is selected.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            TargetModules::AllLinear => !is_output_layer(path),
            TargetModules::Names(names) => names.iter().any(|n| name_matches(n, path)),
            TargetModules::Regex(pattern) => pattern.full_match.is_match(path).unwrap_or(false),
        }
    }

    /// Whether peft's layer-index filter applies to this selector (it does for lists,
    /// `all-linear` included, which peft turns into a list; not for a regular expression).
    fn uses_layer_filter(&self) -> bool {
        !matches!(self, TargetModules::Regex(_))
    }
}

/// `layers_to_transform` and `layers_pattern`: only the decoder layers with these indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerFilter {
    /// The layer indices to adapt; empty means every layer.
    pub layers_to_transform: Vec<usize>,
    /// The name of the module list holding the layers (`layers` in `model.layers.3.`); empty
    /// means the first numbered path component.
    pub layers_pattern: Vec<String>,
}

impl LayerFilter {
    /// Whether `path` lies in one of the selected layers (always, without a selection).
    pub fn admits(&self, path: &str) -> bool {
        if self.layers_to_transform.is_empty() {
            return true;
        }
        layer_index(path, &self.layers_pattern)
            .is_some_and(|index| self.layers_to_transform.contains(&index))
    }
}

/// peft's decision for one module: selected by `targets`, not excluded, in a selected layer.
pub fn is_targeted(
    targets: &TargetModules,
    exclude: Option<&TargetModules>,
    layers: &LayerFilter,
    path: &str,
) -> bool {
    if exclude.is_some_and(|e| e.matches(path)) {
        return false;
    }
    targets.matches(path) && (!targets.uses_layer_filter() || layers.admits(path))
}

/// peft's list match: the path is the name or ends with `.name`.
pub fn name_matches(name: &str, path: &str) -> bool {
    path == name
        || path
            .strip_suffix(name)
            .is_some_and(|head| head.ends_with('.'))
}

/// The output layers `all-linear` leaves out (peft skips the output embedding layer; for
/// sequence classification the `score` head is a module to save instead).
fn is_output_layer(path: &str) -> bool {
    path == "lm_head" || path == "score"
}

/// `pattern` anchored at both ends, as Python's `re.fullmatch` applies it.
fn full_match_regex(pattern: &str) -> std::result::Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| format!("target pattern {pattern:?} is not a valid regular expression: {e}"))
}

/// The first layer index in `path`: the all-digit component right after the first `<pattern>.`
/// (a pattern may span components, `model.layers`), or after any component when `patterns` is
/// empty, as peft's lazy `.*?\.[^.]*\.(\d+)\.` finds it; the index is never the last component.
fn layer_index(path: &str, patterns: &[String]) -> Option<usize> {
    let parts: Vec<&str> = path.split('.').collect();
    let numbered = |i: usize| -> Option<usize> {
        let part = parts[i];
        let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        (digits && i + 1 < parts.len())
            .then(|| part.parse().ok())
            .flatten()
    };
    if patterns.is_empty() {
        // peft's pattern needs a component before the one preceding the number.
        return (2..parts.len()).find_map(numbered);
    }
    patterns.iter().find_map(|pattern| {
        let wanted: Vec<&str> = pattern.split('.').collect();
        (wanted.len()..parts.len()).find_map(|i| {
            (parts[i - wanted.len()..i] == wanted[..])
                .then(|| numbered(i))
                .flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q0: &str = "model.layers.0.self_attn.q_proj";
    const Q3: &str = "model.layers.3.self_attn.q_proj";

    #[test]
    fn a_regex_must_match_the_whole_path() {
        let re = TargetModules::regex(r".*\.(q_proj|v_proj)").unwrap();
        assert!(re.matches(Q0) && re.matches("model.layers.1.self_attn.v_proj"));
        assert!(!re.matches("model.layers.1.self_attn.v_proj_extra"));
        let anchored = TargetModules::regex("q_proj").unwrap();
        assert!(!anchored.matches(Q0), "fullmatch, not search");
        let lookahead = TargetModules::regex(r"model\.layers\.(?!0\.).*q_proj").unwrap();
        assert!(!lookahead.matches(Q0) && lookahead.matches(Q3));
        assert!(
            TargetModules::regex("(unclosed")
                .unwrap_err()
                .contains("(unclosed")
        );
    }

    #[test]
    fn layers_to_transform_limits_list_targets_only() {
        let layers = LayerFilter {
            layers_to_transform: vec![3],
            layers_pattern: Vec::new(),
        };
        let names = TargetModules::Names(vec!["q_proj".into()]);
        assert!(!is_targeted(&names, None, &layers, Q0));
        assert!(is_targeted(&names, None, &layers, Q3));
        assert!(is_targeted(&TargetModules::AllLinear, None, &layers, Q3));
        let re = TargetModules::regex(r".*q_proj").unwrap();
        assert!(
            is_targeted(&re, None, &layers, Q0),
            "peft ignores it for a regex"
        );
        let named = LayerFilter {
            layers_pattern: vec!["h".into()],
            ..layers.clone()
        };
        assert!(
            !is_targeted(&names, None, &named, Q3),
            "no `h.<n>.` in the path"
        );
        assert!(is_targeted(
            &names,
            None,
            &named,
            "transformer.h.3.attn.q_proj"
        ));
    }

    #[test]
    fn exclusions_win_over_targets() {
        let exclude = TargetModules::Names(vec!["layers.0.self_attn.q_proj".into()]);
        let all = TargetModules::AllLinear;
        let every = LayerFilter::default();
        assert!(!is_targeted(&all, Some(&exclude), &every, Q0));
        assert!(is_targeted(&all, Some(&exclude), &every, Q3));
        let by_regex = TargetModules::regex(r".*\.3\..*").unwrap();
        assert!(!is_targeted(&all, Some(&by_regex), &every, Q3));
    }

    #[test]
    fn the_first_numbered_component_is_the_layer() {
        assert_eq!(
            layer_index("model.layers.12.mlp.experts.3.up", &[]),
            Some(12)
        );
        assert_eq!(
            layer_index("layers.2.mlp", &[]),
            None,
            "peft needs a prefix"
        );
        assert_eq!(layer_index("model.layers.5", &["layers".into()]), None);
        assert_eq!(
            layer_index("model.layers.+5.q", &[]),
            None,
            "digits only, as \\d+"
        );
        let two = ["model.layers".to_string()];
        assert_eq!(
            layer_index("model.layers.7.self_attn.q_proj", &two),
            Some(7)
        );
    }
}
