#!/usr/bin/env python3
"""Replay reference for trl-rs's GRPO / RLOO trainers, produced with TRL's own ``GRPOTrainer`` and ``RLOOTrainer``.

    .venv-reference/bin/python reference/grpo_reference.py              # every case
    .venv-reference/bin/python reference/grpo_reference.py --case dapo  # some cases (file then holds only those)

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, trl 1.16.0 (``requirements.txt``).

Writes ``fixtures/expected/grpo/replay.json`` (schema in ``grpo_recording.py``'s docstring) and the sample
dataset ``datasets/prompt_only_conversational.jsonl`` (the prompts of ``prompt_completion_conversational.jsonl``
with the ``answer`` column of ``prompt_only.jsonl``).  Each case runs a real trainer for a few optimizer steps on
the first 8 rows of a prompt-only dataset; hooks record what TRL generated and computed (prompt and completion
ids, rewards per function, advantages, old / reference / policy per-token log-probs, the rows of every optimizer
step) next to ``log_history``, so that a Rust test can feed TRL's completions to trl-rs's trainer and compare
loss, grad_norm and every metric step by step.

Choices forced by the fixture models (checked by ``check_case``):
- Model ``fixtures/models/tiny-llama``, not ``tiny-qwen2`` (the SFT/DPO references' model): tiny-qwen2's sampled
  completions are all the same token (25) at temperature 1, so every reward group has zero std, every advantage
  is 0 and the loss is 0.  tiny-llama samples diverse tokens.
- An extra end-of-sequence id, ``EXTRA_EOS`` (token ``B``): no fixture model gives ``<|im_end|>`` (383) more than
  ~0.1% probability, so no completion would ever terminate and ``mask_truncated_completions``,
  ``completions/*terminated*`` and the length reward would be trivial.  The policy is loaded here with
  ``generation_config.eos_token_id = [383, EXTRA_EOS]``; TRL takes its end-of-sequence ids from there
  (``GRPOTrainer.eos_token_ids``), stops generation at either and counts a completion ending in either (or in the
  pad id) as terminated.  The recorded ``eos_token_ids`` must be used by the replay.
- ``learning_rate`` 1e-4: with 1e-3 or more, one Adam step makes every later completion the single id
  ``EXTRA_EOS`` (it scores 1.0 with ``low_id_share``), so every group has zero reward std and nothing is left to
  compare.  1e-4 still moves every weight (``param_update_norms``) and leaves diverse completions for 3-4 steps.
- Cases whose on-policy loss would be exactly 0 (RLOO: leave-one-out advantages sum to 0 per group; the
  conversational case: every completion has 8 ids) use ``steps_per_generation`` 2 or ``beta`` > 0 so that the
  logged loss carries information; a few steps of other cases still log a loss of ~0 (equal completion lengths
  with a token-summed loss, or ``grpo``'s per-sequence mean with ratio 1): compare those with an absolute
  tolerance.  grad_norm is non-zero at every step where some advantage is.

Conventions (as the other training references): one CPU thread, deterministic algorithms, ``seed=42``, fp32
(``bf16=False``), eager attention, ``report_to="none"``, ``save_strategy="no"``, ``logging_steps=1``;
wall-clock values in ``log_history`` (``step_time``, ``train_runtime``, ...) are null.  Two runs give
byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import math

import common
import grpo_recording as rec

OUT_FILE = common.EXPECTED_DIR / "grpo" / "replay.json"
MODEL = "tiny-llama"
MODEL_DIR = common.ROOT / "fixtures" / "models" / MODEL
EXTRA_EOS = 33  # token "B": ~5% of tiny-llama's sampled tokens
TEXT_DATA = "datasets/prompt_only.jsonl"
CONV_DATA = "datasets/prompt_only_conversational.jsonl"
DATASET_ROWS = 8
MAX_COMPLETION_LENGTH = 8
LOW_ID_LIMIT = 192  # reward `low_id_share` counts completion ids below this


# ------------------------------------------------------------------------------------
# reward functions (TRL passes `completion_ids`: the generated ids up to and including the first EOS, no padding)
# ------------------------------------------------------------------------------------


def low_id_share(completion_ids, **kwargs):
    """Share of the completion's ids (EOS included) that are below ``LOW_ID_LIMIT``; 0.0 for an empty one."""
    return [sum(1 for t in ids if t < LOW_ID_LIMIT) / len(ids) if ids else 0.0 for ids in completion_ids]


def length_ratio(completion_ids, **kwargs):
    """Completion length in ids (EOS included) divided by ``MAX_COMPLETION_LENGTH``."""
    return [len(ids) / MAX_COMPLETION_LENGTH for ids in completion_ids]


REWARD_FUNCS = {"low_id_share": low_id_share, "length_ratio": length_ratio}


# ------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------

# GRPOConfig / RLOOConfig keys set in every case (TrainingArguments names).
BASE_ARGS = dict(
    seed=42,
    max_steps=3,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=1,
    num_generations=4,
    max_completion_length=MAX_COMPLETION_LENGTH,
    temperature=1.0,
    learning_rate=1e-4,
    lr_scheduler_type="constant",
    logging_steps=1,
    report_to="none",
    save_strategy="no",
    use_cpu=True,
    bf16=False,
    fp16=False,
    disable_tqdm=True,
    dataloader_num_workers=0,
)

# name -> (trainer, dataset, reward function names, config keys on top of BASE_ARGS, description)
CASES = {
    "dapo": ("grpo", TEXT_DATA, ["low_id_share"], {}, "GRPO defaults: loss_type dapo, beta 0, scale_rewards group"),
    "grpo_beta": ("grpo", TEXT_DATA, ["low_id_share"], {"loss_type": "grpo", "beta": 0.04},
                  "loss_type grpo with a frozen reference model (k3 KL, beta 0.04)"),
    "dr_grpo": ("grpo", TEXT_DATA, ["low_id_share"], {"loss_type": "dr_grpo"}, "loss_type dr_grpo"),
    "bnpo": ("grpo", TEXT_DATA, ["low_id_share"], {"loss_type": "bnpo", "steps_per_generation": 2, "max_steps": 4},
             "loss_type bnpo; steps_per_generation 2, where it differs from dapo (bnpo divides by the micro-batch's "
             "tokens, dapo by the generation batch's tokens / steps_per_generation)"),
    "cispo": ("grpo", TEXT_DATA, ["low_id_share"], {"loss_type": "cispo"}, "loss_type cispo"),
    "sapo": ("grpo", TEXT_DATA, ["low_id_share"], {"loss_type": "sapo"}, "loss_type sapo"),
    "gspo": ("grpo", TEXT_DATA, ["low_id_share"],
             {"loss_type": "grpo", "importance_sampling_level": "sequence", "steps_per_generation": 2, "max_steps": 4},
             "importance_sampling_level sequence (GSPO) with loss_type grpo, TRL's recommended pairing; "
             "steps_per_generation 2 so that every second step is off-policy (old log-probs, ratio != 1)"),
    "num_iterations": ("grpo", TEXT_DATA, ["low_id_share"],
                       {"num_iterations": 2, "steps_per_generation": 2, "max_steps": 4},
                       "num_iterations 2, steps_per_generation 2: one generation batch of 16 completions, shuffled "
                       "and split in two, each half used twice; old log-probs computed at generation"),
    "scale_batch": ("grpo", TEXT_DATA, ["low_id_share"], {"scale_rewards": "batch"}, "scale_rewards batch"),
    "scale_none": ("grpo", TEXT_DATA, ["low_id_share"], {"scale_rewards": "none"}, "scale_rewards none"),
    "mask_truncated": ("grpo", TEXT_DATA, ["low_id_share"], {"mask_truncated_completions": True},
                       "mask_truncated_completions: completions without EOS get completion_mask 0"),
    "weighted_rewards": ("grpo", TEXT_DATA, ["low_id_share", "length_ratio"], {"reward_weights": [1.0, 0.5]},
                         "two reward functions weighted 1.0 / 0.5"),
    "conversational": ("grpo", CONV_DATA, ["low_id_share"], {"beta": 0.04},
                       "conversational prompts: TRL applies the chat template with add_generation_prompt; beta 0.04 "
                       "so that the loss is not 0 (no completion terminates: all have 8 ids, so the on-policy dapo "
                       "term is 0)"),
    "temperature": ("grpo", TEXT_DATA, ["low_id_share"], {"temperature": 0.7},
                    "temperature 0.7: sampling and every log-prob / entropy use logits / 0.7"),
    "rloo": ("rloo", TEXT_DATA, ["low_id_share"], {"steps_per_generation": 2, "max_steps": 4},
             "RLOO defaults: beta 0.05 (KL folded into the reward); steps_per_generation 2 so that every second "
             "step is off-policy (an on-policy RLOO loss is exactly 0: leave-one-out advantages sum to 0)"),
    "rloo_normalized": ("rloo", TEXT_DATA, ["low_id_share", "length_ratio"],
                        {"normalize_advantages": True, "reward_weights": [1.0, 0.5], "steps_per_generation": 2,
                         "max_steps": 4},
                        "RLOO with normalize_advantages, two weighted rewards, steps_per_generation 2"),
}

# Config values (after __post_init__) written out for every case: the ones the replay depends on.
RESOLVED_KEYS = [
    "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2",
    "adam_epsilon", "max_grad_norm", "optim", "seed", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "num_generations", "generation_batch_size", "steps_per_generation",
    "num_iterations", "max_completion_length", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
    "beta", "epsilon", "epsilon_high", "delta", "loss_type", "importance_sampling_level", "scale_rewards",
    "multi_objective_aggregation", "reward_weights", "mask_truncated_completions", "top_entropy_quantile",
    "entropy_coef", "use_bias_correction_kl", "sapo_temperature_pos", "sapo_temperature_neg",
    "normalize_advantages", "reward_clip_range", "shuffle_dataset", "disable_dropout", "gradient_checkpointing",
    "logging_steps",
]


# ------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------


def write_conversational_dataset() -> None:
    """``datasets/prompt_only_conversational.jsonl``: prompts of the conversational prompt-completion sample
    (a system message on every other row) with the short answers of ``prompt_only.jsonl``."""
    convs = common.load_rows("datasets/prompt_completion_conversational.jsonl")
    texts = common.load_rows(TEXT_DATA)
    lines = [json.dumps({"prompt": c["prompt"], "answer": t["answer"]}) for c, t in zip(convs, texts, strict=True)]
    (common.ROOT / CONV_DATA).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------
# running one case
# ------------------------------------------------------------------------------------


def load_policy():
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(MODEL_DIR), dtype=torch.float32, attn_implementation="eager")
    model.generation_config.eos_token_id = [model.generation_config.eos_token_id, EXTRA_EOS]
    return model


def run_case(name: str) -> dict:
    import tempfile

    import datasets
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    kind, data, reward_names, extra, description = CASES[name]
    common.deterministic_torch()
    rows = common.load_rows(data, DATASET_ROWS)
    kwargs = {**BASE_ARGS, **extra}
    config_cls, trainer_cls = (GRPOConfig, GRPOTrainer) if kind == "grpo" else (RLOOConfig, RLOOTrainer)
    recorder = rec.Recorder(rows)
    with tempfile.TemporaryDirectory() as tmp:
        config = config_cls(output_dir=tmp, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
        trainer = rec.recording_trainer(trainer_cls, recorder)(
            model=load_policy(), args=config, train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer, reward_funcs=[REWARD_FUNCS[n] for n in reward_names],
        )
        initial = common.initial_params(trainer.model)
        initial_norms = common.param_norms(trainer.model)
        trainer.train()
        result = {
            "trainer": "GRPOTrainer" if kind == "grpo" else "RLOOTrainer",
            "description": description,
            "dataset": data,
            "dataset_rows": DATASET_ROWS,
            "reward_funcs": list(trainer.reward_func_names),
            "args": common.jsonable(kwargs),
            "resolved_config": {k: common.jsonable(getattr(config, k)) for k in RESOLVED_KEYS if hasattr(config, k)},
            "eos_token_ids": list(trainer.eos_token_ids),
            "pad_token_id": tokenizer.pad_token_id,
            "reference_model": trainer.ref_model is not None,
            **recorder.result(),
            "log_history": log_history(trainer),
            "param_norms_initial": initial_norms,
            "param_norms_final": common.param_norms(trainer.model),
            "param_update_norms": common.param_update_norms(trainer.model, initial),
        }
    check_case(name, result)
    return result


def log_history(trainer) -> list[dict]:
    """``common.log_history`` with ``step_time`` (wall clock) also set to null."""
    out = common.log_history(trainer)
    for entry in out:
        if "step_time" in entry:
            entry["step_time"] = None
    return out


def check_case(name: str, result: dict) -> None:
    """Asserts that TRL ran what this case claims: finite losses, moving weights, diverse completions with
    non-zero advantages, terminated and truncated completions where the case needs them."""
    steps = [e for e in result["log_history"] if "loss" in e]
    assert len(steps) == result["args"]["max_steps"], f"{name}: {len(steps)} logged steps"
    assert all(math.isfinite(e["loss"]) and math.isfinite(e["grad_norm"]) for e in steps), f"{name}: non-finite"
    assert any(e["grad_norm"] > 0 for e in steps), f"{name}: no gradient"
    assert any(v > 0 for v in result["param_update_norms"].values()), f"{name}: weights did not move"
    for g in result["generations"]:
        comps = [tuple(c) for c in g["completion_ids"]]
        assert len(set(comps)) >= 2, f"{name}: every completion is the same"
        assert any(a != 0 for a in g["advantages"]), f"{name}: every advantage is 0"
    gens = result["generations"]
    if len(gens) > 1:
        assert gens[0]["completion_ids"] != gens[1]["completion_ids"], f"{name}: same completions twice"
    truncated = [t for g in gens for t in g["is_truncated"]]
    if name in ("mask_truncated", "weighted_rewards"):
        assert any(truncated) and not all(truncated), f"{name}: need both terminated and truncated completions"
    if result["resolved_config"].get("beta"):
        assert all("ref_per_token_logps" in g for g in gens), f"{name}: no reference log-probs"
        assert any("kl" in e for e in steps), f"{name}: no kl metric"
    if result["resolved_config"]["num_iterations"] > 1:
        assert all("old_per_token_logps" in g for g in gens), f"{name}: no old log-probs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    args = parser.parse_args()

    common.init_libraries(warn_pins=True, transformers_progress_bar=False)
    write_conversational_dataset()
    cases = {}
    for name in args.case or list(CASES):
        cases[name] = run_case(name)
        losses = [round(e["loss"], 5) for e in cases[name]["log_history"] if "loss" in e]
        rewards = [round(e["reward"], 3) for e in cases[name]["log_history"] if "reward" in e]
        print(f"{name}: losses={losses} rewards={rewards}")
    out = {
        "description": "TRL 1.16 GRPOTrainer / RLOOTrainer runs with recorded generations, for the replay test; "
        "schema in reference/grpo_recording.py",
        "versions": common.versions(),
        "model": f"fixtures/models/{MODEL}",
        "extra_eos_token_id": EXTRA_EOS,
        "reward_functions": {
            "low_id_share": f"share of completion_ids (EOS included) below {LOW_ID_LIMIT}; 0 for an empty completion",
            "length_ratio": f"len(completion_ids) (EOS included) / {MAX_COMPLETION_LENGTH}",
        },
        "cases": cases,
    }
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(common.dump(out), encoding="utf-8")
    print(f"wrote {OUT_FILE.relative_to(common.ROOT)} ({OUT_FILE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
