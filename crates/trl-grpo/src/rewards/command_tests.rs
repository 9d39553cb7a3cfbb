//! The external command reward against small Python programs written at test time: one that
//! works, and one for each way a program can fail.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, json};

use super::command::{CommandReward, command_name, parse_answer};
use super::input::{Content, RewardInput};
use super::{RewardContext, RewardFunction, parse_reward_func};

/// Writes `body` (after a shared prelude that reads one JSON line per batch) to `dir/name.py`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.py"));
    let prelude = "import json, sys, time\nbatches = 0\nfor line in sys.stdin:\n    items = json.loads(line)\n    batches += 1\n";
    let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(&path, format!("{prelude}{indented}")).expect("write script");
    path
}

fn spawn(path: &Path, timeout_s: f64) -> CommandReward {
    CommandReward::spawn(
        &format!("python3 '{}'", path.display()),
        Duration::from_secs_f64(timeout_s),
    )
    .expect("spawn")
}

fn batch() -> Vec<RewardInput> {
    let mut skipped = Map::new();
    skipped.insert("skip".into(), json!(true));
    vec![
        RewardInput::new(
            Content::Text("Q1".into()),
            Content::Text(" abc".into()),
            vec![1, 2],
            &Map::new(),
        ),
        RewardInput::new(
            Content::Messages(vec![json!({"role": "user", "content": "Q2"})]),
            Content::Messages(vec![json!({"role": "assistant", "content": "hello"})]),
            vec![3],
            &skipped,
        ),
    ]
}

#[test]
fn a_good_program_is_asked_once_per_batch_and_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Reward: completion length (text) or message count, plus 100 per earlier batch; null when
    // the row's `skip` column is set. It also logs to stderr, which must not matter.
    let path = script(
        dir.path(),
        "length_judge",
        "print('scoring', len(items), file=sys.stderr)\n\
         out = [None if it.get('skip') else float(len(it['completion'])) + 100 * (batches - 1) + sum(it['completion_ids']) for it in items]\n\
         print(json.dumps(out), flush=True)",
    );
    let mut reward = spawn(&path, 10.0);
    assert_eq!(reward.name(), "length_judge");
    assert_eq!(
        reward.score(&batch()).expect("first batch"),
        vec![Some(4.0 + 3.0), None]
    );
    assert_eq!(
        reward.score(&batch()).expect("second batch"),
        vec![Some(107.0), None]
    );
}

#[test]
fn a_crash_is_an_error_with_the_exit_status_and_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = script(
        dir.path(),
        "crasher",
        "print('boom: cannot score this', file=sys.stderr)\nsys.exit(3)",
    );
    let error = spawn(&path, 10.0).score(&batch()).unwrap_err().to_string();
    assert!(error.contains("crasher.py"), "{error}");
    assert!(error.contains("exit") && error.contains('3'), "{error}");
    assert!(error.contains("boom: cannot score this"), "{error}");
}

#[test]
fn a_hanging_program_times_out_and_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = script(
        dir.path(),
        "sleeper",
        "print('thinking...', file=sys.stderr, flush=True)\ntime.sleep(60)",
    );
    let mut reward = spawn(&path, 1.0);
    let start = Instant::now();
    let error = reward.score(&batch()).unwrap_err().to_string();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        error.contains("no answer within 1 s") && error.contains("killed"),
        "{error}"
    );
    assert!(error.contains("thinking..."), "{error}");
    // The program is gone: a later batch fails at once instead of waiting again.
    assert!(reward.score(&batch()).is_err());
}

#[test]
fn garbage_wrong_lengths_and_non_numbers_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("garbage", "print('hello there', flush=True)", "not JSON"),
        (
            "short",
            "print(json.dumps([1.0]), flush=True)",
            "answered 1 rewards for 2 completions",
        ),
        (
            "strings",
            "print(json.dumps(['a', 1]), flush=True)",
            "item 0",
        ),
        (
            "object",
            "print(json.dumps({'r': 1}), flush=True)",
            "not a JSON list",
        ),
    ];
    for (name, body, expected) in cases {
        let path = script(dir.path(), name, body);
        let error = spawn(&path, 10.0).score(&batch()).unwrap_err().to_string();
        assert!(
            error.contains(expected) && error.contains(name),
            "{name}: {error}"
        );
    }
}

#[test]
fn a_second_answer_line_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = script(
        dir.path(),
        "chatty",
        "print(json.dumps([1, 2]), flush=True)\nprint('done!', flush=True)",
    );
    let mut reward = spawn(&path, 10.0);
    assert_eq!(
        reward.score(&batch()).expect("first answer"),
        vec![Some(1.0), Some(2.0)]
    );
    std::thread::sleep(Duration::from_millis(500)); // let the extra line arrive
    let error = reward.score(&batch()).unwrap_err().to_string();
    assert!(
        error.contains("second line") && error.contains("done!"),
        "{error}"
    );
}

#[test]
fn a_missing_program_or_bad_line_is_an_error_naming_it() {
    let ctx = RewardContext::new(Default::default());
    let error = parse_reward_func("cmd:/no/such/judge --fast", &ctx)
        .err()
        .expect("error")
        .to_string();
    assert!(
        error.contains("/no/such/judge") && error.contains("cannot start"),
        "{error}"
    );
    let error = parse_reward_func("cmd:python3 'unclosed", &ctx)
        .err()
        .expect("error")
        .to_string();
    assert!(error.contains("unclosed quote"), "{error}");
    let error = parse_reward_func("cmd:", &ctx)
        .err()
        .expect("error")
        .to_string();
    assert!(error.contains("empty"), "{error}");
}

#[test]
fn names_and_answers() {
    let args = |line: &str| shlex::split(line).unwrap_or_default();
    assert_eq!(command_name(&args("python3 -u /x/judge.py --k 3")), "judge");
    assert_eq!(command_name(&args("./score.sh")), "score");
    assert_eq!(command_name(&args("python3 -c 'print(1.5)'")), "python3");
    assert_eq!(
        command_name(&args("python3 -m graders.math")),
        "graders.math"
    );
    assert_eq!(command_name(&args("/usr/bin/my-grader run")), "my-grader");
    assert_eq!(
        parse_answer("[1, null, 2.5]", 3),
        Ok(vec![Some(1.0), None, Some(2.5)])
    );
    assert!(parse_answer("[1, true]", 2).is_err());
}
