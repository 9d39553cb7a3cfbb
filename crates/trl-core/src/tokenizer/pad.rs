//! The one pad-token lookup every method uses (TRL 1.16's trainers all do
//! `pad_token = args.pad_token or tokenizer.pad_token or tokenizer.eos_token` and raise when it
//! is not in the vocabulary), so a typo'd `--pad_token` is the same error everywhere.

use super::Tokenizer;
use crate::{Error, Result};

/// The pad token id: `pad_token` if given (an error naming it when the vocabulary lacks it),
/// else the tokenizer's pad token, else its EOS token.
pub fn pad_token_id(tokenizer: &Tokenizer, pad_token: Option<&str>) -> Result<u32> {
    let token = pad_token
        .or(tokenizer.pad_token())
        .or(tokenizer.eos_token())
        .ok_or_else(|| Error::Tokenizer {
            message: "the tokenizer has neither a pad nor an EOS token; set --pad_token to a \
                      token of its vocabulary"
                .into(),
        })?;
    tokenizer
        .token_to_id(token)
        .ok_or_else(|| Error::Tokenizer {
            message: format!(
                "the specified `pad_token` ('{token}') is not found in the vocabulary of the \
             tokenizer; pass --pad_token with a token the vocabulary has"
            ),
        })
}

/// [`pad_token_id`], and the token becomes `tokenizer.pad_token` (so a saved tokenizer has it),
/// as TRL's reward trainer does.
pub fn set_pad_token(tokenizer: &mut Tokenizer, pad_token: Option<&str>) -> Result<u32> {
    let id = pad_token_id(tokenizer, pad_token)?;
    let token = pad_token
        .or(tokenizer.pad_token())
        .or(tokenizer.eos_token())
        .map(str::to_string);
    if let Some(token) = token {
        tokenizer.set_pad_token(&token)?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tokenizer() -> Tokenizer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-qwen2");
        Tokenizer::from_dir(&dir).unwrap()
    }

    #[test]
    fn a_typo_is_an_error_naming_the_token() {
        let err = pad_token_id(&tokenizer(), Some("<|padd|>"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("<|padd|>"), "{err}");
    }

    #[test]
    fn falls_back_to_the_tokenizer_pad_then_eos() {
        let tokenizer = tokenizer();
        let expected = tokenizer
            .pad_token_id()
            .or(tokenizer.eos_token_id())
            .unwrap();
        assert_eq!(pad_token_id(&tokenizer, None).unwrap(), expected);
        let eos = tokenizer.eos_token().unwrap().to_string();
        assert_eq!(
            pad_token_id(&tokenizer, Some(&eos)).unwrap(),
            tokenizer.eos_token_id().unwrap()
        );
    }
}
