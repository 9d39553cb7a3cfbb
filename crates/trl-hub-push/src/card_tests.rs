use super::*;

fn facts(library: Library) -> FolderFacts {
    FolderFacts {
        library,
        classifier: false,
        adapter_base: None,
        gguf_files: vec![],
        last_logged: vec![
            ("loss".into(), 1.25),
            ("step".into(), 8.0),
            ("epoch".into(), 2.0),
        ],
        summary: vec![
            ("train_loss".into(), 1.5),
            ("train_runtime".into(), 0.000123),
        ],
    }
}

fn front_matter(card: &str) -> &str {
    card.strip_prefix("---\n")
        .unwrap()
        .split("\n---\n")
        .next()
        .unwrap()
}

#[test]
fn a_training_run_card_has_metadata_hyperparameters_and_metrics() {
    let run = RunInfo {
        method: Some("dpo".into()),
        base_model: Some("Qwen/Qwen2.5-0.5B-Instruct".into()),
        datasets: vec![
            "trl-lib/ultrafeedback_binarized".into(),
            "src/card.rs".into(),
        ],
        license: Some("apache-2.0".into()),
        hyperparameters: vec![("learning_rate".into(), "5e-7".into())],
        versions: vec![("burn".into(), "0.22".into())],
    };
    let card = model_card("org/my-model", &facts(Library::Transformers), &run);
    assert_eq!(
        front_matter(&card),
        "base_model: Qwen/Qwen2.5-0.5B-Instruct\nlibrary_name: transformers\nmodel_name: my-model\n\
         tags:\n- trl-rs\n- dpo\ndatasets:\n- trl-lib/ultrafeedback_binarized\nlicense: apache-2.0"
    );
    assert!(
        card.contains(MARKER) && !card.contains("| step |"),
        "{card}"
    );
    for expected in [
        "Direct Preference Optimization (DPO)",
        "- dataset: `src/card.rs`",
        "| learning_rate | 5e-7 |",
        "| loss | 1.25 |",
        "summary (step 8, epoch 2).",
        "| train_loss | 1.5 |",
        "| train_runtime | 1.23000e-4 |",
        "- burn: 0.22",
        "pipeline(\"text-generation\", model=\"org/my-model\")",
    ] {
        assert!(card.contains(expected), "{expected} not in\n{card}");
    }
}

#[test]
fn local_paths_stay_out_of_the_metadata_and_adapters_use_peft() {
    let mut adapter = facts(Library::Peft);
    adapter.adapter_base = Some("meta-llama/Llama-3.2-1B".into());
    let card = model_card("org/lora", &adapter, &RunInfo::default());
    assert!(
        front_matter(&card)
            .starts_with("base_model: meta-llama/Llama-3.2-1B\nlibrary_name: peft\n")
    );
    assert!(card.contains("AutoPeftModelForCausalLM"));
    let run = RunInfo {
        base_model: Some("Cargo.toml".into()), // an existing local path
        ..RunInfo::default()
    };
    let card = model_card("org/x", &facts(Library::Transformers), &run);
    assert!(!card.contains("base_model:"), "{card}");
}

#[test]
fn gguf_cards_tag_gguf_and_show_llama_cpp() {
    let mut gguf = facts(Library::Gguf);
    gguf.gguf_files = vec!["m-q8_0.gguf".into()];
    let card = model_card("org/m-GGUF", &gguf, &RunInfo::default());
    assert!(
        front_matter(&card)
            .contains("library_name: gguf\nmodel_name: m-GGUF\ntags:\n- trl-rs\n- gguf")
    );
    assert!(card.contains("--hf-repo org/m-GGUF --hf-file m-q8_0.gguf"));
}

#[test]
fn yaml_quotes_what_is_not_plain() {
    assert_eq!(yaml("apache-2.0"), "apache-2.0");
    assert_eq!(yaml("a: b"), "\"a: b\"");
}
