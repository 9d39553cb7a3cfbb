//! Self-contained checks of the chat template semantics. Every expected string was produced by
//! transformers 5.23's `render_jinja_template` / `apply_chat_template(tokenize=False)` on the same input.

use super::*;
use serde_json::json;

fn render(template: &str, messages: Json, options: &RenderOptions) -> Result<String> {
    ChatTemplate::new(template)?.render(&messages, options)
}

#[test]
fn dicts_print_and_iterate_like_python_with_trimmed_blocks() {
    let template = "{% for m in messages %}\n  {{ m }}|{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}\n{% endfor %}\n";
    let messages =
        json!([{"role": "user", "content": "hi", "z": 1.5, "b": true, "l": [1, "a", null]}]);
    assert_eq!(
        render(template, messages, &RenderOptions::default()).unwrap(),
        "  {'role': 'user', 'content': 'hi', 'z': 1.5, 'b': True, 'l': [1, 'a', None]}|role=user;content=hi;z=1.5;b=True;l=[1, 'a', None];"
    );
}

#[test]
fn none_values_are_dropped_from_messages() {
    let template = "{{ messages[0].tool_calls is defined }} {{ messages[0]|length }}";
    let messages = json!([{"role": "assistant", "content": "x", "tool_calls": null}]);
    assert_eq!(
        render(template, messages, &RenderOptions::default()).unwrap(),
        "False 2"
    );
}

#[test]
fn tools_render_with_python_json_dumps() {
    let template = "{{ tools|tojson }}\n{{ tools[0]|tojson(indent=4) }}{% if documents is none %} nodocs{% endif %}";
    let options = RenderOptions {
        tools: Some(
            json!([{"type": "function", "function": {"name": "f", "parameters": {
            "z": {"type": "string", "description": "Zürich <b>"}, "a": {"type": "integer"}}}}]),
        ),
        ..Default::default()
    };
    let expected = "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"z\": {\"type\": \"string\", \"description\": \"Zürich <b>\"}, \"a\": {\"type\": \"integer\"}}}}]\n{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"f\",\n        \"parameters\": {\n            \"z\": {\n                \"type\": \"string\",\n                \"description\": \"Zürich <b>\"\n            },\n            \"a\": {\n                \"type\": \"integer\"\n            }\n        }\n    }\n} nodocs";
    assert_eq!(
        render(
            template,
            json!([{"role": "user", "content": "x"}]),
            &options
        )
        .unwrap(),
        expected
    );
}

#[test]
fn reasoning_is_aliased_under_every_name() {
    let template =
        "{{ messages[0].reasoning_content }} {{ messages[0].thinking }} {{ messages[0]|list }}";
    let messages = json!([{"role": "assistant", "content": "c", "reasoning": "r"}]);
    assert_eq!(
        render(template, messages, &RenderOptions::default()).unwrap(),
        "r r ['thinking', 'role', 'content', 'reasoning', 'reasoning_content']"
    );
}

#[test]
fn continue_final_message_cuts_after_the_last_message() {
    let template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
    let messages = json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "The answer is"}]);
    let options = RenderOptions {
        continue_final_message: Some("content".into()),
        ..Default::default()
    };
    assert_eq!(
        render(template, messages.clone(), &options).unwrap(),
        "<user>q</user>\n<assistant>The answer is"
    );

    let both = RenderOptions {
        add_generation_prompt: true,
        ..options
    };
    assert!(matches!(
        render(template, messages, &both),
        Err(Error::ChatTemplate { .. })
    ));
}

#[test]
fn generation_blocks_record_assistant_spans() {
    let template = "{% for m in messages %}{% if m.role == 'assistant' %}A: {% generation %}{{ m.content }}<eos>{% endgeneration %}\n{% else %}U: {{ m.content }}\n{% endif %}{% endfor %}";
    let messages = json!([
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "é!"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}
    ]);
    let rendered = ChatTemplate::new(template)
        .unwrap()
        .render_with_generation_spans(&messages, &RenderOptions::default())
        .unwrap();
    // transformers: ('U: q\nA: é!<eos>U: q2\nA: b<eos>', [(8, 15), (24, 30)]) in characters.
    assert_eq!(rendered.text, "U: q\nA: é!<eos>U: q2\nA: b<eos>");
    assert_eq!(rendered.generation_spans, vec![8..16, 25..31]);
    assert_eq!(&rendered.text[8..16], "é!<eos>");
}

#[test]
fn raise_exception_becomes_a_chat_template_error_with_its_message() {
    let template = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant') }}{% endif %}";
    let err = render(
        template,
        json!([{"role": "assistant", "content": "x"}]),
        &RenderOptions::default(),
    )
    .unwrap_err();
    match err {
        Error::ChatTemplate { message } => {
            assert_eq!(message, "Conversation roles must alternate user/assistant")
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn empty_conversations_and_bad_templates_are_errors() {
    assert!(matches!(
        render("{{ x }}", json!([]), &RenderOptions::default()),
        Err(Error::ChatTemplate { .. })
    ));
    assert!(matches!(
        ChatTemplate::new("{% if %}"),
        Err(Error::ChatTemplate { .. })
    ));
}

#[test]
fn extra_variables_are_visible_and_loop_controls_work() {
    let template = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}{{ enable_thinking }}";
    let mut options = RenderOptions::default();
    options.extra.insert("enable_thinking".into(), json!(false));
    let messages = json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]);
    assert_eq!(render(template, messages, &options).unwrap(), "aFalse");
}
