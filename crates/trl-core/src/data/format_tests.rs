use serde_json::{Value, json};

use super::*;

fn row(value: Value) -> Row {
    value.as_object().expect("a JSON object").clone()
}

fn detect(value: Value) -> Result<RowShape, Box<Problem>> {
    detect_row(&row(value), "text")
}

fn shape(kind: FormatKind, style: Style) -> Result<RowShape, Box<Problem>> {
    Ok(RowShape {
        kind,
        style: Some(style),
    })
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

fn problems(value: Value, kind: FormatKind, style: Style) -> Vec<String> {
    check_row(&row(value), DatasetFormat { kind, style }, "text")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn detects_every_standard_format() {
    use FormatKind::*;
    let standard = Style::Standard;
    assert_eq!(
        detect(json!({"text": "The sky is blue."})),
        shape(LanguageModeling, standard)
    );
    assert_eq!(
        detect(json!({"prompt": "The sky is"})),
        shape(PromptOnly, standard)
    );
    assert_eq!(
        detect(json!({"prompt": "The sky is", "completion": " blue."})),
        shape(PromptCompletion, standard)
    );
    assert_eq!(
        detect(json!({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."})),
        shape(Preference, standard)
    );
    assert_eq!(
        detect(json!({"chosen": "The sky is blue.", "rejected": "The sky is green."})),
        shape(ImplicitPreference, standard)
    );
    assert_eq!(
        detect(json!({"prompt": "The sky is", "completion": " blue.", "label": true})),
        shape(UnpairedPreference, standard)
    );
}

#[test]
fn detects_every_conversational_format() {
    use FormatKind::*;
    let conversational = Style::Conversational;
    let q = user("What color is the sky?");
    assert_eq!(
        detect(json!({"messages": [q, assistant("Blue.")]})),
        shape(LanguageModeling, conversational)
    );
    assert_eq!(
        detect(json!({"prompt": [q]})),
        shape(PromptOnly, conversational)
    );
    assert_eq!(
        detect(json!({"prompt": [q], "completion": [assistant("Blue.")]})),
        shape(PromptCompletion, conversational)
    );
    assert_eq!(
        detect(
            json!({"prompt": [q], "chosen": [assistant("Blue.")], "rejected": [assistant("Green.")]})
        ),
        shape(Preference, conversational)
    );
    assert_eq!(
        detect(json!({"chosen": [q, assistant("Blue.")], "rejected": [q, assistant("Green.")]})),
        shape(ImplicitPreference, conversational)
    );
    assert_eq!(
        detect(json!({"prompt": [q], "completion": [assistant("Blue.")], "label": false})),
        shape(UnpairedPreference, conversational)
    );
}

#[test]
fn a_prompt_of_the_other_style_is_not_the_prompt() {
    // maybe_extract_prompt: conversations that hold the prompt, plus a plain-text prompt column.
    let q = user("Q");
    let shape = detect(
        json!({"prompt": "Q", "chosen": [q, assistant("A")], "rejected": [q, assistant("B")]}),
    );
    assert_eq!(
        shape,
        Ok(RowShape {
            kind: FormatKind::ImplicitPreference,
            style: Some(Style::Conversational)
        })
    );
}

#[test]
fn dataset_text_field_names_the_text_column_and_extra_columns_are_kept() {
    let value = json!({"content": "Hello", "id": 3});
    assert_eq!(
        detect_row(&row(value.clone()), "content"),
        Ok(RowShape {
            kind: FormatKind::LanguageModeling,
            style: Some(Style::Standard)
        })
    );
    assert!(detect(value).is_err());
    // A label next to a lone prompt is an extra column (GRPO reward functions read such columns).
    assert_eq!(
        detect(json!({"prompt": "2+2=", "label": "4"})).map(|s| s.kind),
        Ok(FormatKind::PromptOnly)
    );
}

#[test]
fn rows_without_format_columns_say_what_they_have() {
    let error = detect(json!({"question": "Q", "answer": "A"})).unwrap_err();
    assert!(error.found.contains("`question`, `answer`"), "{error}");
    let error = detect(json!({"completion": "A"})).unwrap_err();
    assert_eq!(error.found, "`completion` without `prompt`");
    let error = detect(json!({"conversations": [{"from": "human", "value": "hi"}]})).unwrap_err();
    assert!(error.found.contains("ShareGPT"), "{error}");
    let error = detect(json!({})).unwrap_err();
    assert_eq!(error.found, "an empty object");
    // Null columns count as absent, as datasets fills missing columns with null.
    assert!(detect(json!({"text": null})).is_err());
}

#[test]
fn messages_next_to_prompt_columns_is_ambiguous() {
    let error = detect(json!({"messages": [user("hi")], "prompt": "hi"})).unwrap_err();
    assert_eq!(error.found, "both `messages` and `prompt`");
}

#[test]
fn valid_rows_have_no_problems() {
    use FormatKind::*;
    let q = user("Q");
    let cases = [
        (
            json!({"text": "t", "id": 1}),
            LanguageModeling,
            Style::Standard,
        ),
        (
            json!({"messages": [q, assistant("A")]}),
            LanguageModeling,
            Style::Conversational,
        ),
        (json!({"prompt": [q]}), PromptOnly, Style::Conversational),
        (
            json!({"prompt": "p", "completion": "c", "label": false}),
            UnpairedPreference,
            Style::Standard,
        ),
        (
            json!({"chosen": [q, assistant("A")], "rejected": [q, assistant("B")]}),
            ImplicitPreference,
            Style::Conversational,
        ),
        (
            json!({"messages": [q, {"role": "assistant", "tool_calls": [{"type": "function"}]}], "tools": "[]"}),
            LanguageModeling,
            Style::Conversational,
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "chat_template_kwargs": {"x": 1}}),
            LanguageModeling,
            Style::Conversational,
        ),
    ];
    for (value, kind, style) in cases {
        assert_eq!(
            problems(value.clone(), kind, style),
            Vec::<String>::new(),
            "{value}"
        );
    }
}

#[test]
fn wrong_types_nulls_and_missing_columns_are_named() {
    use FormatKind::*;
    assert_eq!(
        problems(
            json!({"prompt": "p", "completion": 42}),
            PromptCompletion,
            Style::Standard
        ),
        ["column \"completion\": expected a string, found the number 42"]
    );
    assert_eq!(
        problems(
            json!({"prompt": "p", "completion": null}),
            PromptCompletion,
            Style::Standard
        ),
        ["column \"completion\": expected a string, found null"]
    );
    assert_eq!(
        problems(
            json!({"prompt": "p", "completion": "c"}),
            UnpairedPreference,
            Style::Standard
        ),
        ["column \"label\": expected true or false, found no such column"]
    );
    assert_eq!(
        problems(
            json!({"prompt": "p", "completion": "c", "label": 1}),
            UnpairedPreference,
            Style::Standard
        ),
        ["column \"label\": expected true or false, found the number 1"]
    );
    assert_eq!(
        problems(
            json!({"prompt": [user("Q")], "chosen": "A", "rejected": [assistant("B")]}),
            Preference,
            Style::Conversational
        ),
        [
            "column \"chosen\": expected a list of messages, as in the other rows (conversational format), found a string (standard format)"
        ]
    );
}

#[test]
fn bad_messages_are_named_by_position() {
    use FormatKind::LanguageModeling;
    let conversational = Style::Conversational;
    assert_eq!(
        problems(json!({"messages": []}), LanguageModeling, conversational),
        ["column \"messages\": expected a non-empty list of messages, found an empty list"]
    );
    assert_eq!(
        problems(
            json!({"messages": [user("Q"), {"content": "A"}]}),
            LanguageModeling,
            conversational
        ),
        [
            "column \"messages\", message 2: expected a `role` string (system, user, assistant, tool), found no such column"
        ]
    );
    assert_eq!(
        problems(
            json!({"messages": [{"role": "user", "content": 5}]}),
            LanguageModeling,
            conversational
        ),
        [
            "column \"messages\", message 1: expected a `content` string or a list of text parts, found the number 5"
        ]
    );
    assert_eq!(
        problems(
            json!({"messages": ["hi"]}),
            LanguageModeling,
            conversational
        ),
        [
            "column \"messages\", message 1: expected a {role, content} object, found the string \"hi\""
        ]
    );
    let sharegpt = problems(
        json!({"messages": [{"from": "human", "value": "hi"}]}),
        LanguageModeling,
        conversational,
    );
    assert!(
        sharegpt[0].contains("rename them to `role`/`content`"),
        "{sharegpt:?}"
    );
    let image = problems(
        json!({"messages": [{"role": "user", "content": [{"type": "image"}]}]}),
        LanguageModeling,
        conversational,
    );
    assert!(
        image[0].contains("content part 1") && image[0].contains("\"image\""),
        "{image:?}"
    );
}

#[test]
fn cross_column_rules() {
    use FormatKind::*;
    let system_last = problems(
        json!({"prompt": [{"role": "system", "content": "Be brief."}]}),
        PromptOnly,
        Style::Conversational,
    );
    assert_eq!(
        system_last,
        [
            "column \"prompt\": expected a prompt ending with a user, tool or assistant message, found a last message with role \"system\""
        ]
    );
    assert_eq!(
        problems(
            json!({"chosen": "", "rejected": "No."}),
            ImplicitPreference,
            Style::Standard
        ),
        [
            "column \"chosen\": expected a non-empty string (the prompt is extracted from chosen and rejected), found an empty string"
        ]
    );
    let no_shared_start = problems(
        json!({"chosen": [user("Q1"), assistant("A")], "rejected": [user("Q2"), assistant("B")]}),
        ImplicitPreference,
        Style::Conversational,
    );
    assert_eq!(no_shared_start.len(), 1);
    assert!(
        no_shared_start[0].contains("leaves an empty prompt"),
        "{no_shared_start:?}"
    );
}

#[test]
fn template_columns_are_checked_in_every_format() {
    assert_eq!(
        problems(
            json!({"text": "t", "tools": "not json"}),
            FormatKind::LanguageModeling,
            Style::Standard
        ),
        [
            "column \"tools\": expected a list of tool schemas, or that list as a JSON string, found a string that is not a JSON list"
        ]
    );
    assert_eq!(
        problems(
            json!({"text": "t", "chat_template_kwargs": [1]}),
            FormatKind::LanguageModeling,
            Style::Standard
        ),
        [
            "column \"chat_template_kwargs\": expected an object of chat template variables, found a list of 1 item"
        ]
    );
}
