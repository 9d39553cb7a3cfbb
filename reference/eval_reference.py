#!/usr/bin/env python3
"""Reference numbers for evaluation during training (issue 20), from TRL's own trainers.

    .venv-reference/bin/python reference/eval_reference.py            # every case
    .venv-reference/bin/python reference/eval_reference.py --case sft

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, trl 1.16.0 (see requirements.txt).

Each case trains a tiny fixture model with a TRL trainer on the first rows of a sample dataset
and evaluates on the rows after them (``train_rows`` / ``eval_rows``: [start, end) ranges of the
same file, which the Rust parity tests slice the same way), with ``eval_strategy="steps"``,
``eval_steps=3``, ``eval_on_start=True`` and ``per_device_eval_batch_size=4`` over an eval set
whose size is not a multiple of 4 (so the last eval batch is short and ``eval_loss``'s
per-row weighting shows). The conventions of ``common.base_args`` hold (fp32, one thread,
sequential order, 8 steps, logging every step). The wall-clock values (``train_runtime``...,
``eval_runtime``, ``eval_samples_per_second``, ``eval_steps_per_second``) are written as null.

Output: ``fixtures/expected/eval/<case>.json`` with
    case, description, method, model, dataset, train_rows, eval_rows, versions,
    config        the keyword arguments given to the method's config (TRL names)
    log_history   trainer.state.log_history (wall-clock values null)
    trainer_state global_step, max_steps, epoch, ... (common.trainer_state)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common
from common import MODEL_DIR, ROOT

OUT_DIR = common.EXPECTED_DIR / "eval"
RM_DIR = ROOT / "fixtures" / "models" / "tiny-qwen2-rm"
EVAL_WALL_CLOCK = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
EVAL_ARGS = dict(eval_strategy="steps", eval_steps=3, eval_on_start=True, per_device_eval_batch_size=4)

CASES = {
    "sft": dict(
        description="SFT on text rows 0-47, evaluated on rows 48-60 (13 rows: batches of 4, 4, 4, 1)",
        method="sft", model=MODEL_DIR, dataset="datasets/text.jsonl",
        train_rows=[0, 48], eval_rows=[48, 61], batch=2,
    ),
    "dpo": dict(
        description="DPO (sigmoid) on preference rows 0-35, evaluated on rows 36-46 (11 rows)",
        method="dpo", model=MODEL_DIR, dataset="datasets/preference.jsonl",
        train_rows=[0, 36], eval_rows=[36, 47], batch=2,
    ),
    "kto": dict(
        description="KTO on unpaired rows 0-35, evaluated on rows 36-47 (12 rows, KL from each eval batch)",
        method="kto", model=MODEL_DIR, dataset="datasets/unpaired_preference.jsonl",
        train_rows=[0, 36], eval_rows=[36, 48], batch=4,
    ),
    "reward": dict(
        description="reward modeling on preference rows 0-35, evaluated on rows 36-46 (11 rows)",
        method="reward", model=RM_DIR, dataset="datasets/preference.jsonl",
        train_rows=[0, 36], eval_rows=[36, 47], batch=4,
    ),
}


def trainer_classes(method: str):
    import trl

    return {
        "sft": (trl.SFTConfig, trl.SFTTrainer),
        "dpo": (trl.DPOConfig, trl.DPOTrainer),
        "kto": (trl.KTOConfig, trl.KTOTrainer),
        "reward": (trl.RewardConfig, trl.RewardTrainer),
    }[method]


def run_case(name: str, spec: dict) -> dict:
    import datasets
    from transformers import AutoTokenizer

    common.deterministic_torch()
    rows = common.load_rows(spec["dataset"])
    (t0, t1), (e0, e1) = spec["train_rows"], spec["eval_rows"]
    train_dataset = datasets.Dataset.from_list(rows[t0:t1])
    eval_dataset = datasets.Dataset.from_list(rows[e0:e1])
    kwargs = {**common.base_args(per_device_train_batch_size=spec["batch"]), **EVAL_ARGS}
    config_class, trainer_class = trainer_classes(spec["method"])
    tokenizer = AutoTokenizer.from_pretrained(str(spec["model"]))
    with tempfile.TemporaryDirectory() as tmp:
        config = config_class(output_dir=tmp, **kwargs)
        trainer = trainer_class(
            model=str(spec["model"]),
            args=config,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
        )
        trainer.train()
        history = common.log_history(trainer)
    for entry in history:
        for key in EVAL_WALL_CLOCK:
            if key in entry:
                entry[key] = None
    return {
        "case": name,
        "description": spec["description"],
        "method": spec["method"],
        "model": str(Path(spec["model"]).relative_to(ROOT)),
        "dataset": spec["dataset"],
        "train_rows": spec["train_rows"],
        "eval_rows": spec["eval_rows"],
        "versions": common.versions(),
        "config": common.jsonable(kwargs),
        "log_history": history,
        "trainer_state": common.trainer_state(trainer.state),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--out-dir", default=str(OUT_DIR), help="where to write <case>.json")
    args = parser.parse_args()
    common.init_libraries(warn_pins=True)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.case or list(CASES):
        result = run_case(name, CASES[name])
        (out_dir / f"{name}.json").write_text(common.dump(result), encoding="utf-8")
        evals = [round(e["eval_loss"], 4) for e in result["log_history"] if "eval_loss" in e]
        print(f"{name}: eval_loss={evals}")


if __name__ == "__main__":
    main()
