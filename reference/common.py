"""Pieces shared by the reference scripts (``*_reference.py``).

Nothing heavy is imported at module level: ``setup_env`` has to run before torch / transformers /
datasets are imported, so every helper that needs them imports them itself.

Conventions of the training references (see ``sft_reference.py``): one CPU thread, deterministic
algorithms, ``seed=42``, fp32 (``bf16=False`` must be passed: TRL configs default it to True),
eager attention, ``train_sampling_strategy="sequential"``, ``report_to="none"``,
``save_strategy="no"``, ``logging_steps=1``; wall-clock values in ``log_history`` are replaced by
``null`` so that two runs give byte-identical files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REF = Path(__file__).resolve().parent
ROOT = REF.parent
MODEL_DIR = ROOT / "fixtures" / "models" / "tiny-qwen2"
EXPECTED_DIR = ROOT / "fixtures" / "expected"

WALL_CLOCK_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second")
FIRST_ROWS = 4  # rows of the prepared dataset written out in full
PINNED = {"torch": "2.15", "transformers": "5.23.0", "trl": "1.16.0"}


def base_args(per_device_train_batch_size: int = 2) -> dict:
    """Training arguments shared by every training case (TRL / TrainingArguments names)."""
    return dict(
        seed=42,
        max_steps=8,
        per_device_train_batch_size=per_device_train_batch_size,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        logging_steps=1,
        train_sampling_strategy="sequential",
        report_to="none",
        save_strategy="no",
        max_length=64,
        use_cpu=True,
        bf16=False,
        model_init_kwargs={"dtype": "float32", "attn_implementation": "eager"},
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


# ------------------------------------------------------------------------------------
# environment
# ------------------------------------------------------------------------------------


def setup_env() -> None:
    """No hub access; no telemetry; quiet, single-threaded, deterministic.  Call before importing torch."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def init_libraries(warn_pins: bool = False, transformers_progress_bar: bool = True) -> None:
    """``setup_env`` + quiet transformers / datasets logging (+ a warning when versions differ from the pins)."""
    setup_env()
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    if not transformers_progress_bar:
        transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    if warn_pins:
        import torch
        import trl

        got = {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}
        for k, v in PINNED.items():
            if not got[k].startswith(v):
                print(f"warning: {k} {got[k]} != pinned {v}", file=sys.stderr)


def deterministic_torch() -> None:
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def versions(with_datasets: bool = True) -> dict:
    import accelerate
    import torch
    import transformers
    import trl

    out = {
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }
    if with_datasets:
        import datasets

        out["datasets"] = datasets.__version__
    out["accelerate"] = accelerate.__version__
    return out


# ------------------------------------------------------------------------------------
# data in / out
# ------------------------------------------------------------------------------------


def load_rows(relpath, limit: int | None = None) -> list[dict]:
    """Rows of a jsonl file given relative to the repository root (the first ``limit`` when given:
    a case's ``dataset_rows``, which the Rust parity tests apply the same way)."""
    rows = [json.loads(line) for line in open(ROOT / relpath, encoding="utf-8")]
    return rows if limit is None else rows[:limit]


def load_dataset(relpath, limit: int | None = None):
    import datasets

    return datasets.Dataset.from_list(load_rows(relpath, limit))


def to_list(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().tolist()
    return x


def jsonable(v):
    import enum

    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def dump(obj) -> str:
    """Compact but diff-friendly JSON: one line per top-level key / list row."""

    def enc(v, indent):
        pad = "  " * indent
        if isinstance(v, dict):
            if not v:
                return "{}"
            if all(not isinstance(x, (dict, list)) for x in v.values()) and len(v) <= 12:
                return json.dumps(v)
            items = [f"{pad}  {json.dumps(k)}: {enc(x, indent + 1)}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(v, list):
            if all(not isinstance(x, (dict, list)) for x in v):
                return json.dumps(v)
            items = [f"{pad}  {enc(x, indent + 1)}" for x in v]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        return json.dumps(v)

    return enc(obj, 0) + "\n"


def write_cases(out_dir: Path, names, run) -> None:
    """Runs ``run(name)`` for every case, writes ``<name>.json`` and prints the logged losses."""
    for name in names:
        result = run(name)
        (out_dir / f"{name}.json").write_text(dump(result), encoding="utf-8")
        losses = [e["loss"] for e in result["log_history"] if "loss" in e]
        print(f"{name}: rows={result['prepared_dataset']['num_rows']} losses={[round(x, 4) for x in losses]}")


# ------------------------------------------------------------------------------------
# capturing a trainer run
# ------------------------------------------------------------------------------------


def record_first_batch(first_batch: dict, inputs) -> None:
    """Fills ``first_batch`` with the collated micro-batch the first time it is called."""
    if not first_batch:
        for key, value in inputs.items():
            first_batch[key] = to_list(value)


def appended_metrics(trainer, before: dict, all_new: bool = False) -> dict:
    """Values appended to ``trainer._metrics['train']`` since ``before`` (name -> list length).
    ``num_tokens`` is overwritten each call with the running total, so its last value is always taken.
    With ``all_new`` a metric appended several times gives the list of the new values."""
    out = {}
    for k, v in trainer._metrics["train"].items():
        n = before.get(k, 0)
        if k == "num_tokens":
            out[k] = v[-1]
        elif len(v) > n:
            out[k] = v[-1] if not all_new or len(v) == n + 1 else v[n:]
    return out


def metric_lengths(trainer) -> dict:
    return {k: len(v) for k, v in trainer._metrics["train"].items()}


def optimizer_groups(trainer, config) -> list[dict]:
    """Optimizer parameter groups, as the Trainer builds them (names instead of tensors)."""
    decay = set(trainer.get_decay_parameter_names(trainer.model))
    named = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
    return [
        {"weight_decay": config.weight_decay, "params": [n for n, _ in named if n in decay]},
        {"weight_decay": 0.0, "params": [n for n, _ in named if n not in decay]},
    ]


def unwrapped_optimizer(trainer):
    return trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer


def dataloader_steps(trainer, config) -> tuple[int, int]:
    """(len_dataloader, num_update_steps_per_epoch), as Trainer._inner_training_loop computes them."""
    len_dataloader = len(trainer.get_train_dataloader())
    ga = config.gradient_accumulation_steps
    return len_dataloader, max(len_dataloader // ga + int(len_dataloader % ga > 0), 1)


def log_history(trainer) -> list[dict]:
    """``trainer.state.log_history`` with the wall-clock values set to null."""
    out = []
    for entry in trainer.state.log_history:
        entry = dict(entry)
        for key in WALL_CLOCK_KEYS:
            if key in entry:
                entry[key] = None
        out.append(entry)
    return out


def initial_params(model) -> dict:
    """A copy of every named parameter, taken before training (for ``param_update_norms``)."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def param_update_norms(model, initial: dict) -> dict:
    """L2 norm of ``final - initial`` of every named parameter (fp64 difference of the fp32 values):
    how far training moved it.  Final norms alone hide an 8-step update (< 1% of the norm)."""
    return {
        n: float((p.detach().double() - initial[n].double()).pow(2).sum().sqrt())
        for n, p in model.named_parameters()
    }


def param_norms(model) -> dict:
    """L2 norm of every named parameter (fp64 sum of squares of the fp32 values, then sqrt)."""
    return {n: float(p.detach().double().pow(2).sum().sqrt()) for n, p in model.named_parameters()}


def trainer_state(state) -> dict:
    return {
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "epoch": state.epoch,
        "num_train_epochs": state.num_train_epochs,
        "logging_steps": state.logging_steps,
        "train_batch_size": state.train_batch_size,
        "total_flos": state.total_flos,
    }


def train_output(out) -> dict:
    return {"global_step": out.global_step, "training_loss": out.training_loss}
