#!/usr/bin/env python3
"""Reference values for trl-rs's data checks (``crates/trl-core/src/data/``), from transformers and TRL.

    .venv-reference/bin/python reference/data_reference.py      # writes fixtures/expected/data.json

Pinned environment: transformers 5.23.0, trl 1.16.0 (see requirements.txt).  Nothing is trained;
everything is a pure function of the committed datasets and fixture tokenizers, so two runs give
byte-identical files.

Output schema (``fixtures/expected/data.json``)
-----------------------------------------------
    generated_by, versions
    token_lengths   [{model, dataset, method, rows, p50, p95, max}]: the length in tokens of the
                    longest sequence each row of ``datasets/<dataset>.jsonl`` feeds the model, as
                    TRL tokenizes it with ``fixtures/models/<model>``'s tokenizer:
                    standard text ``tok(text + eos)`` (EOS only when the text lacks it; the
                    tokenizer's own special tokens included), prompt-completion
                    ``prompt + completion + eos``, preference the longer of ``prompt + chosen + eos``
                    and ``prompt + rejected + eos`` (implicit prompt: ``chosen`` / ``rejected``),
                    prompt-only ``tok(prompt)``; conversations ``apply_chat_template(messages,
                    tokenize=True)`` of the same concatenations.  Percentiles are nearest-rank:
                    ``sorted[ceil(p / 100 * n) - 1]``.
    extract_prompt  [{chosen, rejected, prompt, chosen_rest, rejected_rest}]: what
                    ``trl.data_utils.extract_prompt({"chosen": c, "rejected": r})`` returns.
    maybe_extract_prompt  [{row, result}]: ``trl.data_utils.maybe_extract_prompt(row)``.
    unpair_preference  {rows, result}: ``trl.data_utils.unpair_preference_dataset`` on ``rows``.
    wordlevel_tokenizer  what transformers' ``AutoTokenizer`` does with the hand-written WordLevel
                    tokenizer this script writes to ``fixtures/tokenizers/wordlevel/`` (an unusual
                    one: ``add_bos_token: false`` that the post-processor overrides, an EOS that is
                    not an added token) and its variant ``wordlevel-extra-special/`` (model-specific
                    special tokens): encodings, decodings, special ids, chat renders, and what
                    ``save_pretrained`` writes after ``eos_token = "world"``.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile

import common
from common import EXPECTED_DIR, ROOT

OUT = EXPECTED_DIR / "data.json"
TOKENIZERS = ROOT / "fixtures" / "tokenizers"

# (model, dataset, method): the cases of crates/trl-core/src/data/lengths.rs's test.
LENGTH_CASES = [
    ("tiny-qwen2", "text", "sft"),
    ("tiny-qwen2", "messages", "sft"),
    ("tiny-qwen2", "prompt_completion", "sft"),
    ("tiny-qwen2", "prompt_completion_conversational", "sft"),
    ("tiny-qwen2", "prompt_only", "grpo"),
    ("tiny-qwen2", "preference", "dpo"),
    ("tiny-qwen2", "preference_implicit", "dpo"),
    ("tiny-qwen2", "preference_conversational", "dpo"),
    ("tiny-llama", "unpaired_preference_conversational", "kto"),
]

USER = {"role": "user", "content": "Q"}


def answer(text):
    return {"role": "assistant", "content": text}


EXTRACT_CASES = [
    ("The sky is blue.", "The sky is green."),
    ("abc", "abcd"),
    ("Xyz ", "Abc"),
    ("Paris", "Rome"),
    ("héllo wörld", "héllo wörms"),
    ([USER, answer("A")], [USER, answer("B")]),
    ([USER, answer("A")], [USER, answer("A")]),
]

MAYBE_EXTRACT_ROWS = [
    {"prompt": "Q", "chosen": " A", "rejected": " B", "id": 7},
    {"prompt": "Q", "chosen": [USER, answer("A")], "rejected": [USER, answer("B")], "id": 7},
    {"chosen": "Q: A", "rejected": "Q: B", "id": 7},
]

UNPAIR_ROWS = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad", "id": i} for i in range(3)]


def nearest_rank(sorted_lengths: list[int], p: float) -> int:
    return sorted_lengths[max(math.ceil(p / 100 * len(sorted_lengths)), 1) - 1]


def row_length(tok, row: dict) -> int:
    eos = tok.eos_token

    def text(s: str) -> int:
        return len(tok(s if s.endswith(eos) else s + eos)["input_ids"])

    def chat(messages: list) -> int:
        return len(tok.apply_chat_template(messages, tokenize=True, return_dict=False))

    if "text" in row:
        return text(row["text"])
    if "messages" in row:
        return chat(row["messages"])
    if "chosen" in row:
        prompt = row.get("prompt")
        if isinstance(row["chosen"], str):
            prompt = prompt or ""
            return max(text(prompt + row["chosen"]), text(prompt + row["rejected"]))
        prompt = prompt or []
        return max(chat(prompt + row["chosen"]), chat(prompt + row["rejected"]))
    if "completion" in row:
        if isinstance(row["completion"], str):
            return text(row["prompt"] + row["completion"])
        return chat(row["prompt"] + row["completion"])
    assert isinstance(row["prompt"], str), "only standard prompt-only rows are measured"
    return len(tok(row["prompt"])["input_ids"])


def token_lengths() -> list[dict]:
    from transformers import AutoTokenizer

    out = []
    for model, dataset, method in LENGTH_CASES:
        tok = AutoTokenizer.from_pretrained(str(ROOT / "fixtures" / "models" / model))
        lengths = sorted(row_length(tok, row) for row in common.load_rows(f"datasets/{dataset}.jsonl"))
        out.append({
            "model": model, "dataset": dataset, "method": method, "rows": len(lengths),
            "p50": nearest_rank(lengths, 50), "p95": nearest_rank(lengths, 95), "max": lengths[-1],
        })
    return out


def prompt_rewrites() -> dict:
    import datasets
    from trl.data_utils import extract_prompt, maybe_extract_prompt, unpair_preference_dataset

    extracted = []
    for chosen, rejected in EXTRACT_CASES:
        got = extract_prompt({"chosen": chosen, "rejected": rejected})
        extracted.append({
            "chosen": chosen, "rejected": rejected,
            "prompt": got["prompt"], "chosen_rest": got["chosen"], "rejected_rest": got["rejected"],
        })
    maybe = [{"row": row, "result": maybe_extract_prompt(dict(row))} for row in MAYBE_EXTRACT_ROWS]
    unpaired = unpair_preference_dataset(datasets.Dataset.from_list(UNPAIR_ROWS))
    return {
        "extract_prompt": extracted,
        "maybe_extract_prompt": maybe,
        "unpair_preference": {"rows": UNPAIR_ROWS, "result": unpaired.to_list()},
    }


WORDLEVEL_JSON = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [
        {"id": 0, "content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
        {"id": 1, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
    ],
    "normalizer": None, "pre_tokenizer": {"type": "Whitespace"},
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
    },
    "decoder": None,
    "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4},
              "unk_token": "<unk>"},
}
WORDLEVEL_CONFIG = {
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": False,
    "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1000000000000000019884624838656,
    "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}",
}
EXTRA_SPECIAL = {
    "image_token": "hello",
    "extra_special_tokens": {"audio_token": "world"},
    "pad_token": {"__type": "AddedToken", "content": "<pad>", "lstrip": False, "normalized": True,
                  "rstrip": False, "single_word": False},
}
USER_X = [{"role": "user", "content": "x"}]


def write_tokenizer(folder, config) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(WORDLEVEL_JSON, indent=1) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")


def wordlevel_tokenizer() -> dict:
    from transformers import AutoTokenizer

    plain, extra = TOKENIZERS / "wordlevel", TOKENIZERS / "wordlevel-extra-special"
    write_tokenizer(plain, WORDLEVEL_CONFIG)
    write_tokenizer(extra, {**WORDLEVEL_CONFIG, **EXTRA_SPECIAL})

    tok = AutoTokenizer.from_pretrained(str(plain))
    ids = tok("hello world </s> foo")["input_ids"]
    out = {
        "encode_special": ids,
        "encode_plain": tok("hello world", add_special_tokens=False)["input_ids"],
        "decode_skip": tok.decode(ids, skip_special_tokens=True),
        "decode_keep": tok.decode(ids, skip_special_tokens=False),
        "vocab_size": tok.vocab_size, "len": len(tok),
        "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token": tok.pad_token,
        "all_special_ids": tok.all_special_ids,
        "chat_hello": tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False),
    }
    tok.eos_token = "world"
    with tempfile.TemporaryDirectory() as saved:
        tok.save_pretrained(saved)
        config = json.loads(open(f"{saved}/tokenizer_config.json", encoding="utf-8").read())
        out["saved_config"] = {k: config.get(k) for k in ("add_bos_token", "bos_token", "eos_token", "model_max_length")}
        out["saved_config_has_chat_template"] = "chat_template" in config
        out["saved_chat_template"] = open(f"{saved}/chat_template.jinja", encoding="utf-8").read()
        reloaded = AutoTokenizer.from_pretrained(saved)
        out["reloaded_eos_token_id"] = reloaded.eos_token_id
        out["reloaded_decode_skip"] = reloaded.decode([1, 3, 4, 2], skip_special_tokens=True)

    tok = AutoTokenizer.from_pretrained(str(extra))
    # [name, token] in transformers' order (the order of the template variables).
    special = [[k, str(v)] for k, v in tok.special_tokens_map.items() if k != "additional_special_tokens"]
    out["extra_special"] = {
        "special_tokens_map": special,
        "all_special_ids": tok.all_special_ids,
        "len": len(tok),
        "encode_plain": tok("hello <pad> world", add_special_tokens=False)["input_ids"],
        "decode_skip": tok.decode([3, 4, 5, 2], skip_special_tokens=True),
        "chat": tok.apply_chat_template(
            USER_X, chat_template="{{ image_token }}|{{ audio_token }}|{{ pad_token }}", tokenize=False),
    }
    return out


def main() -> None:
    common.init_libraries(warn_pins=True)
    fixture = {
        "generated_by": "reference/data_reference.py",
        "versions": common.versions(),
        "token_lengths": token_lengths(),
        **prompt_rewrites(),
        "wordlevel_tokenizer": wordlevel_tokenizer(),
    }
    OUT.write_text(common.dump(fixture), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
