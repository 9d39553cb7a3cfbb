#!/usr/bin/env python3
"""Reference generations and logits-processor outputs for trl-rs's ``trl_core::generate``.

    .venv-reference/bin/python reference/generate_reference.py   # writes fixtures/expected/generate/*.json

Pinned environment: torch 2.15 (CPU), transformers 5.23.0 (``requirements.txt``).

Output
------
``fixtures/expected/generate/greedy.json``: for every causal fixture model under ``fixtures/models``
(loaded in fp32, eager attention), ``model.generate(input_ids, attention_mask, do_sample=False,
max_new_tokens=12)`` on two batches of token-id prompts: three prompts of different lengths
left-padded with the pad id, and one prompt alone. Per prompt: ``prompt`` (ids, no padding) and
``completion_ids``: the new tokens up to and including the first end-of-sequence id (transformers
pads finished rows after it; those pads are dropped). ``cli``: the same for text and conversational
prompt rows of ``datasets/`` on tiny-qwen2, what ``trl generate --do_sample false`` must write.

``fixtures/expected/generate/processors.json``: logits rows ``scores`` [4, 512] (seeded normal
noise x 3) and sequences ``input_ids`` [4, 10], and the output of each transformers processor on
them (``-inf`` written as null): TopP, TopK, MinP, RepetitionPenalty, Temperature,
MinNewTokensLength, and ``pipeline``: the list ``GenerationMixin._get_logits_processor`` builds for
one sampling configuration with all of them switched on (its order is transformers').
"""

from __future__ import annotations

import math
from pathlib import Path

from common import EXPECTED_DIR, ROOT, dump, init_libraries, versions

OUT_DIR = EXPECTED_DIR / "generate"
MODELS_DIR = ROOT / "fixtures" / "models"
MAX_NEW_TOKENS = 12
TOKEN_RANGE = 381  # ids below the fixture tokenizer's special tokens
PROMPT_BATCHES = [[5, 9, 3], [7]]  # prompt lengths of each batch
VOCAB = 512


def causal_models() -> list[Path]:
    import json

    out = []
    for path in sorted(MODELS_DIR.iterdir()):
        config = json.loads((path / "config.json").read_text())
        if any(a.endswith("ForCausalLM") for a in config.get("architectures", [])):
            out.append(path)
    return out


def prompts(lengths: list[int], seed: int) -> list[list[int]]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, TOKEN_RANGE, (n,), generator=gen).tolist() for n in lengths]


def greedy(model, batch: list[list[int]], pad_id: int, eos_ids: list[int]) -> list[dict]:
    import torch

    width = max(len(p) for p in batch)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch])
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS,
            pad_token_id=pad_id,
        )
    cases = []
    for prompt, row in zip(batch, out[:, width:].tolist()):
        completion = []
        for token in row:
            completion.append(token)
            if token in eos_ids:
                break
        cases.append({"prompt": prompt, "completion_ids": completion})
    return cases


def greedy_cases() -> dict:
    from transformers import AutoModelForCausalLM

    import torch

    models = {}
    for path in causal_models():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        gc = model.generation_config
        eos = gc.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        batches = [greedy(model, prompts(lengths, 100 + i), gc.pad_token_id, eos_ids) for i, lengths in enumerate(PROMPT_BATCHES)]
        models[path.name] = {"pad_token_id": gc.pad_token_id, "eos_token_ids": eos_ids, "batches": batches}
        print(f"{path.name}: {[[len(c['completion_ids']) for c in b] for b in batches]}")
    return models


def cli_cases() -> dict:
    """What ``trl generate --do_sample false --max_new_tokens 12`` must write for tiny-qwen2: the
    first rows of ``datasets/prompt_only.jsonl`` (text encoded without special tokens) and
    conversational prompts (the first ``datasets/messages.jsonl`` conversations without their
    last assistant turn, rendered with the chat template and its generation prompt), each set
    generated as one left-padded batch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from common import load_rows

    path = MODELS_DIR / "tiny-qwen2"
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    gc = model.generation_config
    eos_ids = sorted({tok.eos_token_id, *(gc.eos_token_id if isinstance(gc.eos_token_id, list) else [gc.eos_token_id])})
    pad = tok.pad_token_id if tok.pad_token_id is not None else gc.pad_token_id
    text_rows = load_rows("datasets/prompt_only.jsonl")[:4]
    chat_rows = [{"prompt": r["messages"][:-1]} for r in load_rows("datasets/messages.jsonl")[:3]]
    out = {}
    for name, rows, encode in [
        ("text", text_rows, lambda r: tok(r["prompt"], add_special_tokens=False).input_ids),
        ("conversational", chat_rows, lambda r: tok(
            tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False),
            add_special_tokens=False,
        ).input_ids),
    ]:
        prompts_ids = [encode(r) for r in rows]
        cases = greedy(model, prompts_ids, pad, eos_ids)
        out[name] = [{"row": r, **c} for r, c in zip(rows, cases)]
    return {"model": "fixtures/models/tiny-qwen2", "eos_token_ids": eos_ids, "cases": out}


def row_list(t) -> list:
    return [[None if math.isinf(x) else x for x in row] for row in t.tolist()]


def processor_cases() -> dict:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.generation.logits_process import (
        MinNewTokensLengthLogitsProcessor,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    gen = torch.Generator().manual_seed(7)
    scores = torch.randn(4, VOCAB, generator=gen) * 3.0
    input_ids = torch.randint(0, VOCAB, (4, 10), generator=gen)
    eos = torch.tensor([383, 7])
    prompt_length = 6  # 4 new tokens so far
    cases = {
        "top_p_0.9": TopPLogitsWarper(0.9),
        "top_p_0.5": TopPLogitsWarper(0.5),
        "top_k_10": TopKLogitsWarper(10),
        "top_k_1": TopKLogitsWarper(1),
        "min_p_0.1": MinPLogitsWarper(0.1),
        "repetition_penalty_1.3": RepetitionPenaltyLogitsProcessor(1.3),
        "temperature_0.7": TemperatureLogitsWarper(0.7),
        "min_new_tokens_5": MinNewTokensLengthLogitsProcessor(prompt_length, 5, eos),
        "min_new_tokens_3": MinNewTokensLengthLogitsProcessor(prompt_length, 3, eos),
    }
    out = {name: row_list(proc(input_ids, scores.clone())) for name, proc in cases.items()}

    model = AutoModelForCausalLM.from_pretrained(MODELS_DIR / "tiny-qwen2", dtype=torch.float32)
    pipeline_config = dict(
        do_sample=True, temperature=0.7, top_k=20, top_p=0.9, min_p=0.05,
        repetition_penalty=1.2, min_new_tokens=5, eos_token_id=[383, 7], pad_token_id=381,
    )
    gc = GenerationConfig(**pipeline_config)
    model._prepare_special_tokens(gc, kwargs_has_attention_mask=True, device="cpu")
    processors = model._get_logits_processor(gc, input_ids_seq_length=prompt_length, device="cpu")
    out["pipeline"] = row_list(processors(input_ids, scores.clone()))
    return {
        "scores": scores.tolist(),
        "input_ids": input_ids.tolist(),
        "prompt_length": prompt_length,
        "eos_token_ids": eos.tolist(),
        "pipeline_config": pipeline_config,
        "pipeline_processors": [type(p).__name__ for p in processors],
        "outputs": out,
    }


def main() -> None:
    init_libraries(transformers_progress_bar=False)
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    common = {"generated_by": "reference/generate_reference.py", "versions": versions(with_datasets=False)}
    greedy_out = {**common, "max_new_tokens": MAX_NEW_TOKENS, "models": greedy_cases(), "cli": cli_cases()}
    (OUT_DIR / "greedy.json").write_text(dump(greedy_out), encoding="utf-8")
    (OUT_DIR / "processors.json").write_text(dump({**common, **processor_cases()}), encoding="utf-8")


if __name__ == "__main__":
    main()
