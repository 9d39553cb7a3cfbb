//! `--reward_funcs "cmd:<command line>"`: a reward computed by an external program, in any
//! language. The program is started once (no shell: the line is split as a POSIX shell would
//! split it) and kept running. Per batch it reads ONE JSON line on stdin, a list of objects
//! `{"prompt", "completion", "completion_ids", <every other dataset column>}`, and answers ONE
//! JSON line, a list of numbers where `null` means "no reward" (NaN, as in TRL).
//!
//! Every failure stops the run with an error naming the command and showing the end of its
//! stderr: the program exited or crashed, answered something that is not such a list, or gave
//! no answer within `reward_timeout` seconds (it is then killed). It is killed on drop too.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::{Result, RewardError};
use super::{RewardFunction, RewardInput};

/// The prefix that marks a `--reward_funcs` entry as a command.
pub const COMMAND_PREFIX: &str = "cmd:";
/// How many of the last stderr lines an error shows.
const STDERR_LINES: usize = 20;
/// Longest stderr line kept (longer ones are cut).
const STDERR_LINE_CHARS: usize = 500;
/// Programs that run a script: the reward is named after the script, not after them.
const INTERPRETERS: [&str; 12] = [
    "python", "python3", "uv", "sh", "bash", "zsh", "node", "deno", "ruby", "perl", "Rscript",
    "env",
];

/// The last lines a program wrote to stderr, filled by a background thread.
type StderrTail = Arc<Mutex<VecDeque<String>>>;

/// A running reward program.
pub struct CommandReward {
    command_line: String,
    name: String,
    child: Child,
    /// Lines to write to the program's stdin (a thread writes them, so a program that does
    /// not read cannot block the trainer past the timeout).
    to_stdin: Option<Sender<String>>,
    /// The program's stdout, line by line (`Err` when reading failed).
    from_stdout: Receiver<std::io::Result<String>>,
    stderr: StderrTail,
    stderr_reader: Option<JoinHandle<()>>,
    timeout: Duration,
    /// Set after a failure: the program is not asked again.
    failed: bool,
}

/// The reward's name in logs (`rewards/<name>/mean`): the file stem of the program, or of the
/// script or module an interpreter runs (`python3 -u judge.py` -> `judge`, `python3 -m
/// graders.math` -> `graders.math`, `./score.sh` -> `score`); inline code (`python3 -c ...`)
/// is named after the interpreter.
pub fn command_name(args: &[String]) -> String {
    let stem = |arg: &str| {
        Path::new(arg)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| arg.to_string())
    };
    let Some(program) = args.first() else {
        return "command".to_string();
    };
    let program_stem = stem(program);
    let is_interpreter = INTERPRETERS
        .iter()
        .any(|i| program_stem == *i || program_stem.starts_with("python"));
    if !is_interpreter {
        return program_stem;
    }
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            // Inline code (`python3 -c "..."`) has no file: the interpreter names it.
            "-c" | "-e" | "--eval" => return program_stem,
            "-m" => return rest.next().cloned().unwrap_or(program_stem),
            option if option.starts_with('-') => continue,
            script => return stem(script),
        }
    }
    program_stem
}

impl CommandReward {
    /// Starts `command_line` (without the `cmd:` prefix). `timeout` bounds each answer.
    pub fn spawn(command_line: &str, timeout: Duration) -> Result<Self> {
        let fail = |message: String| RewardError::Command {
            command: command_line.to_string(),
            message,
            stderr_tail: String::new(),
        };
        let args = shlex::split(command_line)
            .ok_or_else(|| fail("cannot split the command line (an unclosed quote?)".into()))?;
        let Some(program) = args.first() else {
            return Err(fail(
                "the command line is empty: write cmd:<program> [args...]".into(),
            ));
        };
        let mut child = Command::new(program)
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot start `{program}`: {e}")))?;
        let (stdin, stdout, stderr_pipe) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => return Err(fail("the program's pipes could not be opened".into())),
            };
        let stderr: StderrTail = Arc::default();
        Ok(CommandReward {
            command_line: command_line.to_string(),
            name: command_name(&args),
            to_stdin: Some(spawn_writer(stdin)),
            from_stdout: spawn_line_reader(stdout),
            stderr_reader: Some(spawn_stderr_reader(stderr_pipe, stderr.clone())),
            stderr,
            child,
            timeout,
            failed: false,
        })
    }

    /// The error for this command, with the end of its stderr; the program is stopped.
    fn failure(&mut self, message: String) -> RewardError {
        self.failed = true;
        self.stop();
        RewardError::Command {
            command: self.command_line.clone(),
            message,
            stderr_tail: self.stderr_tail(),
        }
    }

    /// Kills the program (if still running) and reaps it; its pipes close, so the reader
    /// threads end.
    fn stop(&mut self) {
        self.to_stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (briefly) for the stderr thread to drain what the program wrote, then joins its
    /// last lines.
    fn stderr_tail(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
        let lines = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// How the program ended, once its stdout closed: its exit status if it exits soon.
    fn exit_description(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return format!("the program exited ({status}) without answering");
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => return "the program closed its stdout without answering".to_string(),
            }
        }
    }

    /// Sends one batch and waits for its answer line.
    fn exchange(&mut self, request: String) -> Result<String> {
        let sent = self
            .to_stdin
            .as_ref()
            .is_some_and(|tx| tx.send(request).is_ok());
        if !sent {
            let why = self.exit_description();
            return Err(self.failure(why));
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_stdout.recv_timeout(left) {
                Ok(Ok(line)) if line.trim().is_empty() => continue,
                Ok(Ok(line)) => return Ok(line),
                Ok(Err(e)) => return Err(self.failure(format!("reading its stdout failed: {e}"))),
                Err(RecvTimeoutError::Timeout) => {
                    let message = format!(
                        "no answer within {} s (reward_timeout); the program was killed",
                        self.timeout.as_secs_f64()
                    );
                    return Err(self.failure(message));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let why = self.exit_description();
                    return Err(self.failure(why));
                }
            }
        }
    }
}

/// Reads the program's answer line: a JSON list of `expected` numbers or nulls.
pub fn parse_answer(line: &str, expected: usize) -> std::result::Result<Vec<Option<f64>>, String> {
    let shown: String = line.chars().take(200).collect();
    let value: Value = serde_json::from_str(line).map_err(|e| {
        format!(
            "its answer is not JSON ({e}): {shown:?}; answer one JSON line per batch (write logs \
             to stderr, not stdout)"
        )
    })?;
    let Value::Array(items) = value else {
        return Err(format!(
            "its answer is not a JSON list of numbers: {shown:?}"
        ));
    };
    if items.len() != expected {
        return Err(format!(
            "it answered {} rewards for {expected} completions (one number or null per completion)",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("item {i} ({n}) is not a float")),
            other => Err(format!(
                "item {i} of its answer is {other}, not a number or null"
            )),
        })
        .collect()
}

impl RewardFunction for CommandReward {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<Option<f64>>> {
        if self.failed {
            return Err(self.failure("the program failed on an earlier batch".into()));
        }
        // A line already waiting would be taken as this batch's answer: refuse it.
        if let Ok(Ok(extra)) = self.from_stdout.try_recv()
            && !extra.trim().is_empty()
        {
            let shown: String = extra.chars().take(200).collect();
            let message = format!(
                "it wrote a second line after its last answer: {shown:?}; answer exactly one JSON \
                 line per batch (write logs to stderr)"
            );
            return Err(self.failure(message));
        }
        let items: Vec<Value> = batch.iter().map(RewardInput::to_json).collect();
        let mut request = Value::Array(items).to_string();
        request.push('\n');
        let line = self.exchange(request)?;
        parse_answer(&line, batch.len()).map_err(|message| self.failure(message))
    }
}

impl Drop for CommandReward {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_writer(mut stdin: ChildStdin) -> Sender<String> {
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in rx {
            if stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush())
                .is_err()
            {
                return; // the program is gone: the stdout side reports it
            }
        }
    });
    tx
}

fn spawn_line_reader(stdout: impl Read + Send + 'static) -> Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let failed = line.is_err();
            if tx.send(line).is_err() || failed {
                return;
            }
        }
    });
    rx
}

fn spawn_stderr_reader(stderr: impl Read + Send + 'static, tail: StderrTail) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut buffer = Vec::new();
        while matches!(reader.read_until(b'\n', &mut buffer), Ok(n) if n > 0) {
            let line: String = String::from_utf8_lossy(&buffer)
                .trim_end()
                .chars()
                .take(STDERR_LINE_CHARS)
                .collect();
            buffer.clear();
            let mut lines = tail.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() == STDERR_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    })
}
