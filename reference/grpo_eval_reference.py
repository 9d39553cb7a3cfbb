#!/usr/bin/env python3
"""Reference for GRPO / RLOO evaluation (issue 20): ``trainer.evaluate()`` of TRL 1.16's ``GRPOTrainer`` and
``RLOOTrainer`` on the tiny-llama fixture, with what each eval batch generated recorded, so that a Rust test can
feed those completions to trl-rs's evaluation and compare every ``eval_*`` metric.

    .venv-reference/bin/python reference/grpo_eval_reference.py

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, trl 1.16.0 (``requirements.txt``).

The setup is ``grpo_reference.py``'s (model with the extra EOS id, reward functions ``low_id_share`` and
``length_ratio``, one thread, seed 42, fp32). Each case builds a trainer on train rows [0, 8) of
``datasets/prompt_only.jsonl`` and evaluates, before any training, on rows [8, 13): 5 prompts,
``num_generations_eval`` 2 and ``per_device_eval_batch_size`` 4, so the eval dataloader (TRL's ``RepeatSampler``,
shuffled with ``seed``) yields batches of 4, 4 and 2 completions, and ``eval_loss``'s weighting of the short last
batch (accelerate's remainder counts prompts: 5 % 4 = 1) shows.

Output ``fixtures/expected/grpo/eval.json``:
    versions, model, dataset, train_rows, eval_rows, extra_eos_token_id
    cases.<name>:
      trainer        "GRPOTrainer" | "RLOOTrainer"
      args           config keyword arguments given (everything else is TRL's default)
      reward_funcs   reward function names, in order
      eos_token_ids, pad_token_id
      batches        one entry per eval batch, in order: prompt_ids [B][P_i] (no padding) and completion_ids
                     [B][C_i] (up to and including the first EOS id, no padding)
      metrics        what ``trainer.evaluate()`` returned (wall-clock values null)
"""

from __future__ import annotations

import argparse
import tempfile

import common
import grpo_reference as grpo

OUT_FILE = common.EXPECTED_DIR / "grpo" / "eval.json"
TRAIN_ROWS = (0, 8)
EVAL_ROWS = (8, 13)
WALL_CLOCK = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")

EVAL_ARGS = dict(per_device_eval_batch_size=4, num_generations_eval=2)

# name -> (trainer, reward function names, config keys on top of grpo.BASE_ARGS and EVAL_ARGS)
CASES = {
    "grpo": ("grpo", ["low_id_share", "length_ratio"], {"beta": 0.04, "reward_weights": [1.0, 0.5]}),
    "rloo": ("rloo", ["low_id_share"], {}),
}


def recording(base, batches: list):
    """A subclass of ``base`` that appends each eval batch's prompt and completion ids to ``batches``."""

    class Recording(base):
        def _generate(self, prompts):
            out = super()._generate(prompts)
            assert not self.model.training, "only evaluation runs here"
            batches.append({
                "prompt_ids": [list(map(int, p)) for p in out[0]],
                "completion_ids": [list(map(int, c)) for c in out[1]],
            })
            return out

    return Recording


def run_case(name: str) -> dict:
    import datasets
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    kind, reward_names, extra = CASES[name]
    common.deterministic_torch()
    rows = common.load_rows(grpo.TEXT_DATA)
    kwargs = {**grpo.BASE_ARGS, **EVAL_ARGS, **extra}
    config_cls, trainer_cls = (GRPOConfig, GRPOTrainer) if kind == "grpo" else (RLOOConfig, RLOOTrainer)
    batches: list = []
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(str(grpo.MODEL_DIR))
        trainer = recording(trainer_cls, batches)(
            model=grpo.load_policy(), args=config_cls(output_dir=tmp, **kwargs),
            train_dataset=datasets.Dataset.from_list(rows[TRAIN_ROWS[0]:TRAIN_ROWS[1]]),
            eval_dataset=datasets.Dataset.from_list(rows[EVAL_ROWS[0]:EVAL_ROWS[1]]),
            processing_class=tokenizer, reward_funcs=[grpo.REWARD_FUNCS[n] for n in reward_names],
        )
        metrics = trainer.evaluate()
    for key in WALL_CLOCK:
        metrics[key] = None
    assert len(batches) == 3 and [len(b["completion_ids"]) for b in batches] == [4, 4, 2], batches
    return {
        "trainer": "GRPOTrainer" if kind == "grpo" else "RLOOTrainer",
        "args": common.jsonable(kwargs),
        "reward_funcs": list(trainer.reward_func_names),
        "eos_token_ids": list(trainer.eos_token_ids),
        "pad_token_id": tokenizer.pad_token_id,
        "batches": batches,
        "metrics": common.jsonable(metrics),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    common.init_libraries(warn_pins=True, transformers_progress_bar=False)
    cases = {}
    for name in CASES:
        cases[name] = run_case(name)
        print(f"{name}: {cases[name]['metrics']}")
    out = {
        "description": "TRL 1.16 GRPOTrainer / RLOOTrainer evaluate() before training, with each eval batch's "
        "recorded generations; schema in reference/grpo_eval_reference.py",
        "versions": common.versions(),
        "model": f"fixtures/models/{grpo.MODEL}",
        "dataset": grpo.TEXT_DATA,
        "train_rows": list(TRAIN_ROWS),
        "eval_rows": list(EVAL_ROWS),
        "extra_eos_token_id": grpo.EXTRA_EOS,
        "cases": cases,
    }
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(common.dump(out), encoding="utf-8")
    print(f"wrote {OUT_FILE.relative_to(common.ROOT)} ({OUT_FILE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
