//! End-to-end tests of evaluation during `trl grpo` / `trl rloo` (TRL 1.16's eval mode): eval
//! prompts from `--eval_dataset_name`, `num_generations_eval` completions per prompt,
//! `eval_*` metrics in `log_history` computed from the completions evaluation generated (read
//! back from `eval_completions.jsonl`), and training left unchanged by evaluating.

mod common;

use std::path::{Path, PathBuf};

use common::{SHARE_REWARD, eval_entries, json_lines, logged_steps, root, text, trl, write_script};
use serde_json::Value;

const MODEL: &str = common::ONLINE_MODEL;

/// Eval prompts: 5 rows of the bundled prompt-only data the train split also holds (what
/// matters is their count, 5, which 4-completion eval batches do not divide).
fn eval_file(dir: &Path) -> PathBuf {
    let rows = std::fs::read_to_string(root().join("datasets/prompt_only.jsonl")).unwrap();
    let path = dir.join("eval.jsonl");
    let picked: Vec<&str> = rows.lines().skip(40).take(5).collect();
    std::fs::write(&path, picked.join("\n") + "\n").unwrap();
    path
}

fn run_args(command: &str, dir: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let reward = write_script(dir, "share.py", SHARE_REWARD);
    common::online_args(command, &reward, out, extra)
}

/// `--eval_dataset_name` (5 prompts), eval batches of 4 completions, evaluation every
/// `eval_steps` steps.
fn eval_keys(eval: &Path, eval_steps: &str) -> Vec<String> {
    [
        "--eval_dataset_name",
        &eval.to_string_lossy(),
        "--eval_strategy",
        "steps",
        "--eval_steps",
        eval_steps,
        "--per_device_eval_batch_size",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn eval_completions(out: &Path) -> Vec<Value> {
    json_lines(&std::fs::read_to_string(out.join("eval_completions.jsonl")).unwrap())
}

fn f(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// TRL's `log`: the mean over eval batches of each batch's value.
fn mean_of_batches(records: &[&Value], batch: usize, value: impl Fn(&Value) -> f64) -> f64 {
    let means: Vec<f64> = records
        .chunks(batch)
        .map(|b| b.iter().map(|r| value(r)).sum::<f64>() / b.len() as f64)
        .collect();
    means.iter().sum::<f64>() / means.len() as f64
}

fn assert_close(name: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{name}: logged {got}, from the completions {want}"
    );
}

#[test]
fn grpo_eval_logs_trl_metrics_computed_from_the_eval_completions() {
    let dir = tempfile::tempdir().unwrap();
    let eval = eval_file(dir.path());
    let out = dir.path().join("run");
    let mut extra: Vec<String> = eval_keys(&eval, "2");
    extra.extend(
        [
            "--max_steps",
            "4",
            "--eval_on_start",
            "true",
            "--num_generations_eval",
            "2",
            "--log_completions",
            "true",
            "--beta",
            "0.04",
        ]
        .map(String::from),
    );
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let run = trl(&run_args("grpo", dir.path(), &out, &extra));
    assert!(run.status.success(), "{}", text(&run));
    let evals = eval_entries(&out);
    let steps: Vec<u64> = evals.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 2, 4], "eval_on_start, then every 2 steps");
    let records = eval_completions(&out);
    let train = logged_steps(&out);
    for entry in &evals {
        let step = entry["step"].as_u64().unwrap();
        for name in [
            "eval_loss",
            "eval_reward_std",
            "eval_rewards/share/std",
            "eval_frac_reward_zero_std",
            "eval_completions/min_length",
            "eval_completions/max_length",
            "eval_completions/clipped_ratio",
            "eval_completions/mean_terminated_length",
            "eval_entropy",
            "eval_kl",
            "eval_clip_ratio/region_mean",
            "eval_num_tokens",
            "eval_runtime",
            "eval_samples_per_second",
            "eval_steps_per_second",
        ] {
            assert!(
                entry[name].as_f64().is_some_and(f64::is_finite),
                "step {step}: {name} in {entry}"
            );
        }
        // 5 prompts x num_generations_eval 2, each prompt's completions side by side.
        let at_step: Vec<&Value> = records.iter().filter(|r| r["step"] == step).collect();
        assert_eq!(at_step.len(), 10, "step {step}");
        for pair in at_step.chunks(2) {
            assert_eq!(pair[0]["prompt"], pair[1]["prompt"], "step {step}");
        }
        // Batches of 4 completions (4, 4, 2): every metric is the mean of batch values.
        let reward = mean_of_batches(&at_step, 4, |r| f(&r["reward"]));
        assert_close("eval_reward", f(&entry["eval_reward"]), reward);
        let share = mean_of_batches(&at_step, 4, |r| f(&r["rewards"]["share"]));
        assert_close(
            "eval_rewards/share/mean",
            f(&entry["eval_rewards/share/mean"]),
            share,
        );
        let length = mean_of_batches(&at_step, 4, |r| {
            r["completion_ids"].as_array().unwrap().len() as f64
        });
        assert_close(
            "eval_completions/mean_length",
            f(&entry["eval_completions/mean_length"]),
            length,
        );
        // num_tokens: what training consumed so far (eval adds nothing).
        let trained = train
            .iter()
            .find(|t| t["step"].as_u64() == Some(step))
            .map_or(0.0, |t| f(&t["num_tokens"]));
        assert_eq!(f(&entry["eval_num_tokens"]), trained, "step {step}");
    }
    // The same prompts in the same (seeded) order at every evaluation, as TRL's eval sampler.
    let prompts = |step: u64| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r["step"] == step)
            .map(|r| r["prompt"].clone())
            .collect()
    };
    assert_eq!(prompts(0), prompts(4));
}

#[test]
fn evaluating_leaves_training_unchanged_and_num_generations_eval_defaults_to_num_generations() {
    let dir = tempfile::tempdir().unwrap();
    let eval = eval_file(dir.path());
    let plain = dir.path().join("plain");
    let evaluated = dir.path().join("evaluated");
    let run = trl(&run_args("grpo", dir.path(), &plain, &["--max_steps", "3"]));
    assert!(run.status.success(), "{}", text(&run));
    let mut extra = eval_keys(&eval, "1");
    extra.extend(["--max_steps", "3", "--log_completions", "true"].map(String::from));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let run = trl(&run_args("grpo", dir.path(), &evaluated, &extra));
    assert!(run.status.success(), "{}", text(&run));
    let train = |out: &Path| -> Vec<(Value, Value)> {
        logged_steps(out)
            .into_iter()
            .map(|e| (e["loss"].clone(), e["grad_norm"].clone()))
            .collect()
    };
    assert_eq!(train(&plain), train(&evaluated), "bit for bit");
    assert_eq!(eval_entries(&evaluated).len(), 3);
    // num_generations_eval unset: num_generations (4) completions per eval prompt.
    let at_one = eval_completions(&evaluated)
        .into_iter()
        .filter(|r| r["step"] == 1)
        .count();
    assert_eq!(at_one, 5 * 4);
}

#[test]
fn rloo_evaluates_with_its_own_advantages_and_kl() {
    let dir = tempfile::tempdir().unwrap();
    let eval = eval_file(dir.path());
    let out = dir.path().join("run");
    let mut extra = eval_keys(&eval, "2");
    extra.extend(["--max_steps", "2", "--num_generations_eval", "4"].map(String::from));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let run = trl(&run_args("rloo", dir.path(), &out, &extra));
    assert!(run.status.success(), "{}", text(&run));
    let evals = eval_entries(&out);
    assert_eq!(evals.len(), 1);
    for name in [
        "eval_loss",
        "eval_kl",
        "eval_reward",
        "eval_rewards/share/mean",
        "eval_entropy",
    ] {
        assert!(
            evals[0][name].as_f64().is_some_and(f64::is_finite),
            "{name}: {}",
            evals[0]
        );
    }
}

#[test]
fn eval_generations_that_cannot_fill_eval_batches_are_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let eval = eval_file(dir.path());
    let out = dir.path().join("run");
    for (value, wanted) in [
        ("3", "per_device_eval_batch_size"),
        ("0", "num_generations_eval"),
    ] {
        let mut extra = eval_keys(&eval, "2");
        extra.extend(["--num_generations_eval", value].map(String::from));
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let run = trl(&run_args("grpo", dir.path(), &out, &extra));
        assert!(!run.status.success());
        assert!(text(&run).contains(wanted), "{value}: {}", text(&run));
        assert!(!out.exists(), "nothing written");
    }
    // PPO still has no evaluation.
    let run = trl(&[
        "ppo",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/prompt_only.jsonl",
        "--eval_strategy",
        "steps",
        "--output_dir",
        &out.to_string_lossy(),
    ]);
    assert!(!run.status.success());
    assert!(text(&run).contains("eval"), "{}", text(&run));
}
