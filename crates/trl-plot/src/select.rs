//! Which curves go on which panel: by default the shared training metrics and each method's
//! own (TRL's metric names), or the metrics a user names; an `eval_<name>` metric joins the
//! panel of `<name>`.

use crate::PlotError;
use crate::history::{History, Series};

/// One small chart of the grid: its title and the curves drawn on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub lines: Vec<Series>,
}

/// What one default panel shows: fixed metric names (one panel, a line each), or every
/// metric starting with a prefix (a panel each).
enum Pick {
    Names(&'static [&'static str]),
    Prefix(&'static str),
}

/// The default panels, in drawing order; each is drawn only when the run logged it.
const DEFAULT_PANELS: &[Pick] = &[
    // Every method (the HF Trainer's own logs).
    Pick::Names(&["loss"]),
    Pick::Names(&["learning_rate"]),
    Pick::Names(&["grad_norm"]),
    // DPO (and KTO's rewards/chosen, rewards/rejected).
    Pick::Names(&["rewards/margins"]),
    Pick::Names(&["rewards/accuracies"]),
    Pick::Names(&["rewards/chosen", "rewards/rejected"]),
    // SFT (DPO logs them too).
    Pick::Names(&["mean_token_accuracy"]),
    Pick::Names(&["entropy"]),
    // KTO.
    Pick::Names(&["kl"]),
    // Reward modeling.
    Pick::Names(&["accuracy"]),
    Pick::Names(&["margin"]),
    // GRPO / RLOO.
    Pick::Names(&["reward"]),
    Pick::Names(&["reward_std"]),
    // PPO.
    Pick::Prefix("objective/"),
];

/// The panels `trl plot` draws: `metrics` as named (each its own panel), or the defaults the
/// run has when none is named. A name the run never logged is an error listing the ones it did.
pub fn select_panels(
    history: &History,
    metrics: Option<&[String]>,
) -> Result<Vec<Panel>, PlotError> {
    let requested = match metrics {
        Some(names) => requested_groups(history, names)?,
        None => Vec::new(),
    };
    let groups = if requested.is_empty() {
        default_groups(history)
    } else {
        requested
    };
    Ok(groups
        .into_iter()
        .map(|names| panel(history, &names))
        .collect())
}

/// Each requested name as a one-metric panel, after checking the run logged it.
fn requested_groups(history: &History, names: &[String]) -> Result<Vec<Vec<String>>, PlotError> {
    let mut groups = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if !history.has(name) {
            return Err(PlotError::UnknownMetric {
                name: name.to_string(),
                available: history.metric_names(),
            });
        }
        groups.push(vec![name.to_string()]);
    }
    Ok(groups)
}

/// The default panels present in this run; a run that logged none of them (a method not in
/// the list) gets a panel for every training metric it logged.
fn default_groups(history: &History) -> Vec<Vec<String>> {
    let all = history.metric_names();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for pick in DEFAULT_PANELS {
        match pick {
            Pick::Names(names) => {
                let present: Vec<String> = names
                    .iter()
                    .filter(|n| history.has(n))
                    .map(|n| n.to_string())
                    .collect();
                if !present.is_empty() {
                    groups.push(present);
                }
            }
            Pick::Prefix(prefix) => groups.extend(
                all.iter()
                    .filter(|n| n.starts_with(prefix))
                    .map(|n| vec![n.clone()]),
            ),
        }
    }
    if groups.is_empty() {
        groups = all
            .iter()
            .filter(|n| !n.starts_with(EVAL_PREFIX))
            .map(|n| vec![n.clone()])
            .collect();
    }
    groups
}

/// transformers' prefix for metrics computed on the eval split.
const EVAL_PREFIX: &str = "eval_";

/// The panel of `names`: their curves, each followed by its `eval_` twin when logged.
fn panel(history: &History, names: &[String]) -> Panel {
    let mut lines = Vec::new();
    for name in names {
        lines.push(history.series(name));
        let eval_name = format!("{EVAL_PREFIX}{name}");
        if !name.starts_with(EVAL_PREFIX) && history.has(&eval_name) {
            lines.push(history.series(&eval_name));
        }
    }
    Panel {
        title: names.join(" & "),
        lines,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::{Value, json};

    use super::*;

    /// A real run's history: the reference fixtures record TRL 1.16's `log_history`.
    fn fixture_history(name: &str) -> History {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/expected")
            .join(name);
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        History::from_state(&case, path).unwrap()
    }

    fn titles(panels: &[Panel]) -> Vec<&str> {
        panels.iter().map(|p| p.title.as_str()).collect()
    }

    #[test]
    fn dpo_run_gets_the_shared_curves_and_its_rewards() {
        let history = fixture_history("dpo/sigmoid.json");
        let panels = select_panels(&history, None).unwrap();
        assert_eq!(
            titles(&panels),
            [
                "loss",
                "learning_rate",
                "grad_norm",
                "rewards/margins",
                "rewards/accuracies",
                "rewards/chosen & rewards/rejected",
                "mean_token_accuracy",
                "entropy",
            ]
        );
        let pair = &panels[5];
        assert_eq!(pair.lines.len(), 2);
        assert_eq!(pair.lines[1].name, "rewards/rejected");
        // Every logged step is a point; the summary entry is not.
        assert_eq!(panels[0].lines[0].points.len(), 8);
    }

    #[test]
    fn sft_run_gets_token_accuracy_and_entropy_but_no_rewards() {
        let history = fixture_history("sft/messages.json");
        let panels = select_panels(&history, None).unwrap();
        assert_eq!(
            titles(&panels),
            [
                "loss",
                "learning_rate",
                "grad_norm",
                "mean_token_accuracy",
                "entropy"
            ]
        );
    }

    #[test]
    fn kto_and_reward_runs_get_their_own_metrics() {
        let kto = select_panels(&fixture_history("kto/unpaired.json"), None).unwrap();
        assert!(titles(&kto).contains(&"kl"), "{:?}", titles(&kto));
        let reward = select_panels(&fixture_history("reward/preference.json"), None).unwrap();
        let reward_titles = titles(&reward);
        assert!(
            reward_titles.ends_with(&["accuracy", "margin"]),
            "{reward_titles:?}"
        );
    }

    fn history(log: Value) -> History {
        History::from_state(&json!({ "log_history": log }), PathBuf::from("t.json")).unwrap()
    }

    #[test]
    fn eval_metrics_share_their_training_metric_panel_and_ppo_matches_by_prefix() {
        let h = history(json!([
            {"loss": 2.0, "objective/kl": 0.1, "objective/entropy": 3.0, "step": 1},
            {"eval_loss": 2.5, "step": 1},
            {"loss": 1.0, "objective/kl": 0.2, "objective/entropy": 2.9, "step": 2}
        ]));
        let panels = select_panels(&h, None).unwrap();
        assert_eq!(
            titles(&panels),
            ["loss", "objective/kl", "objective/entropy"]
        );
        let names: Vec<&str> = panels[0].lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["loss", "eval_loss"]);
        assert_eq!(panels[0].lines[1].points, [(1.0, 2.5)]);
    }

    #[test]
    fn requested_metrics_are_drawn_in_order_and_unknown_ones_are_listed() {
        let h = history(json!([{"loss": 2.0, "num_tokens": 10.0, "step": 1}]));
        let asked = ["num_tokens".to_string(), "loss".to_string()];
        let panels = select_panels(&h, Some(&asked)).unwrap();
        assert_eq!(titles(&panels), ["num_tokens", "loss"]);
        let err = select_panels(&h, Some(&["los".to_string()])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this run never logged a metric named `los`; it logged: loss, num_tokens"
        );
    }

    #[test]
    fn an_unknown_method_gets_every_training_metric() {
        let h = history(json!([{"score_mean": 0.5, "eval_score_mean": 0.4, "step": 1}]));
        let panels = select_panels(&h, None).unwrap();
        assert_eq!(titles(&panels), ["score_mean"]);
        assert_eq!(panels[0].lines.len(), 2);
    }
}
