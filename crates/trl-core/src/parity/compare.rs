//! The comparison rules of the parity tests: logged steps, the final summary entry and plain
//! value lists, each as a `check_*` function returning what differs (unit-tested below) and an
//! `assert_*` wrapper that panics with it.

use serde_json::Value;

use crate::train::state::LogEntry;

/// Absolute slack for metrics that are zero in TRL (e.g. rewards at step 1, where policy and
/// reference are the same weights): a relative tolerance means nothing there, and sums of
/// hundreds of float32 log-probs differ by ~1e-5 between two kernels.
const METRIC_FLOOR: f64 = 1e-4;
/// Absolute slack on the loss: only float32 rounding. A loss of 1e-3 (`dft`) is compared at
/// its relative tolerance, not swallowed by the metrics' floor.
const LOSS_FLOOR: f64 = 1e-7;

fn close(got: f64, want: f64, rtol: f64, floor: f64) -> bool {
    (got - want).abs() <= rtol * want.abs() + floor
}

/// `Ok` when both sides hold the same, non-zero number of items.
pub fn check_lengths(what: &str, got: usize, want: usize) -> Result<(), String> {
    if want == 0 {
        return Err(format!(
            "{what}: the reference holds none, nothing would be compared"
        ));
    }
    if got != want {
        return Err(format!("{what}: {got} here, {want} in the reference"));
    }
    Ok(())
}

/// Every value of `got` within `rtol` (relative) plus `floor` (absolute) of `want`, which
/// must be as long and not empty.
pub fn check_close_slices(
    what: &str,
    got: &[f64],
    want: &[f64],
    rtol: f64,
    floor: f64,
) -> Result<(), String> {
    check_lengths(what, got.len(), want.len())?;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !close(g, w, rtol, floor) {
            return Err(format!("{what}[{i}]: {g} vs reference {w}"));
        }
    }
    Ok(())
}

/// Panicking form of [`check_close_slices`].
pub fn assert_close_slices(what: &str, got: &[f64], want: &[f64], rtol: f64, floor: f64) {
    if let Err(e) = check_close_slices(what, got, want, rtol, floor) {
        panic!("{e}");
    }
}

/// How each key of a TRL log entry is compared.
struct Rules<'a> {
    loss_rtol: f64,
    metric_rtol: f64,
    metric_rtol_keys: &'a [&'a str],
    exact_keys: &'a [&'a str],
}

impl Rules<'_> {
    fn check_key(
        &self,
        at: &str,
        key: &str,
        ours: Option<f64>,
        expected: f64,
    ) -> Result<(), String> {
        let (rtol, floor) = if key == "loss" {
            (self.loss_rtol, LOSS_FLOOR)
        } else if self.metric_rtol_keys.contains(&key) {
            (self.metric_rtol, METRIC_FLOOR)
        } else if self.exact_keys.contains(&key) {
            (0.0, 0.0)
        } else {
            return Err(format!(
                "{at}: TRL logged `{key}`, which this test does not compare"
            ));
        };
        let ours = ours.ok_or_else(|| format!("{at}: we did not log `{key}`"))?;
        if close(ours, expected, rtol, floor) {
            Ok(())
        } else {
            Err(format!("{at}: {key} {ours} vs TRL {expected}"))
        }
    }
}

/// Checks every logged step of `got` against `want` (TRL's `log_history`; entries with a
/// `loss`): the same number of steps (at least one), the same `step` numbers, `loss` within
/// `loss_rtol`, each key of `metric_rtol_keys` within `metric_rtol` (plus a 1e-4 absolute
/// floor for values near zero), each of `exact_keys` exactly. Every key TRL logged must be
/// covered by one of these lists, so a metric cannot go unchecked by being forgotten.
pub fn check_log_history(
    name: &str,
    got: &[LogEntry],
    want: &Value,
    loss_rtol: f64,
    metric_rtol: f64,
    metric_rtol_keys: &[&str],
    exact_keys: &[&str],
) -> Result<(), String> {
    let want: Vec<&Value> = want
        .as_array()
        .ok_or_else(|| format!("{name}: TRL log_history is not a list"))?
        .iter()
        .filter(|e| e.get("loss").is_some())
        .collect();
    let got: Vec<&LogEntry> = got.iter().filter(|e| e.contains_key("loss")).collect();
    check_lengths(&format!("{name}: logged steps"), got.len(), want.len())?;
    let rules = Rules {
        loss_rtol,
        metric_rtol,
        metric_rtol_keys,
        exact_keys,
    };
    for (got, want) in got.iter().zip(&want) {
        let step = want["step"]
            .as_u64()
            .ok_or(format!("{name}: TRL entry without step"))?;
        if got.get("step").and_then(Value::as_u64) != Some(step) {
            return Err(format!(
                "{name}: logged step {:?} where TRL logged {step}",
                got.get("step")
            ));
        }
        let at = format!("{name} step {step}");
        let entry = want.as_object().ok_or(format!("{at}: not an object"))?;
        for (key, value) in entry.iter().filter(|(k, _)| *k != "step") {
            let expected = value
                .as_f64()
                .ok_or_else(|| format!("{at}: TRL's `{key}` is not a number"))?;
            let ours = got.get(key.as_str()).and_then(Value::as_f64);
            rules.check_key(&at, key, ours, expected)?;
        }
    }
    Ok(())
}

/// Panicking form of [`check_log_history`].
pub fn assert_log_history_matches(
    name: &str,
    got: &[LogEntry],
    want: &Value,
    loss_rtol: f64,
    metric_rtol: f64,
    metric_rtol_keys: &[&str],
    exact_keys: &[&str],
) {
    let result = check_log_history(
        name,
        got,
        want,
        loss_rtol,
        metric_rtol,
        metric_rtol_keys,
        exact_keys,
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Checks the final summary entry (`train_loss`, and the metrics of steps not logged before,
/// which TRL folds into it): both runs end with one, `keys` includes `train_loss`, and each
/// key is within `rtol` or absent on both sides.
pub fn check_summary(
    name: &str,
    got: &[LogEntry],
    want: &Value,
    rtol: f64,
    keys: &[&str],
) -> Result<(), String> {
    if !keys.contains(&"train_loss") {
        return Err(format!(
            "{name} summary: `train_loss` must be among the compared keys"
        ));
    }
    let got = got.last().filter(|e| e.contains_key("train_loss"));
    let got = got.ok_or_else(|| format!("{name}: our log history does not end with a summary"))?;
    let want = want
        .as_array()
        .and_then(|w| w.last())
        .filter(|e| e.get("train_loss").is_some());
    let want =
        want.ok_or_else(|| format!("{name}: TRL's log history does not end with a summary"))?;
    for key in keys {
        let expected = want.get(*key).and_then(Value::as_f64);
        let ours = got.get(*key).and_then(Value::as_f64);
        match (ours, expected) {
            (Some(ours), Some(expected)) if close(ours, expected, rtol, METRIC_FLOOR) => {}
            (None, None) => {}
            _ => {
                return Err(format!(
                    "{name} summary: {key} is {ours:?} here and {expected:?} in TRL"
                ));
            }
        }
    }
    Ok(())
}

/// Panicking form of [`check_summary`].
pub fn assert_summary_matches(
    name: &str,
    got: &[LogEntry],
    want: &Value,
    rtol: f64,
    keys: &[&str],
) {
    if let Err(e) = check_summary(name, got, want, rtol, keys) {
        panic!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(value: Value) -> LogEntry {
        value.as_object().unwrap().clone().into_iter().collect()
    }

    fn check(got: &[LogEntry], want: &Value) -> Result<(), String> {
        check_log_history("t", got, want, 1e-3, 1e-2, &["grad_norm"], &["num_tokens"])
    }

    #[test]
    fn lengths_must_be_equal_and_not_zero() {
        assert!(check_lengths("x", 0, 0).is_err());
        assert!(check_lengths("x", 2, 3).is_err());
        assert!(check_lengths("x", 3, 3).is_ok());
    }

    #[test]
    fn slices_fail_when_empty_unequal_or_apart() {
        assert!(check_close_slices("x", &[], &[], 1e-3, 0.0).is_err());
        assert!(check_close_slices("x", &[1.0], &[1.0, 2.0], 1e-3, 0.0).is_err());
        assert!(check_close_slices("x", &[1.0, 2.1], &[1.0, 2.0], 1e-3, 0.0).is_err());
        assert!(check_close_slices("x", &[1.0, 2.0001], &[1.0, 2.0], 1e-3, 0.0).is_ok());
    }

    #[test]
    fn an_empty_history_fails() {
        assert!(check(&[], &json!([])).is_err());
        // TRL logged nothing but a summary: still nothing to compare.
        assert!(check(&[], &json!([{"train_loss": 1.0, "step": 2}])).is_err());
    }

    #[test]
    fn a_missing_or_extra_step_fails() {
        let want = json!([{"loss": 1.0, "step": 1}, {"loss": 0.9, "step": 2}]);
        let one = vec![entry(json!({"loss": 1.0, "step": 1}))];
        assert!(check(&one, &want).is_err());
        let two = vec![
            entry(json!({"loss": 1.0, "step": 1})),
            entry(json!({"loss": 0.9, "step": 3})),
        ];
        assert!(check(&two, &want).is_err(), "step numbers differ");
    }

    #[test]
    fn values_are_compared_with_their_tolerance() {
        let want = json!([{"loss": 1.0, "grad_norm": 2.0, "num_tokens": 10.0, "step": 1}]);
        let good = vec![entry(
            json!({"loss": 1.0005, "grad_norm": 2.01, "num_tokens": 10.0, "step": 1}),
        )];
        assert_eq!(check(&good, &want), Ok(()));
        let bad_loss = vec![entry(
            json!({"loss": 1.01, "grad_norm": 2.0, "num_tokens": 10.0, "step": 1}),
        )];
        assert!(check(&bad_loss, &want).is_err());
        let bad_exact = vec![entry(
            json!({"loss": 1.0, "grad_norm": 2.0, "num_tokens": 11.0, "step": 1}),
        )];
        assert!(check(&bad_exact, &want).is_err());
        let missing = vec![entry(json!({"loss": 1.0, "num_tokens": 10.0, "step": 1}))];
        assert!(
            check(&missing, &want).is_err(),
            "grad_norm not logged by us"
        );
    }

    #[test]
    fn a_small_loss_is_not_swallowed_by_an_absolute_floor() {
        let want = json!([{"loss": 1e-3, "step": 1}]);
        let got = vec![entry(json!({"loss": 1.05e-3, "step": 1}))];
        assert!(check(&got, &want).is_err());
    }

    #[test]
    fn a_trl_metric_no_rule_covers_fails() {
        let want = json!([{"loss": 1.0, "learning_rate": 1e-3, "step": 1}]);
        let got = vec![entry(
            json!({"loss": 1.0, "learning_rate": 1e-3, "step": 1}),
        )];
        let err = check(&got, &want).unwrap_err();
        assert!(err.contains("learning_rate"), "{err}");
    }

    #[test]
    fn summaries_must_exist_and_match() {
        let want = json!([{"loss": 1.0, "step": 1}, {"train_loss": 1.0, "step": 1}]);
        let keys = ["train_loss"];
        let ours = vec![
            entry(json!({"loss": 1.0, "step": 1})),
            entry(json!({"train_loss": 1.0})),
        ];
        assert_eq!(check_summary("t", &ours, &want, 1e-3, &keys), Ok(()));
        assert!(
            check_summary("t", &ours[..1], &want, 1e-3, &keys).is_err(),
            "no summary here"
        );
        assert!(check_summary("t", &[], &want, 1e-3, &keys).is_err());
        assert!(check_summary("t", &ours, &json!([]), 1e-3, &keys).is_err());
        assert!(
            check_summary("t", &ours, &want, 1e-3, &["num_tokens"]).is_err(),
            "train_loss left out"
        );
        let off = vec![entry(json!({"train_loss": 1.1}))];
        assert!(check_summary("t", &off, &want, 1e-3, &keys).is_err());
    }
}
