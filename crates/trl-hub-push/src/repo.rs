//! The repo a push goes to: its id checked as the Hub checks it, the user's namespace for an
//! id without one (`GET /api/whoami-v2`), and creating it (`POST /api/repos/create`; a 409
//! means it exists already, which is fine: pushing again updates it).

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::http::{Body, Call, Client};

/// Checks `org/name` (or `name`) as the Hub does: at most one `/`, each part 1-96 of
/// letters, digits, `-`, `_`, `.`, not starting or ending with `-`/`.`, no `--` or `..`.
pub fn check_repo_id(id: &str) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::RepoId {
            id: id.to_owned(),
            reason: reason.to_owned(),
        })
    };
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() > 2 {
        return fail("expected `namespace/name` (one `/` at most)");
    }
    for part in parts {
        if part.is_empty() || part.len() > 96 {
            return fail("each part must have 1 to 96 characters");
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return fail("only letters, digits, `-`, `_` and `.` are allowed");
        }
        if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
            return fail("a part cannot start or end with `-` or `.`");
        }
        if part.contains("--") || part.contains("..") {
            return fail("`--` and `..` are not allowed");
        }
    }
    Ok(())
}

/// `namespace/name`: `id` as given when it has a namespace, else under the token's user.
pub(crate) fn full_repo_id(client: &Client, id: &str) -> Result<String> {
    check_repo_id(id)?;
    if id.contains('/') {
        return Ok(id.to_owned());
    }
    let what = "finding the token's user name (GET /api/whoami-v2)";
    let reply = client.send(&Call {
        method: "GET",
        url: client.url("/api/whoami-v2"),
        body: Body::Empty,
        auth: true,
        lfs: false,
        retry: true,
        what: what.into(),
    })?;
    let user = reply.json(what)?;
    match user.get("name").and_then(Value::as_str) {
        Some(name) => Ok(format!("{name}/{id}")),
        None => Err(Error::Protocol {
            what: what.into(),
            message: "no `name` in the answer".into(),
        }),
    }
}

/// Creates the model repo `repo_id` (`namespace/name`); `private` sets its visibility when
/// given (the Hub's default otherwise). Returns whether it was created (false: it existed).
pub(crate) fn create_repo(client: &Client, repo_id: &str, private: Option<bool>) -> Result<bool> {
    let (organization, name) = repo_id.split_once('/').unwrap_or(("", repo_id));
    let mut payload = json!({"name": name, "organization": organization});
    if let Some(private) = private {
        payload["visibility"] = Value::from(if private { "private" } else { "public" });
    }
    let call = Call {
        method: "POST",
        url: client.url("/api/repos/create"),
        body: Body::Json(&payload),
        auth: true,
        lfs: false,
        retry: true,
        what: format!("creating the repo {repo_id}"),
    };
    match client.send(&call) {
        Ok(_) => Ok(true),
        Err(Error::Status { status: 409, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_checked_as_the_hub_does() {
        for ok in ["org/name", "name", "Org_1/my-model.v2"] {
            assert!(check_repo_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a/b/c",
            "/name",
            "org/",
            "org/na me",
            "org/-x",
            "org/a--b",
            "org/x.",
        ] {
            let err = check_repo_id(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
