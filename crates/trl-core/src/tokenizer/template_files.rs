//! Where a tokenizer folder keeps its chat templates, read and written as transformers 5.x does.
//!
//! Loading (`_from_pretrained`, tokenization_utils_base.py): `chat_template.jinja` is the default template
//! and `chat_templates/<name>.jinja` are named ones; those files take priority over the
//! `chat_template` key of `tokenizer_config.json`, which is either a string or a list of
//! `{"name": ..., "template": ...}`. Choosing (`get_chat_template`): with several templates, `tool_use`
//! when tools are given and it exists, else `default`.
//! Saving (`save_chat_templates`, `save_jinja_files=True` by default): the default template goes to
//! `chat_template.jinja`, the others to `chat_templates/<name>.jinja`, and the config loses its
//! `chat_template` key.

use std::fs;
use std::path::Path;

use serde_json::{Map, Value as Json};

use crate::{Error, Result};

const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
const CHAT_TEMPLATE_DIR: &str = "chat_templates";

/// The chat template(s) of a tokenizer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum ChatTemplates {
    /// The tokenizer has no chat template.
    #[default]
    None,
    /// One template.
    Single(String),
    /// Several named templates (`default`, `tool_use`, `rag`, ...), sorted by name.
    Named(Vec<(String, String)>),
}

impl ChatTemplates {
    /// Reads the templates of a tokenizer folder whose `tokenizer_config.json` is `config`.
    pub(crate) fn load(dir: &Path, config: &Map<String, Json>) -> Result<Self> {
        let mut named = Vec::new();
        let default_file = dir.join(CHAT_TEMPLATE_FILE);
        if default_file.is_file() {
            named.push(("default".to_string(), read(&default_file)?));
        }
        let template_dir = dir.join(CHAT_TEMPLATE_DIR);
        if template_dir.is_dir() {
            let entries = fs::read_dir(&template_dir).map_err(|e| Error::io(&template_dir, e))?;
            let mut files = Vec::new();
            for entry in entries {
                let path = entry.map_err(|e| Error::io(&template_dir, e))?.path();
                if let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".jinja"))
                {
                    files.push((name.to_string(), path.clone()));
                }
            }
            files.sort();
            for (name, path) in files {
                named.retain(|(n, _)| *n != name);
                named.push((name, read(&path)?));
            }
        }
        if !named.is_empty() {
            return Ok(Self::from_named(named));
        }
        match config.get("chat_template") {
            None | Some(Json::Null) => Ok(ChatTemplates::None),
            Some(Json::String(template)) => Ok(ChatTemplates::Single(template.clone())),
            Some(Json::Array(list)) => {
                let mut named = Vec::new();
                for entry in list {
                    let name = entry.get("name").and_then(Json::as_str);
                    let template = entry.get("template").and_then(Json::as_str);
                    match (name, template) {
                        (Some(name), Some(template)) => named.push((name.to_string(), template.to_string())),
                        _ => {
                            return Err(Error::Tokenizer {
                                message: "tokenizer_config.json: each entry of the `chat_template` list needs a \
                                          string `name` and `template`"
                                    .into(),
                            });
                        }
                    }
                }
                named.sort();
                Ok(ChatTemplates::Named(named))
            }
            Some(_) => Err(Error::Tokenizer {
                message: "tokenizer_config.json: `chat_template` must be a string or a list of {name, template}".into(),
            }),
        }
    }

    fn from_named(mut named: Vec<(String, String)>) -> Self {
        if named.len() == 1 && named[0].0 == "default" {
            return ChatTemplates::Single(named.remove(0).1);
        }
        named.sort();
        ChatTemplates::Named(named)
    }

    /// The template `apply_chat_template` uses (transformers' `get_chat_template(None, tools)`).
    pub(crate) fn select(&self, has_tools: bool) -> Result<&str> {
        match self {
            ChatTemplates::None => Err(Error::ChatTemplate {
                message: "this tokenizer has no chat template (no chat_template.jinja and no `chat_template` in \
                          tokenizer_config.json); pass one with --chat_template_path"
                    .into(),
            }),
            ChatTemplates::Single(template) => Ok(template),
            ChatTemplates::Named(named) => {
                let find = |name: &str| named.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str());
                let chosen = if has_tools { find("tool_use").or_else(|| find("default")) } else { find("default") };
                chosen.ok_or_else(|| Error::ChatTemplate {
                    message: format!(
                        "This model has multiple chat templates with no default specified! Available template names \
                         are {:?}; pass one with --chat_template_path.",
                        named.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
                    ),
                })
            }
        }
    }

    /// Writes the template files into `dir` and removes the `chat_template` key from `config`.
    pub(crate) fn save(&self, dir: &Path, config: &mut Map<String, Json>) -> Result<()> {
        match self {
            ChatTemplates::None => {}
            ChatTemplates::Single(template) => write(&dir.join(CHAT_TEMPLATE_FILE), template)?,
            ChatTemplates::Named(named) => {
                for (name, template) in named {
                    if name == "default" {
                        write(&dir.join(CHAT_TEMPLATE_FILE), template)?;
                        continue;
                    }
                    let safe = !name.is_empty()
                        && !name.contains(['/', '\\'])
                        && name != "."
                        && name != "..";
                    if !safe {
                        return Err(Error::Tokenizer {
                            message: format!("invalid chat template name {name:?}"),
                        });
                    }
                    let template_dir = dir.join(CHAT_TEMPLATE_DIR);
                    fs::create_dir_all(&template_dir).map_err(|e| Error::io(&template_dir, e))?;
                    write(&template_dir.join(format!("{name}.jinja")), template)?;
                }
            }
        }
        config.remove("chat_template");
        Ok(())
    }
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_form_uses_default_unless_tools_and_tool_use() {
        let config = json!({"chat_template": [
            {"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}
        ]});
        let dir = tempfile::tempdir().unwrap();
        let templates = ChatTemplates::load(dir.path(), config.as_object().unwrap()).unwrap();
        assert_eq!(templates.select(false).unwrap(), "D");
        assert_eq!(templates.select(true).unwrap(), "T");
    }

    #[test]
    fn jinja_files_win_over_the_config_key_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CHAT_TEMPLATE_FILE), "file").unwrap();
        let mut config = json!({"chat_template": "key"})
            .as_object()
            .cloned()
            .unwrap();
        let templates = ChatTemplates::load(dir.path(), &config).unwrap();
        assert_eq!(templates, ChatTemplates::Single("file".into()));

        let out = tempfile::tempdir().unwrap();
        let named = ChatTemplates::Named(vec![
            ("default".into(), "D".into()),
            ("rag".into(), "R".into()),
        ]);
        named.save(out.path(), &mut config).unwrap();
        assert!(!config.contains_key("chat_template"));
        assert_eq!(ChatTemplates::load(out.path(), &config).unwrap(), named);
    }
}
