#!/usr/bin/env python3
"""Reference numbers for trl-rs's SFT trainer, produced with TRL's own ``SFTTrainer``.

    /work/pyref/bin/python reference/sft_reference.py            # datasets (if missing) + all cases
    /work/pyref/bin/python reference/sft_reference.py --datasets-only
    /work/pyref/bin/python reference/sft_reference.py --case text --case messages

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, trl 1.16.0 (see requirements.txt).

What it does
------------
1. Writes the sample datasets under ``datasets/`` (text, messages, prompt_completion,
   prompt_completion_conversational, prompt_only) if they do not exist yet.  They are generated
   from fixed lists, so re-creating them gives byte-identical files.
2. For every case in ``CASES`` it trains ``fixtures/models/tiny-qwen2`` (Qwen2ForCausalLM, fp32,
   eager attention, no dropout) with ``trl.SFTTrainer`` for 8 optimizer steps on CPU and writes
   ``fixtures/expected/sft/<case>.json``.

``cargo xtask reference`` runs this script with all the others (``--check`` compares a fresh run with the
committed fixtures).

Semantics behind these numbers are documented in ``docs/notes/trl-sft-semantics.md``.

Everything is deterministic: one CPU thread, ``seed=42`` (set by SFTTrainer before the model is
built and by the Trainer), ``train_sampling_strategy="sequential"`` (a real TrainingArguments
option in transformers 5.23, so no sampler override is needed), no dropout, fp32 (``bf16=False`` has
to be passed explicitly: SFTConfig defaults ``bf16`` to True, even on CPU).  Wall-clock values
(``train_runtime``, ``train_samples_per_second``, ``train_steps_per_second``) are replaced by
``null`` in the written ``log_history`` so that two runs produce identical files.

Output schema (one JSON object per case)
----------------------------------------
    case              case name
    description       one line
    dataset           path of the jsonl file, relative to the repo root
    versions          torch / transformers / trl / datasets / accelerate versions
    sft_config        the keyword arguments given to SFTConfig (TRL names; output_dir omitted)
    resolved_config   values of the resulting SFTConfig that matter (defaults included)
    trainer_info      model_accepts_loss_kwargs, loss_shifts_labels, padding_free,
                      completion_only_loss (resolved), pad/eos ids, optimizer groups
                      (parameter names per group + weight_decay), num_parameters,
                      num_parameters_exclude_embeddings, len_dataloader, num_update_steps_per_epoch
    prepared_dataset  num_rows, columns, per-row lengths of the prepared (tokenized/truncated/
                      filtered/packed) train dataset; seq_lengths per row when packed; the first
                      rows' input_ids / labels (labels use -100 for ignored tokens)
    first_batch       the first collated micro-batch exactly as the model received it: input_ids,
                      attention_mask, labels, position_ids (padding-free only), plus the
                      padding-free extras (cu_seq_lens_q, max_length_q, seq_idx) when present
    micro_batches     one entry per compute_loss call: {global_step (0-based step being
                      accumulated), shape, num_items_in_batch, loss (as returned by compute_loss),
                      label_tokens (labels[:,1:] != -100 in this micro-batch), attention_tokens}
    log_history       trainer.state.log_history, with wall-clock values set to null
    trainer_state     global_step, max_steps, epoch, num_train_epochs, logging_steps,
                      train_batch_size, total_flos
    param_update_norms L2 norm of (final - initial) of every named parameter (fp64 difference of
                      the fp32 values), keyed by parameter name
    train_output      {global_step, training_loss}
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import common
from common import FIRST_ROWS, MODEL_DIR, ROOT, jsonable

OUT_DIR = common.EXPECTED_DIR / "sft"

# ------------------------------------------------------------------------------------
# Part C: sample datasets (deterministic, ~64 rows each)
# ------------------------------------------------------------------------------------

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Peru", "Lima"),
    ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Greece", "Athens"), ("Russia", "Moscow"),
    ("China", "Beijing"), ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Austria", "Vienna"),
]
SOUNDS = [
    ("dog", "barks"), ("cat", "meows"), ("cow", "moos"), ("duck", "quacks"),
    ("sheep", "bleats"), ("lion", "roars"), ("horse", "neighs"), ("owl", "hoots"),
]
COLORS = [
    ("the sky", "blue"), ("grass", "green"), ("snow", "white"), ("a banana", "yellow"),
    ("coal", "black"), ("a tomato", "red"), ("a carrot", "orange"), ("a plum", "purple"),
]
OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("day", "night"),
    ("fast", "slow"), ("happy", "sad"), ("open", "closed"), ("old", "new"),
]
SUMS = [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 4), (4, 4), (4, 5),
        (5, 5), (5, 6), (6, 6), (6, 7), (7, 7), (7, 8), (8, 8), (8, 9)]
COUNTS = [
    ("legs does a spider have", "8", "A spider has eight legs."),
    ("days are in a week", "7", "There are seven days in a week."),
    ("months are in a year", "12", "There are twelve months in a year."),
    ("legs does a dog have", "4", "A dog has four legs."),
    ("wheels does a bicycle have", "2", "A bicycle has two wheels."),
    ("sides does a triangle have", "3", "A triangle has three sides."),
    ("hours are in a day", "24", "There are twenty-four hours in a day."),
    ("minutes are in an hour", "60", "There are sixty minutes in an hour."),
]


def _qa_items():
    """64 (question, short_answer, full_answer_sentence) triples, in a fixed order."""
    items = []
    for country, city in CAPITALS:
        items.append((f"What is the capital of {country}?", city, f"The capital of {country} is {city}."))
    for animal, sound in SOUNDS:
        items.append((f"What sound does a {animal} make?", sound, f"A {animal} {sound}."))
    for thing, color in COLORS:
        items.append((f"What color is {thing}?", color, f"{thing[0].upper() + thing[1:]} is {color}."))
    for word, opp in OPPOSITES:
        items.append((f"What is the opposite of {word}?", opp, f"The opposite of {word} is {opp}."))
    for a, b in SUMS:
        items.append((f"What is {a} plus {b}?", str(a + b), f"{a} plus {b} is {a + b}."))
    for q, short, full in COUNTS:
        items.append((f"How many {q}?", short, full))
    assert len(items) == 64, len(items)
    return items


SYSTEM_PROMPTS = ["You are a helpful assistant.", "Answer in one short sentence."]


def make_sample_datasets(root: Path, overwrite: bool = False) -> None:
    """Write the five sample datasets under ``root/datasets`` if they are missing."""
    ddir = root / "datasets"
    ddir.mkdir(parents=True, exist_ok=True)
    items = _qa_items()

    def write(name, rows):
        path = ddir / name
        if path.exists() and not overwrite:
            return
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    # text: plain facts, one or two sentences
    text_rows = []
    for i, (q, _, full) in enumerate(items):
        if i % 2 == 0:
            text_rows.append({"text": f"Question: {q}\nAnswer: {full}"})
        else:
            text_rows.append({"text": full})
    write("text.jsonl", text_rows)

    # messages: system (every other row) + user + assistant; every 4th row is two turns
    msg_rows = []
    for i, (q, _, full) in enumerate(items):
        msgs = []
        if i % 2 == 0:
            msgs.append({"role": "system", "content": SYSTEM_PROMPTS[(i // 2) % 2]})
        msgs.append({"role": "user", "content": q})
        msgs.append({"role": "assistant", "content": full})
        if i % 4 == 3:
            q2, _, full2 = items[(i + 17) % 64]
            msgs.append({"role": "user", "content": q2})
            msgs.append({"role": "assistant", "content": full2})
        msg_rows.append({"messages": msgs})
    write("messages.jsonl", msg_rows)

    # prompt-completion (standard): completion starts with a space, as in TRL's own datasets
    write("prompt_completion.jsonl",
          [{"prompt": f"Question: {q}\nAnswer:", "completion": f" {full}"} for q, _, full in items])

    # prompt-completion (conversational)
    pcc_rows = []
    for i, (q, _, full) in enumerate(items):
        prompt = []
        if i % 2 == 0:
            prompt.append({"role": "system", "content": SYSTEM_PROMPTS[(i // 2) % 2]})
        prompt.append({"role": "user", "content": q})
        pcc_rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": full}]})
    write("prompt_completion_conversational.jsonl", pcc_rows)

    # prompt-only (standard) with an extra "answer" column (extra columns are kept by TRL)
    write("prompt_only.jsonl",
          [{"prompt": f"Question: {q}\nAnswer:", "answer": short}
           for q, short, full in items])



# ------------------------------------------------------------------------------------
# Part B: reference runs
# ------------------------------------------------------------------------------------

BASE_ARGS = common.base_args(per_device_train_batch_size=2)

CASES = {
    "text": dict(
        description="language modeling, standard ('text' column); EOS appended by TRL",
        dataset="datasets/text.jsonl",
        args={},
    ),
    "text_ga2": dict(
        description="as 'text' with gradient_accumulation_steps=2 (loss normalised by num_items_in_batch)",
        dataset="datasets/text.jsonl",
        args={"gradient_accumulation_steps": 2},
    ),
    "messages": dict(
        description="language modeling, conversational ('messages'); loss on every token (assistant_only_loss=False)",
        dataset="datasets/messages.jsonl",
        args={},
    ),
    "messages_assistant_only": dict(
        description="conversational with assistant_only_loss=True (TRL swaps in its qwen2_5 training template), max_length=128",
        dataset="datasets/messages.jsonl",
        args={"assistant_only_loss": True, "max_length": 128},
    ),
    "prompt_completion": dict(
        description="prompt-completion, standard; completion_only_loss=None -> loss on completion only",
        dataset="datasets/prompt_completion.jsonl",
        args={},
    ),
    "prompt_completion_conversational": dict(
        description="prompt-completion, conversational; completion_only_loss=None -> loss on completion only",
        dataset="datasets/prompt_completion_conversational.jsonl",
        args={},
    ),
    "text_packing": dict(
        description="packing=True on text (packing_strategy='bfd' -> padding-free collator, position_ids)",
        dataset="datasets/text.jsonl",
        args={"packing": True},
    ),
    "text_dft": dict(
        description="as 'text' with loss_type='dft'",
        dataset="datasets/text.jsonl",
        args={"loss_type": "dft"},
    ),
    "text_logging3": dict(
        description="as 'text' with logging_steps=3 and logging_first_step=True (loss averaged over the steps since the last log; leftover metrics land in the final summary entry)",
        dataset="datasets/text.jsonl",
        args={"logging_steps": 3, "logging_first_step": True},
    ),
    "text_cosine_warmup_wd": dict(
        description="as 'text' with cosine schedule, warmup_steps=0.25 (ratio -> 2 steps), weight_decay=0.1, max_grad_norm=0.5, adam_beta2=0.99",
        dataset="datasets/text.jsonl",
        args={
            "lr_scheduler_type": "cosine",
            "warmup_steps": 0.25,
            "weight_decay": 0.1,
            "max_grad_norm": 0.5,
            "adam_beta2": 0.99,
        },
    ),
    # --- step accounting (issue 14): ceil(micro_batches / GA) optimizer steps per epoch, the last
    # one with the remaining micro-batches; `dataset_rows` takes the first N rows of the file.
    "text_ga_remainder": dict(
        description="14 rows, batch 2 -> 7 micro-batches, gradient_accumulation_steps=2, one epoch: 4 optimizer "
        "steps, the last with a single micro-batch",
        dataset="datasets/text.jsonl",
        dataset_rows=14,
        args={"gradient_accumulation_steps": 2, "max_steps": -1, "num_train_epochs": 1},
    ),
    "text_partial_batch": dict(
        description="13 rows, batch 3 -> 5 micro-batches, the last with one row; one epoch, no accumulation",
        dataset="datasets/text.jsonl",
        dataset_rows=13,
        args={"per_device_train_batch_size": 3, "max_steps": -1, "num_train_epochs": 1},
    ),
    "text_epochs_remainder": dict(
        description="11 rows, batch 2 -> 6 micro-batches (last with one row), gradient_accumulation_steps=4: "
        "2 steps per epoch (4 + 2 micro-batches), num_train_epochs=3",
        dataset="datasets/text.jsonl",
        dataset_rows=11,
        args={"gradient_accumulation_steps": 4, "max_steps": -1, "num_train_epochs": 3},
    ),
    "text_max_steps_across_epochs": dict(
        description="10 rows, batch 2 -> 5 micro-batches, gradient_accumulation_steps=2 (3 steps per epoch, the "
        "last with one micro-batch), max_steps=5: the run crosses into a second epoch and stops inside it",
        dataset="datasets/text.jsonl",
        dataset_rows=10,
        args={"gradient_accumulation_steps": 2, "max_steps": 5},
    ),
    "text_packing_epochs_remainder": dict(
        description="packing=True (bfd) on the first 24 rows, batch 2, gradient_accumulation_steps=2, "
        "num_train_epochs=2 (the packed micro-batch count per epoch is odd)",
        dataset="datasets/text.jsonl",
        dataset_rows=24,
        args={"packing": True, "gradient_accumulation_steps": 2, "max_steps": -1, "num_train_epochs": 2},
    ),
    # --- other options checked end to end against TRL
    "text_random_order": dict(
        description="train_sampling_strategy='random' (the Trainer's default: torch.randperm seeded with "
        "seed + epoch), 12 rows, batch 2, num_train_epochs=2",
        dataset="datasets/text.jsonl",
        dataset_rows=12,
        args={"train_sampling_strategy": "random", "max_steps": -1, "num_train_epochs": 2},
    ),
    "text_padding_free": dict(
        description="padding_free=True without packing: each micro-batch is one flattened row with position_ids "
        "(TRL requires max_length=None here: it does not truncate padding-free rows)",
        dataset="datasets/text.jsonl",
        args={"padding_free": True, "max_length": None},
    ),
    "text_constant_with_warmup": dict(
        description="lr_scheduler_type='constant_with_warmup', warmup_steps=3",
        dataset="datasets/text.jsonl",
        args={"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 3},
    ),
    "text_keep_end": dict(
        description="truncation_mode='keep_end', max_length=12: the start of every longer row is dropped",
        dataset="datasets/text.jsonl",
        args={"truncation_mode": "keep_end", "max_length": 12},
    ),
}

def run_case(name: str, spec: dict) -> dict:
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    common.deterministic_torch()
    train_dataset = common.load_dataset(spec["dataset"], spec.get("dataset_rows"))

    kwargs = {**BASE_ARGS, **spec["args"]}
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))

    micro_batches: list[dict] = []
    first_batch: dict = {}

    class RecordingSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            common.record_first_batch(first_batch, inputs)
            labels = inputs["labels"]
            entry = {
                "global_step": self.state.global_step,
                "shape": list(inputs["input_ids"].shape),
                "num_items_in_batch": None if num_items_in_batch is None else int(num_items_in_batch),
                "label_tokens": int((labels[:, 1:] != -100).sum()),
                "attention_tokens": int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else None,
            }
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            entry["loss"] = float(loss.detach())
            micro_batches.append(entry)
            return loss

    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(output_dir=tmp, **kwargs)
        trainer = RecordingSFTTrainer(
            model=str(MODEL_DIR),
            args=config,
            train_dataset=train_dataset,
            processing_class=tokenizer,
        )
        optimizer_groups = common.optimizer_groups(trainer, config)

        train_ds = trainer.train_dataset
        lengths = [len(x) for x in train_ds["input_ids"]]
        prepared = {
            "num_rows": len(train_ds),
            "columns": list(train_ds.column_names),
            "lengths": lengths,
            "input_ids": [list(x) for x in train_ds["input_ids"][:FIRST_ROWS]],
            "labels": [list(x) for x in train_ds["labels"][:FIRST_ROWS]],
        }
        if "seq_lengths" in train_ds.column_names:
            prepared["seq_lengths"] = [list(x) for x in train_ds["seq_lengths"]]

        len_dataloader, num_update_steps_per_epoch = common.dataloader_steps(trainer, config)
        initial = common.initial_params(trainer.model)
        train_output = trainer.train()

        resolved_keys = [
            "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "weight_decay",
            "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "optim", "seed", "data_seed",
            "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
            "logging_steps", "logging_first_step", "logging_strategy", "save_strategy", "train_sampling_strategy",
            "dataloader_drop_last", "bf16", "fp16", "gradient_checkpointing", "activation_checkpointing",
            "average_tokens_across_devices", "remove_unused_columns", "label_smoothing_factor",
            "dataset_text_field", "max_length", "truncation_mode", "packing", "packing_strategy", "padding_free",
            "pad_to_multiple_of", "completion_only_loss", "assistant_only_loss", "loss_type", "eos_token",
            "shuffle_dataset", "include_num_input_tokens_seen",
        ]
        resolved = {k: jsonable(getattr(config, k)) for k in resolved_keys}

        opt = common.unwrapped_optimizer(trainer)
        result = {
            "case": name,
            "description": spec["description"],
            "dataset": spec["dataset"],
            **({"dataset_rows": spec["dataset_rows"]} if "dataset_rows" in spec else {}),
            "versions": common.versions(),
            "sft_config": jsonable(kwargs),
            "resolved_config": resolved,
            "trainer_info": {
                "model": "fixtures/models/tiny-qwen2",
                "model_accepts_loss_kwargs": bool(trainer.model_accepts_loss_kwargs),
                "loss_shifts_labels": bool(trainer._loss_shifts_labels),
                "padding_free": bool(trainer.padding_free),
                "completion_only_loss": bool(trainer.completion_only_loss),
                "chat_template_swapped_for_training": trainer.chat_template is not None,
                "pad_token_id": tokenizer.pad_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "num_parameters": trainer.model.num_parameters(),
                "num_parameters_exclude_embeddings": trainer.model.num_parameters(exclude_embeddings=True),
                "optimizer_class": type(opt).__name__,
                "optimizer_defaults": {
                    k: jsonable(v)
                    for k, v in opt.defaults.items()
                    if k in ("lr", "betas", "eps", "weight_decay", "fused", "foreach", "amsgrad", "maximize")
                },
                "optimizer_groups": optimizer_groups,
                "len_dataloader": len_dataloader,
                "num_update_steps_per_epoch": num_update_steps_per_epoch,
            },
            "prepared_dataset": prepared,
            "first_batch": first_batch,
            "micro_batches": micro_batches,
            "log_history": common.log_history(trainer),
            "trainer_state": common.trainer_state(trainer.state),
            "param_update_norms": common.param_update_norms(trainer.model, initial),
            "train_output": common.train_output(train_output),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets-only", action="store_true", help="only write the sample datasets")
    parser.add_argument("--overwrite-datasets", action="store_true", help="rewrite the sample datasets")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--out-dir", default=str(OUT_DIR), help="where to write <case>.json")
    args = parser.parse_args()

    make_sample_datasets(ROOT, overwrite=args.overwrite_datasets)
    if args.datasets_only:
        return

    common.init_libraries(warn_pins=True)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    common.write_cases(out_dir, args.case or list(CASES), lambda name: run_case(name, CASES[name]))


if __name__ == "__main__":
    main()
