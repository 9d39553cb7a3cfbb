//! TRL's rewrites of preference rows (`data_utils.py`): splitting off an implicit prompt
//! (`extract_prompt`, `maybe_extract_prompt`) and turning pairs into labelled completions
//! (`unpair_preference_dataset`, what KTO does with paired data). They are copied with their
//! quirks, so that a row becomes what it becomes in TRL.

use serde_json::Value;

use super::format::Row;

/// How many rows `datasets.map(batched=True)` hands `_unpair_row` at once: the order of the
/// unpaired rows depends on it.
const UNPAIR_BATCH_SIZE: usize = 1000;

/// TRL's `extract_prompt`: the longest shared start of `chosen` and `rejected` (characters of a
/// string, messages of a conversation) becomes the prompt, the rest the two completions.
/// Returns `(prompt, chosen, rejected)`, or `None` where TRL fails (an empty side, or sides that
/// are neither both strings nor both lists).
///
/// Quirks kept from TRL: when the strings part right after a space, the space goes to the
/// completions (`"The sky is blue."` / `"The sky is green."` give the prompt `"The sky is"`);
/// when one side is a prefix of the other, the prompt stops one item short; when they differ
/// at the very first character and `chosen` ends with a space, Python's index `-1` applies.
pub fn extract_prompt(chosen: &Value, rejected: &Value) -> Option<(Value, Value, Value)> {
    match (chosen, rejected) {
        (Value::String(chosen), Value::String(rejected)) => {
            let chosen: Vec<char> = chosen.chars().collect();
            let rejected: Vec<char> = rejected.chars().collect();
            let split = split_index(&chosen, &rejected, |c| *c == ' ')?;
            let text = |chars: &[char]| Value::String(chars.iter().collect());
            Some((
                text(py_slice_to(&chosen, split)),
                text(py_slice_from(&chosen, split)),
                text(py_slice_from(&rejected, split)),
            ))
        }
        (Value::Array(chosen), Value::Array(rejected)) => {
            let split = split_index(chosen, rejected, |_| false)?;
            let list = |items: &[Value]| Value::Array(items.to_vec());
            Some((
                list(py_slice_to(chosen, split)),
                list(py_slice_from(chosen, split)),
                list(py_slice_from(rejected, split)),
            ))
        }
        _ => None,
    }
}

/// The loop of `extract_prompt`, as a Python index (it may be `-1`).
fn split_index<T: PartialEq>(
    chosen: &[T],
    rejected: &[T],
    is_space: impl Fn(&T) -> bool,
) -> Option<isize> {
    let shared = chosen.len().min(rejected.len());
    if shared == 0 {
        return None; // Python: `idx` is never bound.
    }
    match (0..shared).find(|&i| chosen[i] != rejected[i]) {
        Some(index) => {
            let index = index as isize;
            let before = if index == 0 {
                chosen.len() - 1
            } else {
                index as usize - 1
            };
            Some(if is_space(&chosen[before]) {
                index - 1
            } else {
                index
            })
        }
        // No break: the loop variable keeps its last value.
        None => Some(shared as isize - 1),
    }
}

fn py_index(len: usize, index: isize) -> usize {
    if index < 0 {
        len.saturating_sub(index.unsigned_abs())
    } else {
        (index as usize).min(len)
    }
}

/// `items[:index]`.
fn py_slice_to<T>(items: &[T], index: isize) -> &[T] {
    &items[..py_index(items.len(), index)]
}

/// `items[index:]`.
fn py_slice_from<T>(items: &[T], index: isize) -> &[T] {
    &items[py_index(items.len(), index)..]
}

/// Whether a value is a conversation, as TRL's `is_conversational` decides from one value: a
/// list whose first item is an object with a `role`.
pub fn is_conversation(value: Option<&Value>) -> bool {
    value
        .and_then(|value| value.get(0))
        .is_some_and(|first| first.get("role").is_some())
}

/// TRL's `maybe_extract_prompt`, in place: a preference row without a prompt of its own style
/// gets one extracted from `chosen` and `rejected`; other rows are left alone. Extra columns are
/// kept (TRL's `map` keeps them too). Returns `false` where TRL's extraction fails.
pub fn maybe_extract_prompt(row: &mut Row) -> bool {
    let (Some(chosen), Some(rejected)) = (row.get("chosen"), row.get("rejected")) else {
        return true;
    };
    if let Some(prompt) = row.get("prompt")
        && is_conversation(Some(chosen)) == is_conversation(Some(prompt))
    {
        return true;
    }
    let Some((prompt, chosen, rejected)) = extract_prompt(chosen, rejected) else {
        return false;
    };
    row.insert("prompt".to_owned(), prompt);
    row.insert("chosen".to_owned(), chosen);
    row.insert("rejected".to_owned(), rejected);
    true
}

/// TRL's `unpair_preference_dataset`: each `(prompt, chosen, rejected)` row becomes
/// `(prompt, completion=chosen, label=true)` and `(prompt, completion=rejected, label=false)`,
/// extra columns copied to both, in TRL's order (per batch of 1000 rows: the chosen rows, then
/// the rejected ones). Rows without both `chosen` and `rejected` are passed through.
pub fn unpair_preference(rows: Vec<Row>) -> Vec<Row> {
    let mut unpaired = Vec::with_capacity(rows.len() * 2);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let batch: Vec<Row> = rows.by_ref().take(UNPAIR_BATCH_SIZE).collect();
        let mut rejected_rows = Vec::with_capacity(batch.len());
        for mut row in batch {
            let (Some(chosen), Some(rejected)) = (row.remove("chosen"), row.remove("rejected"))
            else {
                unpaired.push(row);
                continue;
            };
            let mut rejected_row = row.clone();
            row.insert("completion".to_owned(), chosen);
            row.insert("label".to_owned(), Value::Bool(true));
            rejected_row.insert("completion".to_owned(), rejected);
            rejected_row.insert("label".to_owned(), Value::Bool(false));
            unpaired.push(row);
            rejected_rows.push(rejected_row);
        }
        unpaired.append(&mut rejected_rows);
    }
    unpaired
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extracted(chosen: Value, rejected: Value) -> Value {
        let (prompt, chosen, rejected) = extract_prompt(&chosen, &rejected).expect("extracts");
        json!({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    }

    /// `trl.data_utils.extract_prompt` on strings and conversations, as recorded by
    /// reference/data_reference.py.
    #[test]
    fn extracts_the_prompt_like_trl() {
        let fixture = crate::parity::read_fixture("fixtures/expected/data.json");
        let cases = fixture["extract_prompt"].as_array().unwrap();
        assert!(cases.len() >= 7, "{} cases", cases.len());
        for case in cases {
            assert_eq!(
                extracted(case["chosen"].clone(), case["rejected"].clone()),
                json!({"prompt": case["prompt"], "chosen": case["chosen_rest"], "rejected": case["rejected_rest"]}),
                "{case}"
            );
        }
    }

    /// `trl.data_utils.maybe_extract_prompt` (TRL's `map` keeps the other columns) and
    /// `unpair_preference_dataset`, as recorded by reference/data_reference.py.
    #[test]
    fn rewrites_rows_like_trl() {
        let fixture = crate::parity::read_fixture("fixtures/expected/data.json");
        let cases = fixture["maybe_extract_prompt"].as_array().unwrap();
        assert!(cases.len() >= 3, "{} cases", cases.len());
        for case in cases {
            let mut row = case["row"].as_object().unwrap().clone();
            let mut want = row.clone();
            want.extend(case["result"].as_object().unwrap().clone());
            assert!(maybe_extract_prompt(&mut row), "{case}");
            assert_eq!(row, want, "{case}");
        }
        let unpair = &fixture["unpair_preference"];
        let rows: Vec<Row> = serde_json::from_value(unpair["rows"].clone()).unwrap();
        let want: Vec<Row> = serde_json::from_value(unpair["result"].clone()).unwrap();
        assert_eq!(want.len(), 2 * rows.len());
        assert_eq!(unpair_preference(rows), want);
    }

    #[test]
    fn fails_where_trl_fails() {
        assert!(extract_prompt(&json!(""), &json!("x")).is_none());
        assert!(extract_prompt(&json!([]), &json!([])).is_none());
        assert!(extract_prompt(&json!("x"), &json!([])).is_none());
    }

    #[test]
    fn keeps_a_prompt_of_the_same_style_and_replaces_one_of_another_style() {
        let mut explicit = json!({"prompt": "Q", "chosen": " A", "rejected": " B", "id": 7});
        let before = explicit.clone();
        assert!(maybe_extract_prompt(explicit.as_object_mut().unwrap()));
        assert_eq!(explicit, before);

        let user = json!({"role": "user", "content": "Q"});
        let answer = |text: &str| json!({"role": "assistant", "content": text});
        let mut mixed = json!({
            "prompt": "Q",
            "chosen": [user, answer("A")],
            "rejected": [user, answer("B")],
            "id": 7,
        });
        assert!(maybe_extract_prompt(mixed.as_object_mut().unwrap()));
        assert_eq!(
            mixed,
            json!({"prompt": [user], "chosen": [answer("A")], "rejected": [answer("B")], "id": 7})
        );
    }
}
