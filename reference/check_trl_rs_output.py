#!/usr/bin/env python3
"""Checks that transformers (and TRL's tooling) read what ``trl sft`` / ``trl dpo`` / ``trl kto`` write.

    .venv-reference/bin/python reference/check_trl_rs_output.py OUTPUT_DIR [OUTPUT_DIR ...] \\
        [--base fixtures/models/tiny-qwen2]

For every trl-rs output folder it checks, and exits 1 naming the first thing that fails:

1. ``AutoModelForCausalLM.from_pretrained`` loads it with no missing, unexpected or mismatched
   weights, in the dtype ``config.json`` names;
2. ``AutoTokenizer.from_pretrained`` loads it and renders a chat with the saved template;
3. a forward pass gives finite logits and ``generate`` produces new tokens;
4. the weights differ from ``--base`` (the run trained) and keep its shapes;
5. ``trainer_state.json`` loads with ``transformers.TrainerState.load_from_json`` and its
   ``global_step`` matches its last ``log_history`` entry.

It needs a trl-rs output, so ``cargo xtask reference`` does not run it; see README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import common
from common import ROOT


def fail(folder: Path, message: str) -> None:
    print(f"{folder}: {message}", file=sys.stderr)
    sys.exit(1)


def check_model(folder: Path, base: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerState

    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True, attn_implementation="eager")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(key):
            fail(folder, f"{key}: {info[key]}")
    config = json.loads((folder / "config.json").read_text())
    want_dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    got_dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    if got_dtype != want_dtype:
        fail(folder, f"loaded as {got_dtype}, config.json says {want_dtype}")

    tok = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    model.eval()
    with torch.no_grad():
        logits = model(**ids).logits
        if not torch.isfinite(logits).all():
            fail(folder, "non-finite logits")
        out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    new_tokens = out.shape[1] - ids["input_ids"].shape[1]
    if new_tokens < 1:
        fail(folder, "generate produced nothing")

    reference = AutoModelForCausalLM.from_pretrained(base, attn_implementation="eager")
    before = dict(reference.named_parameters())
    moved = 0
    for name, p in model.named_parameters():
        if name not in before or before[name].shape != p.shape:
            fail(folder, f"{name} is not a parameter of {base} with the same shape")
        moved += int(not torch.equal(before[name].float(), p.detach().float()))
    if moved == 0:
        fail(folder, f"every weight equals {base}'s: nothing was trained")

    print(
        f"{folder}: loads in transformers as {type(model).__name__} ({got_dtype}), "
        f"{moved} of {len(before)} tensors trained, generate +{new_tokens} tokens: "
        f"{tok.decode(out[0, -new_tokens:])!r}"
    )
    try:
        state = TrainerState.load_from_json(str(folder / "trainer_state.json"))
    except Exception as e:  # noqa: BLE001  (what transformers' resume would hit)
        fail(folder, f"transformers.TrainerState.load_from_json fails: {type(e).__name__}: {e}")
    steps = [e["step"] for e in state.log_history if "step" in e]
    if not steps or steps[-1] != state.global_step:
        fail(folder, f"trainer_state.json: global_step {state.global_step}, last logged step {steps[-1:]}")
    return f"{folder}: trainer_state.json loads in transformers, global_step {state.global_step}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="trl-rs output folders")
    parser.add_argument("--base", type=Path, default=ROOT / "fixtures/models/tiny-qwen2", help="the model trained")
    args = parser.parse_args()
    common.init_libraries(transformers_progress_bar=False)
    common.deterministic_torch()
    for folder in args.folders:
        print(check_model(folder, args.base))


if __name__ == "__main__":
    main()
