//! Chat templates on a [`Tokenizer`]: which template applies, and `apply_chat_template` with the
//! tokenizer's special tokens as template variables (`{**tokenizer.special_tokens_map, **kwargs}` in
//! transformers' `apply_chat_template`).

use std::fs;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::template_files::ChatTemplates;
use super::{ChatTemplate, RenderOptions, Tokenizer, backend_error};
use crate::{Error, Result};

/// A conversation encoded for training with `assistant_only_loss`
/// (`apply_chat_template(..., return_dict=True, return_assistant_tokens_mask=True)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEncoding {
    /// Token ids of the rendered conversation (no special tokens added beyond the template's).
    pub input_ids: Vec<u32>,
    /// 1 for tokens rendered inside `{% generation %}` blocks, else 0; same length as `input_ids`.
    pub assistant_masks: Vec<u8>,
}

impl Tokenizer {
    /// Replaces the chat template with the contents of a `.jinja` file (TRL's `chat_template_path`
    /// when it names a file).
    pub fn set_chat_template_from_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::ChatTemplate {
                message: format!(
                    "{}: chat_template_path must be a Jinja file (.jinja); cloning the template of another \
                     tokenizer folder is not supported",
                    path.display()
                ),
            });
        }
        let source = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        self.set_chat_template(source)
    }

    /// Replaces the chat template (`tokenizer.chat_template = source`); it is compiled to report syntax
    /// errors now.
    pub fn set_chat_template(&mut self, source: impl Into<String>) -> Result<()> {
        let source = source.into();
        self.compiled_template(&source)?;
        self.chat_templates = ChatTemplates::Single(source);
        Ok(())
    }

    /// The compiled template `apply_chat_template` uses (`tool_use` among named templates when tools
    /// are given).
    pub fn chat_template(&self, has_tools: bool) -> Result<Arc<ChatTemplate>> {
        let source = self.chat_templates.select(has_tools)?.to_string();
        self.compiled_template(&source)
    }

    fn compiled_template(&self, source: &str) -> Result<Arc<ChatTemplate>> {
        let mut cache = self
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(template) = cache.iter().find(|t| t.source() == source) {
            return Ok(template.clone());
        }
        let template = Arc::new(ChatTemplate::new(source)?);
        cache.push(template.clone());
        Ok(template)
    }

    /// `apply_chat_template(messages, tokenize=False, ...)`: the special tokens (`bos_token`, ...) are
    /// template variables unless `options.extra` sets the same name.
    pub fn apply_chat_template(&self, messages: &Json, options: &RenderOptions) -> Result<String> {
        let template = self.chat_template(options.has_tools())?;
        template.render(messages, &self.with_special_tokens(options))
    }

    /// `apply_chat_template(messages, tokenize=True, return_dict=False)`: the rendered text encoded
    /// without adding special tokens.
    pub fn apply_chat_template_ids(
        &self,
        messages: &Json,
        options: &RenderOptions,
    ) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, options)?;
        self.encode(&text, false)
    }

    /// The tokens a model continues for a prompt-only row's `prompt`, as TRL's online trainers
    /// and `trl generate` build them: a conversation through the chat template with the
    /// assistant header appended (`extra`: `chat_template_kwargs`), a string through the
    /// tokenizer (`add_special_tokens` as the caller's TRL counterpart passes it). Errors say
    /// what is wrong with the prompt; an empty result is an error.
    pub fn prompt_ids(
        &self,
        prompt: &Json,
        extra: &Map<String, Json>,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>> {
        let ids = match prompt {
            Json::Array(_) => {
                let options = RenderOptions {
                    add_generation_prompt: true,
                    extra: extra.clone(),
                    ..RenderOptions::default()
                };
                self.apply_chat_template_ids(prompt, &options)?
            }
            Json::String(text) => self.encode(text, add_special_tokens)?,
            _ => {
                return Err(Error::Tokenizer {
                    message: "`prompt` must be a string or a list of messages".into(),
                });
            }
        };
        if ids.is_empty() {
            return Err(Error::Tokenizer {
                message: "the prompt tokenizes to no tokens".into(),
            });
        }
        Ok(ids)
    }

    /// `apply_chat_template(..., return_dict=True, return_assistant_tokens_mask=True)`: ids plus a mask of
    /// the tokens inside `{% generation %}` blocks, computed as transformers does (tokens from the one
    /// holding a block's first character to the one holding its last).
    pub fn apply_chat_template_with_assistant_mask(
        &self,
        messages: &Json,
        options: &RenderOptions,
    ) -> Result<ChatEncoding> {
        let template = self.chat_template(options.has_tools())?;
        let rendered =
            template.render_with_generation_spans(messages, &self.with_special_tokens(options))?;
        let encoding = self
            .backend
            .encode(rendered.text.as_str(), false)
            .map_err(backend_error)?;
        let len = encoding.get_ids().len();
        let mut assistant_masks = vec![0u8; len];
        for span in &rendered.generation_spans {
            if span.is_empty() {
                continue;
            }
            let Some(start) = encoding.char_to_token(span.start, 0) else {
                break; // transformers stops at the first span that starts past the (truncated) end
            };
            // transformers: `end_token + 1 if end_token else len`, so a last token of 0 also means "to the end".
            let end = match encoding.char_to_token(span.end - 1, 0) {
                Some(end) if end != 0 => end + 1,
                _ => len,
            };
            for mask in &mut assistant_masks[start.min(len)..end.min(len)] {
                *mask = 1;
            }
        }
        Ok(ChatEncoding {
            input_ids: encoding.get_ids().to_vec(),
            assistant_masks,
        })
    }

    fn with_special_tokens(&self, options: &RenderOptions) -> RenderOptions {
        let mut extra = Map::new();
        for (name, token) in self.special.map() {
            extra.insert(name, Json::String(token));
        }
        for (name, value) in &options.extra {
            extra.insert(name.clone(), value.clone());
        }
        RenderOptions {
            extra,
            ..options.clone()
        }
    }
}
