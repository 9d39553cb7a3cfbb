//! What a failed lookup or download tells the user: hf-hub's errors taken apart (status, the
//! hub's error code, redacted detail) and turned into advice naming the repo and the file.

use hf_hub::api::sync::ApiError;

use super::auth::redact;
use super::files::{SINGLE_WEIGHTS, WEIGHTS_INDEX};
use super::snapshot::{DOWNLOAD_RETRIES, Snapshot};
use crate::Error;

impl Snapshot<'_> {
    pub(super) fn missing(&self, file: &str) -> Error {
        let (noun, id, revision) = (self.kind.noun(), self.id, self.revision);
        let message = match (&self.remote, &self.commit, &self.unreachable) {
            (None, _, Some(why)) => format!(
                "{noun} `{id}` (revision `{revision}`): the hub cannot be reached ({why}) and the \
                 cached snapshot in {} lacks `{file}`",
                self.repo_dir.display()
            ),
            (None, _, None) => format!(
                "{noun} `{id}` (revision `{revision}`) is not in the Hugging Face cache at {}: \
                 `{file}` is missing, and HF_HUB_OFFLINE is set so nothing is downloaded. Unset \
                 HF_HUB_OFFLINE to download it once, or pass a local folder",
                self.repo_dir.display()
            ),
            (Some(_), commit, _) => format!(
                "{noun} `{id}` at revision `{revision}` (commit {}) has no file `{file}`",
                commit.as_deref().unwrap_or("?")
            ),
        };
        self.error(message)
    }

    pub(super) fn missing_weights(&self) -> Error {
        if self.remote.is_none() {
            return self.missing(SINGLE_WEIGHTS);
        }
        let has_pytorch_weights = self
            .files()
            .unwrap_or_default()
            .iter()
            .any(|file| file.ends_with(".bin") || file.ends_with(".pt"));
        let advice = if has_pytorch_weights {
            "; it only has PyTorch pickle weights, and trl-rs reads safetensors: save the model with \
             `save_pretrained(..., safe_serialization=True)` or pick a repo that has them"
        } else {
            ""
        };
        self.error(format!(
            "model `{}` at revision `{}` has neither `{SINGLE_WEIGHTS}` nor `{WEIGHTS_INDEX}`{advice}",
            self.id, self.revision
        ))
    }

    /// The repo API failed: not found, private, gated, no such revision, or no network.
    pub(super) fn repo_error(&self, failure: Failure) -> Error {
        let endpoint = &self.options.endpoint;
        let what = format!("{} `{}`", self.kind.noun(), self.id);
        let advice = match (failure.status, failure.error_code.as_deref()) {
            (_, Some("GatedRepo")) | (Some(403), _) => format!(
                "{what} is gated: accept its conditions on its page on {endpoint}, then set HF_TOKEN"
            ),
            (_, Some("RevisionNotFound")) => {
                format!("{what} has no revision `{}`", self.revision)
            }
            (Some(401), _) if self.options.token.is_some() => format!(
                "{what} was not found on {endpoint}, or the token (HF_TOKEN or the token file) has \
                 no access to it"
            ),
            (Some(401 | 404), _) | (_, Some("RepoNotFound")) => format!(
                "{what} was not found on {endpoint}; if it is private or gated, set HF_TOKEN (or \
                 run `hf auth login`)"
            ),
            (None, _) => format!(
                "cannot reach {endpoint} for {what}; set HF_HUB_OFFLINE=1 to use only the cache"
            ),
            _ => format!("cannot look up {what} at revision `{}`", self.revision),
        };
        self.error(format!("{advice} ({})", failure.detail))
    }

    /// Downloading one file failed.
    pub(super) fn file_error(&self, file: &str, failure: Failure) -> Error {
        let what = format!("{} `{}`", self.kind.noun(), self.id);
        let message = match failure.status {
            Some(404) => format!(
                "`{file}` of {what} (revision `{}`) was not found on the hub",
                self.revision
            ),
            Some(401 | 403) => {
                format!(
                    "not allowed to download `{file}` of {what}: set HF_TOKEN to a token with access"
                )
            }
            _ => format!("could not download `{file}` of {what}"),
        };
        self.error(format!("{message} ({})", failure.detail))
    }

    /// Every message built here may quote a URL or a server's words: it leaves through this.
    pub(super) fn error(&self, message: String) -> Error {
        Error::Hub {
            message: redact(&message, self.options.token.as_deref()),
        }
    }
}

/// An hf-hub error, taken apart for messages: HTTP status, the hub's `X-Error-Code`, and text.
pub(super) struct Failure {
    pub(super) status: Option<u16>,
    pub(super) error_code: Option<String>,
    pub(super) detail: String,
}

pub(super) fn describe(error: ApiError) -> Failure {
    match error {
        ApiError::RequestError(request_error) => {
            let text = request_error.to_string();
            match (*request_error).into_response() {
                Some(response) => {
                    let status = response.status();
                    let server_says = response
                        .header("x-error-message")
                        .unwrap_or(response.status_text());
                    Failure {
                        status: Some(status),
                        error_code: response.header("x-error-code").map(str::to_owned),
                        detail: format!("HTTP {status} {server_says} from {}", response.get_url()),
                    }
                }
                None => Failure {
                    status: None,
                    error_code: None,
                    detail: format!("network error: {text}"),
                },
            }
        }
        ApiError::TooManyRetries(inner) => {
            let mut failure = describe(*inner);
            failure.detail = format!("{}, after {DOWNLOAD_RETRIES} retries", failure.detail);
            failure
        }
        ApiError::LockAcquisition(path) => Failure {
            status: None,
            error_code: None,
            detail: format!(
                "another process holds {}; wait for its download to end, or delete that file if \
                 none is running",
                path.display()
            ),
        },
        other => Failure {
            status: None,
            error_code: None,
            detail: other.to_string(),
        },
    }
}
