//! Chat templates rendered exactly as transformers' `apply_chat_template(..., tokenize=False)` renders them.
//!
//! The preparation steps are copied from transformers 5.x:
//! - `PreTrainedTokenizerBase.apply_chat_template` (tokenization_utils_base.py): an empty conversation is
//!   an error, keys whose value is `None` are dropped from every message, `continue_final_message` and
//!   `add_generation_prompt` exclude each other, and the tokenizer's special tokens (`bos_token`, ...)
//!   are template variables that extra kwargs override;
//! - `render_jinja_template` (utils/chat_template_utils.py): tools must be JSON schemas, documents must be
//!   dicts, reasoning is aliased (`_alias_reasoning_fields`), `continue_final_message` cuts the output
//!   after the final message, and the template sees `messages`, `tools`, `documents`,
//!   `add_generation_prompt` and the kwargs;
//! - `AssistantTracker`: `{% generation %}` blocks render their content and record where it landed.

use std::fmt;
use std::ops::Range;

use minijinja::{Environment, Value};
use serde_json::{Map, Value as Json};

use super::jinja_env::{
    GENERATION_END, GENERATION_START, RaisedByTemplate, chat_template_environment,
    normalize_newlines, rewrite_generation_tags,
};
use super::template_values::json_to_value;
use crate::{Error, Result};

/// The name the template is registered under in its private environment (shows up in error lines).
const TEMPLATE_NAME: &str = "chat_template";
/// transformers' `continue_final_message_tag`.
const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";
/// The names a message's reasoning may come under; templates read the first (`_REASONING_FIELDS`).
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// The arguments of `apply_chat_template` besides the conversation.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Append the header that starts an assistant turn (for generation).
    pub add_generation_prompt: bool,
    /// Leave the final message open so the model continues it (prefill). `Some("content")` is
    /// transformers' `continue_final_message=True`; another field name continues that field
    /// (e.g. `"reasoning_content"`). Cannot be combined with `add_generation_prompt`.
    pub continue_final_message: Option<String>,
    /// Tool JSON schemas (`[{"type": "function", "function": {...}}]`); `None` renders as `none`.
    pub tools: Option<Json>,
    /// Documents for retrieval-augmented templates: a list of objects (usually `title` and `text`).
    pub documents: Option<Json>,
    /// Extra template variables (TRL's `chat_template_kwargs`, e.g. `enable_thinking`). They override
    /// the tokenizer's special tokens of the same name.
    pub extra: Map<String, Json>,
}

impl RenderOptions {
    /// Whether tools are given (`tools is not None`), which picks the `tool_use` template when a
    /// tokenizer has several.
    pub fn has_tools(&self) -> bool {
        self.tools.as_ref().is_some_and(|t| !t.is_null())
    }
}

/// A rendered conversation plus where its `{% generation %}` blocks ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedChat {
    /// The rendered prompt.
    pub text: String,
    /// Byte ranges of `text` rendered inside `{% generation %}` blocks (the assistant's tokens for
    /// `assistant_only_loss`). transformers records the same spans in characters.
    pub generation_spans: Vec<Range<usize>>,
}

/// A compiled chat template.
pub struct ChatTemplate {
    source: String,
    has_generation_blocks: bool,
    env: Environment<'static>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("has_generation_blocks", &self.has_generation_blocks)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles a Jinja chat template; syntax errors are reported here, not at render time.
    pub fn new(source: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let (rewritten, has_generation_blocks) =
            rewrite_generation_tags(&normalize_newlines(&source));
        let mut env = chat_template_environment();
        env.add_template_owned(TEMPLATE_NAME, rewritten)
            .map_err(template_error)?;
        Ok(ChatTemplate {
            source,
            has_generation_blocks,
            env,
        })
    }

    /// The template text as written (what gets saved to `chat_template.jinja`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template marks assistant output with `{% generation %}` (needed for
    /// `assistant_only_loss`).
    pub fn has_generation_blocks(&self) -> bool {
        self.has_generation_blocks
    }

    /// Renders a conversation (a JSON array of messages whose `content` is a string or a list of parts).
    pub fn render(&self, messages: &Json, options: &RenderOptions) -> Result<String> {
        Ok(self.render_marked(messages, options)?.text)
    }

    /// Renders a conversation and reports the spans of its `{% generation %}` blocks, like
    /// `apply_chat_template(..., return_assistant_tokens_mask=True)`.
    pub fn render_with_generation_spans(
        &self,
        messages: &Json,
        options: &RenderOptions,
    ) -> Result<RenderedChat> {
        if options.continue_final_message.is_some() {
            return Err(chat_error(
                "continue_final_message is not compatible with return_assistant_tokens_mask.",
            ));
        }
        self.render_marked(messages, options)
    }

    fn render_marked(&self, messages: &Json, options: &RenderOptions) -> Result<RenderedChat> {
        let mut chat = prepare_messages(messages)?;
        let continued = match &options.continue_final_message {
            Some(field) => {
                if options.add_generation_prompt {
                    return Err(chat_error(
                        "continue_final_message and add_generation_prompt are not compatible. Use continue_final_message \
                         when you want the model to continue the final message, and add_generation_prompt when you want \
                         to add a header that will prompt it to start a new assistant message instead.",
                    ));
                }
                Some(tag_final_message(&mut chat, field, &self.source)?)
            }
            None => None,
        };
        let context = self.context(chat, options)?;
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(template_error)?;
        let marked = template.render(context).map_err(template_error)?;
        let mut rendered = strip_generation_markers(&marked);
        if let Some(final_message) = continued {
            rendered.text = cut_after_final_message(&rendered.text, &final_message)?;
            let len = rendered.text.len();
            rendered.generation_spans.retain(|span| span.start < len);
            for span in &mut rendered.generation_spans {
                span.end = span.end.min(len);
            }
        }
        Ok(rendered)
    }

    /// The variables the template sees: kwargs first, then the four named arguments.
    fn context(&self, chat: Vec<Json>, options: &RenderOptions) -> Result<Value> {
        if let Some(tools) = options.tools.as_ref().filter(|t| !t.is_null()) {
            let valid = tools
                .as_array()
                .is_some_and(|tools| tools.iter().all(Json::is_object));
            if !valid {
                return Err(chat_error(
                    "Tools should be a list of JSON schemas (objects).",
                ));
            }
        }
        if let Some(documents) = options.documents.as_ref().filter(|d| !d.is_null()) {
            let valid = documents
                .as_array()
                .is_some_and(|docs| docs.iter().all(Json::is_object));
            if !valid {
                return Err(chat_error(
                    "Documents should be a list of dicts with 'title' and 'text' keys!",
                ));
            }
        }
        let mut variables: Vec<(String, Value)> = Vec::new();
        for (name, value) in &options.extra {
            if ["messages", "tools", "documents", "add_generation_prompt"].contains(&name.as_str())
            {
                return Err(chat_error(format!(
                    "`{name}` is an argument of apply_chat_template, not an extra template variable"
                )));
            }
            variables.push((name.clone(), json_to_value(value)));
        }
        let optional =
            |value: &Option<Json>| value.as_ref().map(json_to_value).unwrap_or(Value::from(()));
        variables.push(("messages".into(), json_to_value(&Json::Array(chat))));
        variables.push(("tools".into(), optional(&options.tools)));
        variables.push(("documents".into(), optional(&options.documents)));
        variables.push((
            "add_generation_prompt".into(),
            Value::from(options.add_generation_prompt),
        ));
        Ok(Value::from_iter(variables))
    }
}

/// Drops `None` values and aliases reasoning fields, as apply_chat_template and render_jinja_template do.
fn prepare_messages(messages: &Json) -> Result<Vec<Json>> {
    let messages = messages
        .as_array()
        .ok_or_else(|| chat_error("The conversation must be a list of messages (JSON objects)."))?;
    if messages.is_empty() {
        return Err(chat_error(
            "Cannot apply chat template to an empty conversation. Provide at least one message.",
        ));
    }
    messages
        .iter()
        .map(|message| {
            let message = message.as_object().ok_or_else(|| {
                chat_error(format!("Chat messages should be dicts, but got {message}."))
            })?;
            let message: Map<String, Json> = message
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok(Json::Object(alias_reasoning_fields(message)))
        })
        .collect()
}

/// `{"thinking": r, **message, "reasoning_content": r}` when the message carries reasoning under any name.
fn alias_reasoning_fields(message: Map<String, Json>) -> Map<String, Json> {
    let reasoning = REASONING_FIELDS
        .iter()
        .find_map(|field| message.get(*field).filter(|v| !v.is_null()))
        .cloned();
    let Some(reasoning) = reasoning else {
        return message;
    };
    let mut aliased = Map::new();
    aliased.insert("thinking".into(), reasoning.clone());
    for (key, value) in message {
        aliased.insert(key, value);
    }
    aliased.insert("reasoning_content".into(), reasoning);
    aliased
}

/// Appends the continue tag to the final message's field and returns the text to look for afterwards.
fn tag_final_message(chat: &mut [Json], field: &str, template_source: &str) -> Result<String> {
    let last = chat
        .last_mut()
        .and_then(Json::as_object_mut)
        .ok_or_else(|| {
            chat_error("continue_final_message is set but the conversation is empty!")
        })?;
    let final_message = last.get(field).cloned().ok_or_else(|| {
        chat_error(format!(
            "continue_final_message is set but the final message has no \"{field}\" to continue!"
        ))
    })?;
    let mut fields = vec![field.to_string()];
    if REASONING_FIELDS.contains(&field) {
        fields = REASONING_FIELDS
            .iter()
            .filter(|f| last.get(**f) == Some(&final_message))
            .map(|f| f.to_string())
            .collect();
    }
    if !fields.iter().any(|f| template_source.contains(f.as_str())) {
        return Err(chat_error(format!(
            "continue_final_message is set to \"{field}\" but this is not an accepted field in the chat_template"
        )));
    }
    if let Some(parts) = last.get_mut(field).and_then(Json::as_array_mut) {
        for part in parts.iter_mut().rev() {
            if let Some(Json::String(text)) = part.get_mut("text") {
                let original = text.clone();
                text.push_str(CONTINUE_TAG);
                return Ok(original);
            }
        }
        return Err(chat_error(
            "continue_final_message is set but we could not find any text to continue in the final message!",
        ));
    }
    let text = final_message
        .as_str()
        .ok_or_else(|| {
            chat_error(format!(
                "continue_final_message: the final message's \"{field}\" is not text"
            ))
        })?
        .to_string();
    for f in &fields {
        last.insert(f.clone(), Json::String(format!("{text}{CONTINUE_TAG}")));
    }
    Ok(text)
}

/// Cuts the rendered chat right after the final message (transformers' tag search).
fn cut_after_final_message(rendered: &str, final_message: &str) -> Result<String> {
    let tag = CONTINUE_TAG.trim();
    if !rendered.contains(final_message.trim()) || !rendered.contains(tag) {
        return Err(chat_error(format!(
            "continue_final_message is set but the final message does not appear in the chat after applying the chat \
             template! This can happen if the chat template deletes portions of the final message. Please verify the \
             chat template and final message in your chat to ensure they are compatible.Final message to continue: {}\n\
             Rendered chat:\n{rendered}",
            final_message.trim()
        )));
    }
    let tag_loc = rendered.rfind(tag).unwrap_or(rendered.len());
    if rendered[tag_loc..].starts_with(CONTINUE_TAG) {
        Ok(rendered[..tag_loc].to_string())
    } else {
        Ok(rendered[..tag_loc].trim_end().to_string())
    }
}

/// Removes the generation markers and turns them into byte spans of the clean text.
fn strip_generation_markers(marked: &str) -> RenderedChat {
    let mut text = String::with_capacity(marked.len());
    let mut open = Vec::new();
    let mut generation_spans = Vec::new();
    for c in marked.chars() {
        match c {
            GENERATION_START => open.push(text.len()),
            GENERATION_END => {
                if let Some(start) = open.pop() {
                    generation_spans.push(start..text.len());
                }
            }
            c => text.push(c),
        }
    }
    generation_spans.sort_by_key(|span| span.start);
    RenderedChat {
        text,
        generation_spans,
    }
}

fn chat_error(message: impl Into<String>) -> Error {
    Error::ChatTemplate {
        message: message.into(),
    }
}

/// Converts a minijinja error; a `raise_exception` message is passed on verbatim.
fn template_error(err: minijinja::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(current) = source {
        if let Some(raised) = current.downcast_ref::<RaisedByTemplate>() {
            return chat_error(raised.0.clone());
        }
        source = current.source();
    }
    chat_error(err.to_string())
}

#[cfg(test)]
#[path = "chat_template_tests.rs"]
mod tests;
