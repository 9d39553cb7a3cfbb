#!/usr/bin/env python3
"""Reference orders for trl-rs's training-set sampler (``crates/trl-core/src/train/sampler.rs``).

    /work/pyref/bin/python reference/sampler_reference.py          # writes fixtures/expected/sampler.json
    /work/pyref/bin/python reference/sampler_reference.py --skip-large

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, accelerate 1.15.0.

Why this exists
---------------
With ``train_sampling_strategy="random"`` (the default) the HF Trainer visits the training set in
the order of accelerate's ``SeedableRandomSampler``: for epoch ``e`` it is
``torch.randperm(N, generator=torch.Generator().manual_seed(S + e))`` with ``S = data_seed`` if set,
else ``torch.initial_seed()``, which ``Trainer.__init__`` set to ``args.seed``
(``accelerate/data_loader.py:73-107``; ``transformers/trainer.py:839, 1145, 1851-1858``).
trl-rs reimplements ``torch.randperm``'s CPU algorithm (MT19937 + Fisher-Yates); these fixtures
pin it down.

Output schema (``fixtures/expected/sampler.json``)
-------------------------------------------------
    generated_by   this script
    versions       torch / transformers / accelerate
    randperm       [{n, seed, perm}]: ``torch.randperm(n, generator=Generator().manual_seed(seed))``
                   in full, for small n (the 32-bit Fisher-Yates path of ``randperm_cpu``)
    randperm_large [{n, seed, head, tail, weighted_sum}]: n at and just below
                   ``UINT32_MAX / 20`` where ``randperm_cpu`` switches to the inside-out shuffle
                   driven by ``random64()``; too big to store, so the first and last 16 entries and
                   ``sum((i + 1) * perm[i]) mod 2**64`` (as an integer)
    trainer        [{num_rows, per_device_train_batch_size, seed, data_seed, num_train_epochs,
                   epochs}]: what a real ``transformers.Trainer.train()`` fed its model; ``epochs``
                   holds, per epoch, the list of micro-batches, each the list of row indices
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np
import torch
import transformers
import accelerate
from torch import nn
from transformers import Trainer, TrainingArguments

from common import EXPECTED_DIR, ROOT

OUT = EXPECTED_DIR / "sampler.json"

SMALL_NS = [0, 1, 2, 7, 64, 1000, 5000]
SEEDS = [0, 42, 43, 2**32 + 5]
# randperm_cpu: `if (n < std::numeric_limits<uint32_t>::max() / 20)` keeps the old 32-bit path.
SMALL_N_LIMIT = (2**32 - 1) // 20


def randperm(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return torch.randperm(n, generator=generator)


def small_cases() -> list[dict]:
    return [
        {"n": n, "seed": seed, "perm": randperm(n, seed).tolist()}
        for n in SMALL_NS
        for seed in SEEDS
    ]


def large_cases() -> list[dict]:
    cases = []
    for n, seed in [(SMALL_N_LIMIT - 1, 42), (SMALL_N_LIMIT, 42), (SMALL_N_LIMIT, 2**32 + 5)]:
        perm = randperm(n, seed).numpy().astype(np.uint64)
        weights = np.arange(1, n + 1, dtype=np.uint64)
        # uint64 arithmetic wraps, which is the "mod 2**64" we want.
        weighted_sum = int(np.sum(weights * perm, dtype=np.uint64))
        cases.append(
            {
                "n": n,
                "seed": seed,
                "head": perm[:16].tolist(),
                "tail": perm[-16:].tolist(),
                "weighted_sum": weighted_sum,
            }
        )
        del perm, weights
    return cases


class RowIndexDataset(torch.utils.data.Dataset):
    """Row i is just its own index, so the model sees which rows the sampler chose."""

    def __init__(self, num_rows: int):
        self.num_rows = num_rows

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": torch.tensor([i]), "labels": torch.tensor([i])}


class RecordingModel(nn.Module):
    """Records the row indices of every micro-batch it is given; one parameter so AdamW has work."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def forward(self, input_ids, labels=None):
        self.seen.append(input_ids[:, 0].tolist())
        return {"loss": (self.weight * input_ids.float()).pow(2).mean()}


def trainer_case(num_rows: int, batch_size: int, seed: int, data_seed: int | None, epochs: int) -> dict:
    model = RecordingModel()
    with tempfile.TemporaryDirectory() as out_dir:
        args = TrainingArguments(
            output_dir=out_dir,
            per_device_train_batch_size=batch_size,
            num_train_epochs=epochs,
            seed=seed,
            data_seed=data_seed,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            use_cpu=True,
            dataloader_num_workers=0,
        )
        assert args.train_sampling_strategy == "random"
        trainer = Trainer(model=model, args=args, train_dataset=RowIndexDataset(num_rows))
        trainer.train()
    batches_per_epoch = -(-num_rows // batch_size)
    assert len(model.seen) == epochs * batches_per_epoch, len(model.seen)
    per_epoch = [
        model.seen[e * batches_per_epoch : (e + 1) * batches_per_epoch] for e in range(epochs)
    ]
    # The claim the Rust port relies on: the Trainer's order is randperm(N, S + epoch).
    sampler_seed = data_seed if data_seed is not None else seed
    for e, batches in enumerate(per_epoch):
        flat = [i for batch in batches for i in batch]
        assert flat == randperm(num_rows, sampler_seed + e).tolist(), (num_rows, seed, data_seed, e)
    return {
        "num_rows": num_rows,
        "per_device_train_batch_size": batch_size,
        "seed": seed,
        "data_seed": data_seed,
        "num_train_epochs": epochs,
        "epochs": per_epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-large", action="store_true", help="leave out randperm_large (needs ~8 GB)")
    cli = parser.parse_args()

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    fixture = {
        "generated_by": "reference/sampler_reference.py",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
        },
        "randperm": small_cases(),
        "randperm_large": [] if cli.skip_large else large_cases(),
        "trainer": [
            trainer_case(64, 2, 42, None, 2),
            trainer_case(64, 2, 42, 7, 2),
            # args.seed must fit numpy's 32-bit legacy seeding; data_seed may be larger.
            trainer_case(7, 2, 3, 2**32 + 5, 2),
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One line per case keeps the file diffable without exploding the permutations vertically.
    with OUT.open("w") as f:
        f.write("{\n")
        keys = list(fixture)
        for k, key in enumerate(keys):
            value = fixture[key]
            f.write(f"  {json.dumps(key)}: ")
            if isinstance(value, list):
                f.write("[\n")
                f.write(",\n".join(f"    {json.dumps(item)}" for item in value))
                f.write("\n  ]" if value else "]")
            else:
                f.write(json.dumps(value))
            f.write(",\n" if k + 1 < len(keys) else "\n")
        f.write("}\n")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
