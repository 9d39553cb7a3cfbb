//! Comparing the evaluation entries of `log_history` (those with `eval_loss`) with TRL's:
//! the same evaluations at the same steps, the same keys on both sides (so a metric named
//! differently fails), `eval_loss` within the loss tolerance, the counts in `exact_keys`
//! exactly, wall-clock values (null in the fixtures) only present and positive, every other
//! value within the metric tolerance (plus a 1e-4 absolute floor near zero).

use serde_json::Value;

use super::compare::check_lengths;
use crate::train::state::LogEntry;

/// Rows `[start, end)` of an eval case's dataset, the range named by `key` (`train_rows` or
/// `eval_rows`, as reference/eval_reference.py slices them).
pub fn read_case_row_range(case: &Value, key: &str) -> Vec<serde_json::Map<String, Value>> {
    let file = case["dataset"]
        .as_str()
        .unwrap_or_else(|| panic!("case {}: no `dataset`", case["case"]));
    let all = super::read_jsonl(file);
    let range: Vec<usize> = serde_json::from_value(case[key].clone())
        .unwrap_or_else(|e| panic!("case {}: `{key}`: {e}", case["case"]));
    all[range[0]..range[1]].to_vec()
}

const WALL_CLOCK: [&str; 3] = [
    "eval_runtime",
    "eval_samples_per_second",
    "eval_steps_per_second",
];

/// `Ok` when our evaluation entries match TRL's (see the module doc).
pub fn check_eval_history(
    name: &str,
    got: &[LogEntry],
    want: &Value,
    loss_rtol: f64,
    metric_rtol: f64,
    exact_keys: &[&str],
) -> Result<(), String> {
    let want: Vec<&serde_json::Map<String, Value>> = want
        .as_array()
        .ok_or_else(|| format!("{name}: TRL log_history is not a list"))?
        .iter()
        .filter_map(Value::as_object)
        .filter(|e| e.contains_key("eval_loss"))
        .collect();
    let got: Vec<&LogEntry> = got.iter().filter(|e| e.contains_key("eval_loss")).collect();
    check_lengths(&format!("{name}: evaluations"), got.len(), want.len())?;
    for (got, want) in got.iter().zip(&want) {
        let at = format!("{name} evaluation at step {}", want["step"]);
        let mut ours: Vec<&String> = got.keys().collect();
        let mut theirs: Vec<&String> = want.keys().collect();
        ours.sort();
        theirs.sort();
        if ours != theirs {
            return Err(format!("{at}: keys {ours:?} here, {theirs:?} in TRL"));
        }
        for (key, expected) in want.iter() {
            let value = got[key].as_f64();
            check_value(
                &at,
                key,
                value,
                expected,
                loss_rtol,
                metric_rtol,
                exact_keys,
            )?;
        }
    }
    Ok(())
}

fn check_value(
    at: &str,
    key: &str,
    ours: Option<f64>,
    expected: &Value,
    loss_rtol: f64,
    metric_rtol: f64,
    exact_keys: &[&str],
) -> Result<(), String> {
    let ours = ours.ok_or_else(|| format!("{at}: our `{key}` is not a number"))?;
    if WALL_CLOCK.contains(&key) {
        return if ours > 0.0 {
            Ok(())
        } else {
            Err(format!("{at}: {key} {ours} is not a positive time/rate"))
        };
    }
    let expected = expected
        .as_f64()
        .ok_or_else(|| format!("{at}: TRL's `{key}` is not a number"))?;
    // The loss's floor is a few f32 roundings of an O(1) sum: a loss that is zero up to
    // rounding (RLOO's at the first step, whose advantages cancel) differs between two f32
    // summation orders by about 1e-7.
    let (rtol, floor) = if key == "eval_loss" {
        (loss_rtol, 1e-6)
    } else if exact_keys.contains(&key) || key == "step" {
        (0.0, 0.0)
    } else {
        (metric_rtol, 1e-4)
    };
    if (ours - expected).abs() <= rtol * expected.abs() + floor {
        Ok(())
    } else {
        Err(format!("{at}: {key} {ours} vs TRL {expected}"))
    }
}

/// Panicking form of [`check_eval_history`].
pub fn assert_eval_history_matches(
    name: &str,
    got: &[LogEntry],
    want: &Value,
    loss_rtol: f64,
    metric_rtol: f64,
    exact_keys: &[&str],
) {
    if let Err(e) = check_eval_history(name, got, want, loss_rtol, metric_rtol, exact_keys) {
        panic!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(value: Value) -> LogEntry {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn names_values_and_counts_must_match() {
        let want = json!([
            {"loss": 1.0, "step": 1},
            {"eval_loss": 2.0, "eval_runtime": null, "eval_num_tokens": 10.0, "epoch": 0.5, "step": 1}
        ]);
        let good = entry(
            json!({"eval_loss": 2.0001, "eval_runtime": 0.1, "eval_num_tokens": 10.0, "epoch": 0.5, "step": 1}),
        );
        assert!(
            check_eval_history(
                "t",
                std::slice::from_ref(&good),
                &want,
                1e-3,
                1e-2,
                &["eval_num_tokens"]
            )
            .is_ok()
        );
        let mut renamed = good.clone();
        renamed.insert("eval_extra".into(), json!(1.0));
        assert!(check_eval_history("t", &[renamed], &want, 1e-3, 1e-2, &[]).is_err());
        let mut off = good.clone();
        off.insert("eval_num_tokens".into(), json!(11.0));
        assert!(check_eval_history("t", &[off], &want, 1e-3, 1e-2, &["eval_num_tokens"]).is_err());
        assert!(check_eval_history("t", &[], &want, 1e-3, 1e-2, &[]).is_err());
    }
}
