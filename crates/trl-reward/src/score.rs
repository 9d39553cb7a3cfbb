//! Rewards of dataset rows under a trained reward model (`trl score`): each row is tokenized
//! exactly as reward training tokenizes it, and scored at its last token.

use burn::tensor::Tensor;
use serde_json::Value;
use trl_core::data::Row;
use trl_core::model::SequenceClassifier;
use trl_core::tokenizer::Tokenizer;

use crate::Error;
use crate::data::{pad_right, tokenize_sequence};

/// The token sequences of one row: both sides of a preference pair, or one sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum RowSequences {
    /// `prompt + chosen`, `prompt + rejected` (explicit or implicit prompt).
    Pair {
        chosen: Vec<u32>,
        rejected: Vec<u32>,
    },
    /// `prompt + completion`, `messages`, or the text column.
    Single(Vec<u32>),
}

/// The rewards of one row, in the shape of its [`RowSequences`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowScores {
    Pair { chosen: f32, rejected: f32 },
    Single(f32),
}

/// Tokenizes a row of any format a reward model can judge: preference (`chosen`/`rejected`,
/// with or without `prompt`), prompt-completion, conversational `messages`, or standard text in
/// `text_field`. Standard text gets EOS appended, as in training.
pub fn row_sequences(
    tokenizer: &Tokenizer,
    row: &Row,
    text_field: &str,
) -> Result<RowSequences, String> {
    let prompt = row.get("prompt").filter(|p| !p.is_null());
    if let (Some(chosen), Some(rejected)) = (row.get("chosen"), row.get("rejected")) {
        return Ok(RowSequences::Pair {
            chosen: tokenize_sequence(tokenizer, row, prompt, chosen)
                .map_err(|e| format!("chosen: {e}"))?,
            rejected: tokenize_sequence(tokenizer, row, prompt, rejected)
                .map_err(|e| format!("rejected: {e}"))?,
        });
    }
    let body = [
        ("completion", prompt),
        ("messages", None),
        (text_field, None),
    ]
    .into_iter()
    .find_map(|(column, prompt)| {
        row.get(column)
            .filter(|v| !v.is_null())
            .map(|v| (v, prompt))
    });
    match body {
        Some((body, prompt)) => {
            tokenize_sequence(tokenizer, row, prompt, body).map(RowSequences::Single)
        }
        None => Err(format!(
            "nothing to score: expected `chosen`+`rejected`, `prompt`+`completion`, `messages` or `{text_field}`"
        )),
    }
}

/// Scores sequences `batch_size` at a time (longest first, to pad little) and returns one
/// reward per sequence, in the given order. The model's `pad_token_id` must be set.
pub fn score_sequences(
    model: &SequenceClassifier,
    sequences: &[&[u32]],
    pad_token_id: u32,
    batch_size: usize,
) -> trl_core::Result<Vec<f32>> {
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sequences[i].len()));
    let mut scores = vec![0f32; sequences.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<&[u32]> = chunk.iter().map(|&i| sequences[i]).collect();
        let tokens = pad_right(&batch, pad_token_id, None);
        // [batch, 1] -> [batch]
        let rewards: Tensor<1> = model.forward(&tokens)?.reshape([chunk.len()]);
        let values = trl_core::host::f32_values(rewards, "the reward scores")?;
        for (&i, value) in chunk.iter().zip(values) {
            scores[i] = value;
        }
    }
    Ok(scores)
}

/// Scores every row; sequences longer than `max_length` are cut to their first `max_length`
/// tokens (the returned count says how many were). Row errors carry the 0-based row index.
pub fn score_rows(
    model: &SequenceClassifier,
    tokenizer: &Tokenizer,
    rows: &[Row],
    text_field: &str,
    pad_token_id: u32,
    batch_size: usize,
    max_length: Option<usize>,
) -> Result<(Vec<RowScores>, usize), Error> {
    let mut per_row = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        per_row.push(row_sequences(tokenizer, row, text_field).map_err(|m| Error::row(index, m))?);
    }
    let mut truncated = 0;
    let mut cut = |ids: &Vec<u32>| -> Vec<u32> {
        match max_length {
            Some(max) if ids.len() > max => {
                truncated += 1;
                ids[..max].to_vec()
            }
            _ => ids.clone(),
        }
    };
    let mut flat: Vec<Vec<u32>> = Vec::new();
    for (index, sequences) in per_row.iter().enumerate() {
        let cut_row = match sequences {
            RowSequences::Pair { chosen, rejected } => vec![cut(chosen), cut(rejected)],
            RowSequences::Single(ids) => vec![cut(ids)],
        };
        // A reward model scores the last token: an empty sequence has none.
        if cut_row.iter().any(Vec::is_empty) {
            let why = match max_length {
                Some(0) => "max_length 0 leaves no token to score".to_string(),
                _ => "the row tokenizes to no token: nothing to score".to_string(),
            };
            return Err(Error::row(index, why));
        }
        flat.extend(cut_row);
    }
    let views: Vec<&[u32]> = flat.iter().map(Vec::as_slice).collect();
    let scores = score_sequences(model, &views, pad_token_id, batch_size)?;
    let mut next = scores.into_iter();
    let mut take = || next.next().unwrap_or(f32::NAN);
    let results = per_row
        .iter()
        .map(|sequences| match sequences {
            RowSequences::Pair { .. } => RowScores::Pair {
                chosen: take(),
                rejected: take(),
            },
            RowSequences::Single(_) => RowScores::Single(take()),
        })
        .collect();
    Ok((results, truncated))
}

/// The row with its reward columns added: `chosen_score` and `rejected_score` for pairs,
/// `score` otherwise; every other column is kept as it was.
pub fn with_scores(row: &Row, scores: RowScores) -> Row {
    let mut row = row.clone();
    let number = |v: f32| Value::from(v as f64);
    match scores {
        RowScores::Pair { chosen, rejected } => {
            row.insert("chosen_score".into(), number(chosen));
            row.insert("rejected_score".into(), number(rejected));
        }
        RowScores::Single(score) => {
            row.insert("score".into(), number(score));
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::data::prepare_examples;

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_dir(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-qwen2-rm"),
        )
        .unwrap()
    }

    fn row(value: Value) -> Row {
        value.as_object().unwrap().clone()
    }

    /// A row is scored on exactly the tokens reward training would see for it.
    #[test]
    fn rows_are_tokenized_as_in_training() {
        let tokenizer = tokenizer();
        let pair = row(json!({"prompt": "Q: 2+2?\nA:", "chosen": " 4", "rejected": " 5", "id": 7}));
        let trained = prepare_examples(std::slice::from_ref(&pair), &tokenizer, None).unwrap();
        assert_eq!(
            row_sequences(&tokenizer, &pair, "text").unwrap(),
            RowSequences::Pair {
                chosen: trained[0].chosen_ids.clone(),
                rejected: trained[0].rejected_ids.clone()
            }
        );
        let completion = row(json!({"prompt": "Q: 2+2?\nA:", "completion": " 4"}));
        let text = row(json!({"text": "Q: 2+2?\nA: 4"}));
        let single = RowSequences::Single(trained[0].chosen_ids.clone());
        assert_eq!(
            row_sequences(&tokenizer, &completion, "text").unwrap(),
            single
        );
        assert_eq!(row_sequences(&tokenizer, &text, "text").unwrap(), single);
        assert!(row_sequences(&tokenizer, &row(json!({"prompt": "Q"})), "text").is_err());
    }

    #[test]
    fn scores_are_added_and_other_columns_kept() {
        let scored = with_scores(
            &row(json!({"chosen": "a", "rejected": "b", "id": 7})),
            RowScores::Pair {
                chosen: 1.5,
                rejected: -0.5,
            },
        );
        assert_eq!(
            Value::Object(scored),
            json!({"chosen": "a", "rejected": "b", "id": 7, "chosen_score": 1.5, "rejected_score": -0.5})
        );
    }
}
