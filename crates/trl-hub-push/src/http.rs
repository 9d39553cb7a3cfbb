//! One HTTP call to the Hub or its storage, retried with backoff on a network failure or a
//! 429/5xx answer (as `huggingface_hub`'s `http_backoff`: 5 retries, waits of 1, 2, 4, 8, 8
//! seconds), and its failure turned into an [`Error`] that names what was being done, says
//! what the status means for the user, and carries the server's message with the token removed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result, redact};
use crate::settings::{DEFAULT_ENDPOINT, HubSettings};

/// How often and how patiently a failed call is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: usize,
    /// Wait before the first retry; doubled after each, up to `max_wait`.
    pub first_wait: Duration,
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(8),
        }
    }
}

/// What a request sends.
pub(crate) enum Body<'a> {
    /// No body (a GET).
    Empty,
    Json(&'a Value),
    /// NDJSON (the commit call).
    Ndjson(&'a [u8]),
    /// Bytes held in memory (a generated model card, one part of it).
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`, streamed (an LFS upload or one of its parts).
    File {
        path: &'a PathBuf,
        offset: u64,
        len: u64,
    },
}

/// One request: where, what, and whether it carries the token and may be retried.
pub(crate) struct Call<'a> {
    pub method: &'static str,
    pub url: String,
    pub body: Body<'a>,
    /// Send `Authorization: Bearer <token>`: only to the Hub itself, never to the storage
    /// URLs the LFS batch call hands out.
    pub auth: bool,
    /// The git-lfs media type for Accept/Content-Type (the LFS batch and completion calls).
    pub lfs: bool,
    pub retry: bool,
    /// What was being done, for the error: "uploading model.safetensors".
    pub what: String,
}

/// A successful answer.
pub(crate) struct Reply {
    pub etag: Option<String>,
    pub text: String,
}

impl Reply {
    /// The answer as JSON, or a protocol error naming the call.
    pub fn json(&self, what: &str) -> Result<Value> {
        serde_json::from_str(&self.text).map_err(|e| Error::Protocol {
            what: what.to_owned(),
            message: format!("the answer is not JSON ({e})"),
        })
    }
}

/// The blocking HTTP client of a push: settings, agent and retry policy.
pub(crate) struct Client {
    agent: ureq::Agent,
    pub settings: HubSettings,
    retry: RetryPolicy,
}

impl Client {
    pub fn new(settings: HubSettings, retry: RetryPolicy) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(300))
            .try_proxy_from_env(true)
            .user_agent(concat!("trl-rs/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent,
            settings,
            retry,
        }
    }

    /// `{endpoint}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.endpoint)
    }

    /// Sends `call`, retrying as the policy says; any error status is an [`Error`].
    pub fn send(&self, call: &Call) -> Result<Reply> {
        let attempts = if call.retry {
            self.retry.attempts.max(1)
        } else {
            1
        };
        let mut wait = self.retry.first_wait;
        let mut attempt = 1;
        loop {
            let last = attempt == attempts;
            match self.send_once(call) {
                Ok(reply) => return Ok(reply),
                Err(ureq::Error::Status(status, response)) if last || !retried_status(status) => {
                    return Err(self.status_error(call, status, response, attempt));
                }
                Err(ureq::Error::Transport(transport)) if last => {
                    return Err(Error::Network {
                        what: call.what.clone(),
                        attempts: attempt,
                        message: redact(&transport.to_string(), &self.settings.token),
                    });
                }
                Err(_) => {}
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(self.retry.max_wait);
            attempt += 1;
        }
    }

    /// A URL the Hub handed out, moved onto `HF_ENDPOINT` when it names huggingface.co and
    /// another endpoint is set (a mirror), as `huggingface_hub`'s `fix_hf_endpoint_in_url`.
    fn on_endpoint(&self, url: &str) -> String {
        match url.strip_prefix(DEFAULT_ENDPOINT) {
            Some(rest) if self.settings.endpoint != DEFAULT_ENDPOINT && rest.starts_with('/') => {
                format!("{}{rest}", self.settings.endpoint)
            }
            _ => url.to_owned(),
        }
    }

    // ureq's own error type, kept for one call: its size does not matter here.
    #[allow(clippy::result_large_err)]
    fn send_once(&self, call: &Call) -> std::result::Result<Reply, ureq::Error> {
        let url = self.on_endpoint(&call.url);
        let mut request = self.agent.request(call.method, &url);
        // The token goes to the Hub's own host only, whatever URL an answer hands out.
        if call.auth && url.starts_with(&format!("{}/", self.settings.endpoint)) {
            request = request.set("authorization", &format!("Bearer {}", self.settings.token));
        }
        if call.lfs {
            request = request
                .set("accept", "application/vnd.git-lfs+json")
                .set("content-type", "application/vnd.git-lfs+json");
        }
        let response = match &call.body {
            Body::Empty => request.call()?,
            Body::Json(value) => {
                let bytes = serde_json::to_vec(value).unwrap_or_default();
                if !call.lfs {
                    request = request.set("content-type", "application/json");
                }
                request.send_bytes(&bytes)?
            }
            Body::Bytes(bytes) => request.send_bytes(bytes)?,
            Body::Ndjson(bytes) => request
                .set("content-type", "application/x-ndjson")
                .send_bytes(bytes)?,
            Body::File { path, offset, len } => {
                let reader = open_slice(path, *offset, *len).map_err(|e| {
                    ureq::Error::from(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", path.display()),
                    ))
                })?;
                request
                    .set("content-length", &len.to_string())
                    .send(reader)?
            }
        };
        let etag = response.header("etag").map(str::to_owned);
        let text = response.into_string().unwrap_or_default();
        Ok(Reply { etag, text })
    }

    fn status_error(
        &self,
        call: &Call,
        status: u16,
        response: ureq::Response,
        attempts: usize,
    ) -> Error {
        let header_message = response.header("x-error-message").map(str::to_owned);
        let body = response.into_string().unwrap_or_default();
        let message = header_message
            .or_else(|| {
                let json: Value = serde_json::from_str(&body).ok()?;
                json.get("error").map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            })
            .unwrap_or_else(|| body.chars().take(300).collect());
        let message = redact(message.trim(), &self.settings.token);
        let mut hint = status_hint(status).to_owned();
        if attempts > 1 {
            hint.push_str(&format!(" after {attempts} attempts"));
        }
        Error::Status {
            what: call.what.clone(),
            status,
            hint,
            message: if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            },
        }
    }
}

/// Statuses worth another try: rate limiting and server-side failures.
fn retried_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// What an error status means for someone pushing.
fn status_hint(status: u16) -> &'static str {
    match status {
        401 => "the Hub refused the token; check --hub_token, HF_TOKEN or `hf auth login`",
        403 => {
            "the token may not write here; a write token (and membership of the organization) is needed"
        }
        404 => "not found: the repo does not exist or the token cannot see it",
        429 => "rate limited by the Hub",
        500..=599 => "the server failed",
        _ => "the Hub refused the request",
    }
}

fn open_slice(path: &PathBuf, offset: u64, len: u64) -> std::io::Result<impl Read + use<>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok(file.take(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str) -> Client {
        let settings = HubSettings {
            endpoint: endpoint.into(),
            token: "t".into(),
        };
        Client::new(settings, RetryPolicy::default())
    }

    #[test]
    fn hub_urls_move_onto_a_mirror_endpoint() {
        let mirror = client("http://127.0.0.1:8080");
        let verify = "https://huggingface.co/org/m.git/info/lfs/objects/verify";
        assert_eq!(
            mirror.on_endpoint(verify),
            "http://127.0.0.1:8080/org/m.git/info/lfs/objects/verify"
        );
        let storage = "https://s3.amazonaws.com/bucket/oid?sig=1";
        assert_eq!(mirror.on_endpoint(storage), storage);
        assert_eq!(client(DEFAULT_ENDPOINT).on_endpoint(verify), verify);
    }

    #[test]
    fn statuses_retried_are_rate_limits_and_server_failures() {
        assert!([429, 500, 502, 503, 504].into_iter().all(retried_status));
        assert!(
            ![400, 401, 403, 404, 409, 501]
                .into_iter()
                .any(retried_status)
        );
    }
}
