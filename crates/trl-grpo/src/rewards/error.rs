//! What can go wrong building or running a reward function.

/// Errors of the reward functions; each says which function (or command) failed and why.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// A `--reward_funcs` entry that is no built-in name, no model folder and no `cmd:`.
    #[error(
        "unknown reward function '{spec}': expected one of {known}, a reward model folder (from \
         `trl reward`) or hub id, or `cmd:<command line>` (a reward written in Python, such as \
         my_lib.rewards.my_reward, runs as a cmd: program reading and writing JSON lines)"
    )]
    Unknown { spec: String, known: String },
    /// A parameter of a built-in that TRL would refuse.
    #[error("{function}: {message}")]
    Params { function: String, message: String },
    /// A row the function cannot score (a missing column, a completion of the wrong shape);
    /// `row` is the 0-based index in the scored batch.
    #[error("reward function '{function}', completion {row}: {message}")]
    Input {
        function: String,
        row: usize,
        message: String,
    },
    /// The external reward command failed; `stderr_tail` is the end of what it wrote to stderr.
    #[error("reward command `{command}`: {message}{}", stderr_section(.stderr_tail))]
    Command {
        command: String,
        message: String,
        stderr_tail: String,
    },
    /// Loading or running the reward model.
    #[error("reward model {path}: {source}")]
    Model {
        path: String,
        #[source]
        source: trl_core::Error,
    },
}

fn stderr_section(tail: &str) -> String {
    if tail.trim().is_empty() {
        "\n(its stderr was empty)".to_string()
    } else {
        format!("\nlast lines of its stderr:\n{}", tail.trim_end())
    }
}

/// Results of this module.
pub type Result<T> = std::result::Result<T, RewardError>;

/// For trainers whose errors are core's: a reward failure stops the run as a config error on
/// `reward_funcs`, its message (command, stderr tail) intact.
impl From<RewardError> for trl_core::Error {
    fn from(error: RewardError) -> Self {
        trl_core::Error::Reward {
            message: error.to_string(),
        }
    }
}

impl RewardError {
    pub(crate) fn input(function: &str, row: usize, message: impl Into<String>) -> Self {
        RewardError::Input {
            function: function.to_string(),
            row,
            message: message.into(),
        }
    }
}
