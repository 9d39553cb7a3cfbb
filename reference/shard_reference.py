#!/usr/bin/env python3
"""Reference shards for trl-rs's data-parallel plan (``crates/trl-core/src/train/plan.rs``).

    .venv-reference/bin/python reference/shard_reference.py    # writes fixtures/expected/shards.json

Why this exists
---------------
With N processes the HF Trainer's dataloader goes through accelerate's ``prepare_data_loader``,
which wraps its batch sampler in ``BatchSamplerShard`` (``split_batches=False``,
``even_batches=True``): every process draws the same epoch order, cut into batches of
``per_device_train_batch_size``; process ``r`` takes batch ``g * N + r`` of global batch ``g``, and
the last global batch is completed from the start of the epoch. trl-rs reimplements that cut;
these fixtures pin it down (the epoch order here is the identity, the cut is what is tested).

Output schema (``fixtures/expected/shards.json``)
-------------------------------------------------
    generated_by   this script
    versions       accelerate / torch
    cases          [{num_examples, batch_size, num_processes, ranks}]: ``ranks[r]`` is the list of
                   batches (lists of example indices) process ``r`` gets in one epoch
"""

from __future__ import annotations

import json

import accelerate
import torch
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler, SequentialSampler

from common import EXPECTED_DIR

OUT = EXPECTED_DIR / "shards.json"

CASES = [(8, 2, 2), (9, 2, 2), (5, 2, 2), (3, 4, 2), (11, 2, 3), (6, 3, 2), (1, 1, 4), (22, 3, 4)]


def shards(num_examples: int, batch_size: int, num_processes: int) -> list[list[list[int]]]:
    sampler = BatchSampler(SequentialSampler(range(num_examples)), batch_size, drop_last=False)
    return [
        [list(batch) for batch in BatchSamplerShard(sampler, num_processes, rank, even_batches=True)]
        for rank in range(num_processes)
    ]


def main() -> None:
    cases = [
        {"num_examples": n, "batch_size": b, "num_processes": p, "ranks": shards(n, b, p)}
        for n, b, p in CASES
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "generated_by": "reference/shard_reference.py",
        "versions": {"accelerate": accelerate.__version__, "torch": torch.__version__},
        "cases": cases,
    }
    OUT.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
