#!/usr/bin/env python3
"""Reference numbers for trl-rs's reward-model trainer, produced with TRL's own ``RewardTrainer``.

    /work/pyref/bin/python reference/reward_reference.py                # losses.json + all cases
    /work/pyref/bin/python reference/reward_reference.py --losses-only
    /work/pyref/bin/python reference/reward_reference.py --case preference

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, trl 1.16.0 (see requirements.txt).
Conventions follow ``reference/sft_reference.py`` (fp32, eager attention, seed 42, sequential sampling,
``bf16=False``, ``use_cpu``, ``report_to="none"``, ``save_strategy="no"``, ``logging_steps=1``, wall-clock
fields nulled; two runs give byte-identical files).  Semantics: ``docs/notes/trl-kto-reward-semantics.md``.

``cargo xtask reference`` runs this script with all the others (``--check`` compares a fresh run with the
committed fixtures).

What it writes (``fixtures/expected/reward/``)
----------------------------------------------
``losses.json``: the Bradley-Terry loss on fixed synthetic rewards, computed by calling TRL's own
``RewardTrainer.compute_loss`` on a stand-in ``self`` whose "model" returns the given scores.  Schema::

    {"versions": {...},
     "formula": "...",
     "cases": [{"name", "description",
                "inputs": {"rewards_chosen": [float], "rewards_rejected": [float], "margin": [float] | null,
                           "center_rewards_coefficient": float | null, "attention_mask_tokens": int},
                "outputs": {"loss": float,
                            "metrics": {num_tokens, min_reward, mean_reward, max_reward, accuracy, margin}}}]}

``<case>.json`` (one per entry of ``CASES``): an 8-step training run starting from
``fixtures/models/tiny-qwen2-rm`` (Qwen2ForSequenceClassification, num_labels=1)::

    case, description, dataset, versions
    reward_config       kwargs given to RewardConfig (TRL names; output_dir omitted)
    resolved_config     resulting RewardConfig values that matter (defaults included)
    trainer_info        model, pad/eos ids (tokenizer and model.config), optimizer groups, num_parameters,
                        len_dataloader, num_update_steps_per_epoch, loss_is_scaled_for_ga, saved_model
                        (files written by trainer.save_model, config fields, tensor names/shapes)
    prepared_dataset    num_rows, columns, chosen/rejected lengths (every row), first rows' chosen_ids /
                        rejected_ids in full, margin (every row) when present
    first_batch         the first collated micro-batch as compute_loss received it: input_ids ([2B, T], the B
                        chosen sequences first, then the B rejected ones), attention_mask, margin (if any)
    micro_batches       one entry per compute_loss call: global_step, shape, rewards_chosen, rewards_rejected
                        (model scores at the last non-pad token), margin, loss (as returned by compute_loss, before
                        the Trainer's division by gradient_accumulation_steps), metrics (values TRL appended)
    log_history         trainer.state.log_history, wall-clock values set to null
    trainer_state       global_step, max_steps, epoch, num_train_epochs, logging_steps, train_batch_size, total_flos
    final_scores_first_batch   scores ([2B]) of the trained model (eval mode, no grad) on first_batch
    param_update_norms  L2 norm of (final - initial) of every named parameter
    train_output        {global_step, training_loss}

``preference_from_causal_lm.json`` (case ``from_causal_lm``) starts from ``fixtures/models/tiny-qwen2``
(Qwen2ForCausalLM).  Its ``score`` head is freshly initialised (normal(0, initializer_range) drawn from torch's
RNG after ``set_seed(42)``), so only structure is recorded: prepared data, first batch, key layout of
log_history, micro-batch shapes, the score head's shape and init statistics (``score_init``), and the saved model.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import common
from common import FIRST_ROWS, ROOT, jsonable

RM_DIR = ROOT / "fixtures" / "models" / "tiny-qwen2-rm"
LM_DIR = common.MODEL_DIR
OUT_DIR = common.EXPECTED_DIR / "reward"

BASE_ARGS = common.base_args(per_device_train_batch_size=4)

MARGINS = [0.0, 0.5, 1.0]  # margin column of the 'preference_margin_center' case: MARGINS[i % 3]

CASES = {
    "preference": dict(
        description="explicit-prompt preference, standard; EOS appended to chosen/rejected; rows longer than "
        "max_length=64 are dropped (not truncated)",
        dataset="datasets/preference.jsonl",
        args={},
    ),
    "preference_conversational": dict(
        description="explicit-prompt preference, conversational (chat template, no EOS added); max_length=128",
        dataset="datasets/preference_conversational.jsonl",
        args={"max_length": 128},
    ),
    "preference_implicit": dict(
        description="implicit-prompt preference, standard: no prompt extraction, chosen/rejected tokenized as "
        "they are -> same tokens and numbers as 'preference'",
        dataset="datasets/preference_implicit.jsonl",
        args={},
    ),
    "preference_margin_center": dict(
        description="as 'preference' plus a 'margin' column (MARGINS[i % 3]) and center_rewards_coefficient=0.01",
        dataset="datasets/preference.jsonl",
        args={"center_rewards_coefficient": 0.01},
        add_margin=True,
    ),
    "preference_ga2": dict(
        description="as 'preference' with per_device_train_batch_size=2, gradient_accumulation_steps=2 "
        "(per-micro-batch mean loss, divided by GA by the Trainer)",
        dataset="datasets/preference.jsonl",
        args={"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2},
    ),
}


# ------------------------------------------------------------------------------------
# Part 1: the pure loss on synthetic rewards, through TRL's own compute_loss
# ------------------------------------------------------------------------------------

LOSS_CASES = [
    dict(
        name="basic",
        description="plain Bradley-Terry: -mean(logsigmoid(r_c - r_r))",
        rewards_chosen=[1.5, -0.25, 0.75, 2.0],
        rewards_rejected=[0.5, 0.25, 0.75, -1.0],
        margin=None,
        center_rewards_coefficient=None,
    ),
    dict(
        name="margin",
        description="with a margin column: -mean(logsigmoid(r_c - r_r - margin))",
        rewards_chosen=[1.5, -0.25, 0.75, 2.0],
        rewards_rejected=[0.5, 0.25, 0.75, -1.0],
        margin=[0.0, 0.5, 1.0, 2.5],
        center_rewards_coefficient=None,
    ),
    dict(
        name="center",
        description="center_rewards_coefficient=0.01: + 0.01 * mean((r_c + r_r)^2)",
        rewards_chosen=[1.5, -0.25, 0.75, 2.0],
        rewards_rejected=[0.5, 0.25, 0.75, -1.0],
        margin=None,
        center_rewards_coefficient=0.01,
    ),
    dict(
        name="margin_center",
        description="margin and center_rewards_coefficient=0.1 together",
        rewards_chosen=[3.0, -2.0, 0.1],
        rewards_rejected=[1.0, -1.5, 0.2],
        margin=[1.0, 0.0, 0.25],
        center_rewards_coefficient=0.1,
    ),
    dict(
        name="ties_and_large",
        description="ties count as wrong for accuracy (strict >); large differences saturate logsigmoid stably",
        rewards_chosen=[0.0, 50.0, -50.0, 1.0],
        rewards_rejected=[0.0, -50.0, 50.0, 1.0],
        margin=None,
        center_rewards_coefficient=None,
    ),
    dict(
        name="single_pair",
        description="batch of one pair",
        rewards_chosen=[-0.3],
        rewards_rejected=[0.4],
        margin=None,
        center_rewards_coefficient=None,
    ),
]


def compute_loss_cases() -> dict:
    import types
    from collections import defaultdict

    import torch
    from trl.trainer.reward_trainer import RewardTrainer

    class FakeAccelerator:
        device = torch.device("cpu")

        def gather(self, x):
            return x

        def gather_for_metrics(self, x):
            return x

    class FakeModel:
        training = True

        def __init__(self, scores):
            self.scores = scores

        def __call__(self, input_ids=None, attention_mask=None, **kwargs):
            assert input_ids.shape[0] == self.scores.shape[0]
            return types.SimpleNamespace(logits=self.scores.clone())

    results = []
    for case in LOSS_CASES:
        n = len(case["rewards_chosen"])
        scores = torch.tensor(case["rewards_chosen"] + case["rewards_rejected"], dtype=torch.float32).unsqueeze(-1)
        lengths = [3 + (i % 4) for i in range(2 * n)]
        width = max(lengths)
        inputs = {
            "input_ids": torch.tensor([[5] * l + [0] * (width - l) for l in lengths]),
            "attention_mask": torch.tensor([[1] * l + [0] * (width - l) for l in lengths]),
        }
        if case["margin"] is not None:
            inputs["margin"] = torch.tensor(case["margin"], dtype=torch.float)
        model = FakeModel(scores)
        fake = types.SimpleNamespace()
        fake.model = model
        fake.accelerator = FakeAccelerator()
        fake.args = types.SimpleNamespace(center_rewards_coefficient=case["center_rewards_coefficient"])
        fake._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        fake._total_train_tokens = 0
        fake._tp_size = 1
        loss = RewardTrainer.compute_loss(fake, model, inputs)

        # cross-check against the written-out formula (float64)
        def logsig(x):
            return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))

        m = case["margin"] or [0.0] * n
        ref = -sum(logsig(c - r - mm) for c, r, mm in zip(case["rewards_chosen"], case["rewards_rejected"], m)) / n
        if case["center_rewards_coefficient"] is not None:
            ref += case["center_rewards_coefficient"] * sum(
                (c + r) ** 2 for c, r in zip(case["rewards_chosen"], case["rewards_rejected"])
            ) / n
        assert abs(float(loss) - ref) < 1e-5 * max(1.0, abs(ref)), (case["name"], float(loss), ref)

        metrics = {k: v[-1] for k, v in fake._metrics["train"].items()}
        results.append({
            "name": case["name"],
            "description": case["description"],
            "inputs": {
                "rewards_chosen": case["rewards_chosen"],
                "rewards_rejected": case["rewards_rejected"],
                "margin": case["margin"],
                "center_rewards_coefficient": case["center_rewards_coefficient"],
                "attention_mask_tokens": int(inputs["attention_mask"].sum()),
            },
            "outputs": {"loss": float(loss), "metrics": metrics},
        })
    return {
        "versions": common.versions(),
        "formula": (
            "loss = -mean_i logsigmoid(r_c_i - r_r_i [- margin_i]) [+ c * mean_i (r_c_i + r_r_i)^2]; "
            "min/mean/max_reward over all 2B scores; accuracy = mean(r_c > r_r) (strict); "
            "margin = mean(r_c - r_r) (margin column NOT subtracted); num_tokens = cumulative attention_mask sum"
        ),
        "cases": results,
    }


# ------------------------------------------------------------------------------------
# Part 2: 8-step training runs
# ------------------------------------------------------------------------------------


def _saved_model_info(trainer, out_dir: Path) -> dict:
    from safetensors import safe_open

    trainer.save_model(str(out_dir))
    files = sorted(p.name for p in out_dir.iterdir())
    cfg = json.loads((out_dir / "config.json").read_text())
    tensors = {}
    with safe_open(str(out_dir / "model.safetensors"), framework="pt") as f:
        for k in sorted(f.keys()):
            tensors[k] = list(f.get_slice(k).get_shape())
    keep = ["architectures", "num_labels", "id2label", "label2id", "pad_token_id", "eos_token_id",
            "tie_word_embeddings", "dtype", "problem_type", "use_cache"]
    return {
        "files": files,
        "config": {k: cfg.get(k) for k in keep},
        "tensor_names": [k for k in tensors if not k.startswith("model.layers.")],
        "num_tensors": len(tensors),
        "score_shape": tensors.get("score.weight"),
    }


def run_case(name: str, spec: dict, model_dir: Path = RM_DIR, structure_only: bool = False) -> dict:
    import datasets
    import torch
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    common.deterministic_torch()
    rows = common.load_rows(spec["dataset"])
    if spec.get("add_margin"):
        rows = [{**row, "margin": MARGINS[i % len(MARGINS)]} for i, row in enumerate(rows)]
    train_dataset = datasets.Dataset.from_list(rows)

    kwargs = {**BASE_ARGS, **spec["args"]}
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))

    micro_batches: list[dict] = []
    first_batch: dict = {}
    captured: list = []

    class RecordingRewardTrainer(RewardTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            common.record_first_batch(first_batch, inputs)
            before = common.metric_lengths(self)
            captured.clear()
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            scores = captured[-1]
            b = scores.shape[0] // 2
            metrics = common.appended_metrics(self, before)
            micro_batches.append({
                "global_step": self.state.global_step,
                "shape": list(inputs["input_ids"].shape),
                "rewards_chosen": scores[:b].tolist(),
                "rewards_rejected": scores[b:].tolist(),
                "margin": inputs["margin"].tolist() if "margin" in inputs else None,
                "loss": float(loss.detach()),
                "metrics": metrics,
            })
            return loss

    with tempfile.TemporaryDirectory() as tmp:
        config = RewardConfig(output_dir=tmp, **kwargs)
        trainer = RecordingRewardTrainer(
            model=str(model_dir),
            args=config,
            train_dataset=train_dataset,
            processing_class=tokenizer,
        )
        original_forward = trainer.model.forward

        def recording_forward(*args, **kw):
            out = original_forward(*args, **kw)
            captured.append(out.logits.detach().squeeze(-1).clone())
            return out

        trainer.model.forward = recording_forward

        score_init = None
        if structure_only:
            w = trainer.model.score.weight.detach().double()
            score_init = {
                "shape": list(w.shape),
                "mean": float(w.mean()),
                "std": float(w.std()),
                "rule": "normal(mean=0, std=config.initializer_range=0.02), torch RNG after set_seed(42)",
                "has_lm_head": hasattr(trainer.model, "lm_head"),
            }

        optimizer_groups = common.optimizer_groups(trainer, config)

        ds = trainer.train_dataset
        prepared = {
            "num_rows": len(ds),
            "columns": list(ds.column_names),
            "chosen_lengths": [len(x) for x in ds["chosen_ids"]],
            "rejected_lengths": [len(x) for x in ds["rejected_ids"]],
            "chosen_ids": [list(x) for x in ds["chosen_ids"][:FIRST_ROWS]],
            "rejected_ids": [list(x) for x in ds["rejected_ids"][:FIRST_ROWS]],
        }
        if "margin" in ds.column_names:
            prepared["margin"] = list(ds["margin"])

        len_dataloader, num_update_steps_per_epoch = common.dataloader_steps(trainer, config)
        initial = common.initial_params(trainer.model)
        train_output = trainer.train()
        log_history = common.log_history(trainer)

        trainer.model.eval()
        with torch.no_grad():
            fb = {k: torch.tensor(v) for k, v in first_batch.items() if k in ("input_ids", "attention_mask")}
            final_scores = original_forward(**fb, use_cache=False).logits.squeeze(-1).tolist()

        param_update_norms = common.param_update_norms(trainer.model, initial)
        saved = _saved_model_info(trainer, Path(tmp) / "final_model")

        resolved_keys = [
            "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2",
            "adam_epsilon", "max_grad_norm", "optim", "seed", "max_steps", "num_train_epochs",
            "per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps", "save_strategy",
            "train_sampling_strategy", "dataloader_drop_last", "bf16", "fp16", "gradient_checkpointing",
            "remove_unused_columns", "max_length", "pad_to_multiple_of", "center_rewards_coefficient",
            "disable_dropout", "eos_token", "pad_token", "chat_template_path", "activation_offloading",
        ]
        resolved = {k: jsonable(getattr(config, k)) for k in resolved_keys}

        opt = common.unwrapped_optimizer(trainer)
        state = trainer.state
        trainer_info = {
            "model": str(model_dir.relative_to(ROOT)),
            "model_class": type(trainer.model).__name__,
            "loss_is_scaled_for_ga": trainer.loss_is_scaled_for_ga,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "model_config_pad_token_id": trainer.model.config.pad_token_id,
            "num_parameters": trainer.model.num_parameters(),
            "num_parameters_exclude_embeddings": trainer.model.num_parameters(exclude_embeddings=True),
            "optimizer_class": type(opt).__name__,
            "optimizer_groups": optimizer_groups,
            "len_dataloader": len_dataloader,
            "num_update_steps_per_epoch": num_update_steps_per_epoch,
            "saved_model": saved,
        }
        result = {
            "case": name,
            "description": spec["description"],
            "dataset": spec["dataset"],
            "versions": common.versions(),
            "reward_config": jsonable(kwargs),
            "resolved_config": resolved,
            "trainer_info": trainer_info,
            "prepared_dataset": prepared,
            "first_batch": first_batch,
        }
        if structure_only:
            result["score_init"] = score_init
            result["log_history_keys"] = [list(e.keys()) for e in log_history]
            result["micro_batch_shapes"] = [e["shape"] for e in micro_batches]
            result["trainer_state"] = {"global_step": state.global_step, "max_steps": state.max_steps,
                                       "epoch": state.epoch, "total_flos": state.total_flos}
            return result
        result.update({
            "micro_batches": micro_batches,
            "log_history": log_history,
            "trainer_state": common.trainer_state(state),
            "final_scores_first_batch": final_scores,
            "param_update_norms": param_update_norms,
            "train_output": common.train_output(train_output),
        })
    return result


FROM_CAUSAL_LM = dict(
    description="structure only: RewardTrainer given the causal LM tiny-qwen2 -> AutoModelForSequenceClassification "
    "with num_labels=1; lm_head dropped, score head freshly initialised (random)",
    dataset="datasets/preference.jsonl",
    args={},
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses-only", action="store_true", help="only write losses.json")
    parser.add_argument("--case", action="append", choices=sorted(CASES) + ["from_causal_lm"],
                        help="run only these cases")
    parser.add_argument("--out-dir", default=str(OUT_DIR), help="where to write the files")
    args = parser.parse_args()

    common.init_libraries()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.case:
        (out_dir / "losses.json").write_text(common.dump(compute_loss_cases()), encoding="utf-8")
        print("losses.json written")
    if args.losses_only:
        return
    names = args.case or list(CASES) + ["from_causal_lm"]
    for name in names:
        if name == "from_causal_lm":
            result = run_case(name, FROM_CAUSAL_LM, model_dir=LM_DIR, structure_only=True)
            (out_dir / "preference_from_causal_lm.json").write_text(common.dump(result), encoding="utf-8")
            print(f"{name}: rows={result['prepared_dataset']['num_rows']} score_init={result['score_init']}")
        else:
            common.write_cases(out_dir, [name], lambda name: run_case(name, CASES[name]))


if __name__ == "__main__":
    main()
