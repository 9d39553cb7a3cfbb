//! Evaluation against TRL 1.16: `reference/grpo_eval_reference.py` ran `trainer.evaluate()`
//! of TRL's `GRPOTrainer` and `RLOOTrainer` on the tiny-llama fixture (5 eval prompts,
//! `num_generations_eval` 2, eval batches of 4) and recorded what each eval batch generated.
//! Here our evaluation gets TRL's completions (a test-only [`CompletionSource`] that also
//! checks each batch's prompts, hence TRL's eval sampler order) and must log every `eval_*`
//! metric TRL logged, under the same names, with the same values.

use serde_json::{Map, Value, json};
use trl_core::model::CausalLm;
use trl_core::parity::{assert_eval_history_matches, read_case_row_range, read_fixture};
use trl_core::train::{EvalContext, evaluate};

use crate::data::prepare_prompts;
use crate::replay_tests::{CaseSetup, case_configs, case_setup};
use crate::rollout::CompletionSource;
use crate::trainer::GrpoMethod;

const FIXTURE: &str = "fixtures/expected/grpo/eval.json";

/// TRL's eval batches, in order.
struct EvalReplay {
    batches: Vec<Value>,
}

impl CompletionSource for EvalReplay {
    fn complete(
        &mut self,
        _: &CausalLm,
        _: &[Vec<u32>],
        g: u64,
        _: u64,
    ) -> trl_core::Result<Vec<Vec<u32>>> {
        panic!("generation {g}: only evaluation runs here")
    }

    fn complete_eval(
        &mut self,
        _model: &CausalLm,
        prompts: &[Vec<u32>],
        step: u64,
        batch: usize,
        _first_row: u64,
    ) -> trl_core::Result<Vec<Vec<u32>>> {
        assert_eq!(step, 0);
        let recorded = &self.batches[batch];
        let want: Vec<Vec<u32>> = serde_json::from_value(recorded["prompt_ids"].clone()).unwrap();
        assert_eq!(
            prompts,
            want.as_slice(),
            "eval batch {batch}: prompts differ from TRL's"
        );
        Ok(serde_json::from_value(recorded["completion_ids"].clone()).unwrap())
    }
}

fn replay_eval(name: &str) {
    let fixture = read_fixture(FIXTURE);
    let case = &fixture["cases"][name];
    let out = tempfile::tempdir().unwrap();
    let (args, config, variant) = case_configs(case, &out);
    let source = Box::new(EvalReplay {
        batches: case["batches"].as_array().unwrap().clone(),
    });
    let CaseSetup {
        device,
        model,
        parts,
        ..
    } = case_setup(&fixture, case, &config, variant, source);
    let rows = read_case_row_range(&fixture, "eval_rows");
    let examples = prepare_prompts(&rows, &parts.tokenizer, &Map::new()).unwrap();
    let mut method = GrpoMethod::new(config, &args, parts).unwrap();
    let ctx = EvalContext {
        step: 0,
        num_tokens: 0.0,
        device: &device,
        batch: 0,
    };
    let batch_size = args.per_device_eval_batch_size;
    let summary = evaluate(&mut method, &model, &examples, batch_size, &ctx)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // As the loop logs it (TRL's `log` adds the step to what `evaluate()` returned).
    let mut ours = summary.metrics;
    ours.insert("epoch".into(), json!(0));
    ours.insert("step".into(), json!(0));
    let mut want = case["metrics"].clone();
    want["step"] = json!(0);
    let want = json!([want]);
    assert_eval_history_matches(name, &[ours], &want, 2e-3, 2e-3, &["epoch"]);
}

#[test]
fn grpo_eval_matches_trl() {
    replay_eval("grpo");
}

#[test]
fn rloo_eval_matches_trl() {
    replay_eval("rloo");
}
