#!/usr/bin/env python3
"""Generate the reference fixtures that the trl-rs tests compare against.

Run from anywhere with the pinned environment (see requirements.txt):

    /work/pyref/bin/python reference/make_fixtures.py

The script is deterministic (fixed seeds, single CPU thread, float32, eager
attention) and idempotent: every run deletes and rewrites the parts of
``fixtures/`` it owns (``OWNED`` below) and leaves the other scripts' expected
files alone.  ``cargo xtask reference`` runs it together with every other
reference script.  Nothing is downloaded: the tokenizer is trained on
``reference/corpus.txt`` and the chat templates are vendored in
``reference/chat_templates/`` (see SOURCES.md there).

Output layout (relative to the repository root):

    fixtures/tokenizer/                 tokenizer.json, tokenizer_config.json, chat_template.jinja
    fixtures/models/<name>/             config.json, generation_config.json (causal LMs),
                                        model.safetensors (or shards + index), tokenizer files
    fixtures/templates/<family>.jinja   real chat templates (byte-exact copies)
    fixtures/templates/SOURCES.md       where each template comes from (+ sha256)
    fixtures/templates/README.md        how transformers renders chat templates
    fixtures/expected/tokenization.json
    fixtures/expected/chat_templates.json
    fixtures/expected/logits/<name>.json
    fixtures/expected/manifest.json     versions, model list, config keys, file sizes
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import common  # noqa: E402  (first: setup_env must run before torch / transformers are imported)

# Offline like every reference script; transformers writes the offline flag into tokenizer_config.json
# (`local_files_only`), so the files are the same however this script is started.
common.setup_env()

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tokenizers
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    MistralConfig,
    MistralForCausalLM,
    MistralForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3ForSequenceClassification,
)

from common import REF, ROOT  # noqa: E402

FIX = ROOT / "fixtures"
TEMPLATE_SRC = REF / "chat_templates"

EXPECTED_VERSIONS = {"torch": "2.15", "transformers": "5.23.0", "tokenizers": "0.23.3", "trl": "1.16.0"}

# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------

# Qwen2 / Qwen2.5 pre-tokenizer split regex (as in Qwen2.5's tokenizer.json).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 384  # including the 3 special tokens, which get the last 3 ids (like Qwen2.5)
MODEL_MAX_LENGTH = 512


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(SPECIAL_TOKENS),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    corpus = (REF / "corpus.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    tok.train_from_iterator(corpus, trainer=trainer)
    assert tok.get_vocab_size() == VOCAB_SIZE - len(SPECIAL_TOKENS), tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    assert tok.get_vocab_size() == VOCAB_SIZE
    # The Python binding of decoders.ByteLevel ignores its arguments; patch the serialized form so the decoder
    # block reads exactly like Qwen2.5's tokenizer.json (the flags have no effect on decoding).
    state = json.loads(tok.to_str())
    state["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = Tokenizer.from_str(json.dumps(state))

    chat_template = (TEMPLATE_SRC / "qwen2.5.jinja").read_text(encoding="utf-8")
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],  # like Qwen2.5's additional_special_tokens
        model_max_length=MODEL_MAX_LENGTH,
        chat_template=chat_template,
    )
    assert len(hf) == VOCAB_SIZE
    return hf


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------

COMMON = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
)


def model_specs(vocab_size: int, pad_id: int, eos_id: int):
    """(name, model class, config) for every freshly initialised model, plus its seed."""
    ids = dict(vocab_size=vocab_size, bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id)
    return [
        (
            "tiny-llama",
            1001,
            LlamaForCausalLM,
            LlamaConfig(
                **COMMON, **ids, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            ),
        ),
        (
            "tiny-llama-tied-llama3rope",
            1002,
            LlamaForCausalLM,
            LlamaConfig(
                **COMMON, **ids, tie_word_embeddings=True,
                rope_parameters={
                    "rope_type": "llama3",
                    "rope_theta": 500000.0,
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 32,
                },
            ),
        ),
        (
            "tiny-llama-linear-rope",
            1003,
            LlamaForCausalLM,
            LlamaConfig(
                **COMMON, **ids, tie_word_embeddings=False,
                rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
            ),
        ),
        (
            "tiny-mistral",
            1004,
            MistralForCausalLM,
            MistralConfig(
                **COMMON, **ids, tie_word_embeddings=False, sliding_window=None,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            ),
        ),
        (
            "tiny-qwen2",
            1005,
            Qwen2ForCausalLM,
            Qwen2Config(
                **COMMON, **ids, tie_word_embeddings=True, use_sliding_window=False,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
        ),
        (
            "tiny-qwen3",
            1006,
            Qwen3ForCausalLM,
            Qwen3Config(
                **COMMON, **ids, head_dim=32, tie_word_embeddings=False, use_sliding_window=False,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
        ),
        (
            "tiny-qwen2-rm",
            1007,
            Qwen2ForSequenceClassification,
            Qwen2Config(
                **COMMON, **ids, num_labels=1, tie_word_embeddings=False, use_sliding_window=False,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
        ),
        # reward heads (num_labels=1) on the other families
        (
            "tiny-llama-rm",
            1008,
            LlamaForSequenceClassification,
            LlamaConfig(
                **COMMON, **ids, num_labels=1, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            ),
        ),
        (
            "tiny-mistral-rm",
            1009,
            MistralForSequenceClassification,
            MistralConfig(
                **COMMON, **ids, num_labels=1, tie_word_embeddings=False, sliding_window=None,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            ),
        ),
        (
            "tiny-qwen3-rm",
            1010,
            Qwen3ForSequenceClassification,
            Qwen3Config(
                **COMMON, **ids, head_dim=32, num_labels=1, tie_word_embeddings=False, use_sliding_window=False,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            ),
        ),
    ]


def rerandomize_(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every weight with a wider distribution so logits are far from uniform."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied weights are listed once
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):  # input/post_attention/final norms, q_norm, k_norm
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            elif "embed_tokens" in name or "lm_head" in name or name.startswith("score"):
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.1 * noise)


def new_model(cls, config, seed: int):
    torch.manual_seed(seed)
    model = cls(config)
    model.config._attn_implementation = "eager"
    rerandomize_(model, seed)
    model.eval()
    return model


def load_model(path: Path, seq_cls: bool = False):
    auto = AutoModelForSequenceClassification if seq_cls else AutoModelForCausalLM
    model = auto.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


# --------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------


def f32_list(t: torch.Tensor):
    """Nested lists of Python floats whose repr is the shortest float32 round-trip string."""
    arr = t.detach().to(torch.float32).cpu().numpy()
    assert np.isfinite(arr).all()
    flat = [float(str(x)) for x in arr.ravel()]  # str(np.float32) is the shortest round-trip repr
    out = np.empty(arr.shape, dtype=object)
    out.ravel()[:] = flat
    return out.tolist()


def write_json(path: Path, obj, compact: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if compact:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(obj, ensure_ascii=False, indent=1)
        # keep readable structure but put arrays of plain integers on one line
        text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------
# Expected values: logits / scores
# --------------------------------------------------------------------------------------

LOGIT_SENTENCES = [
    "The quick brown fox jumps over the lazy dog. Hello world!",
    "Hello world!",
]
SEQ_LEN = 10  # row 0: first 10 tokens of sentence 0
ROW1_LEN = 6  # row 1: first 6 tokens of sentence 1, then 4 pads


def logits_batches(tok):
    pad = tok.pad_token_id
    row0 = tok(LOGIT_SENTENCES[0], add_special_tokens=False)["input_ids"][:SEQ_LEN]
    row1 = tok(LOGIT_SENTENCES[1], add_special_tokens=False)["input_ids"][:ROW1_LEN]
    assert len(row0) == SEQ_LEN, row0
    assert len(row1) == ROW1_LEN, row1
    assert pad not in row0 and pad not in row1
    n_pad = SEQ_LEN - len(row1)
    cases = {}
    for case, (ids1, mask1) in {
        "right_pad": (row1 + [pad] * n_pad, [1] * len(row1) + [0] * n_pad),
        "left_pad": ([pad] * n_pad + row1, [0] * n_pad + [1] * len(row1)),
    }.items():
        input_ids = torch.tensor([row0, ids1], dtype=torch.long)
        attention_mask = torch.tensor([[1] * SEQ_LEN, mask1], dtype=torch.long)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        cases[case] = (input_ids, attention_mask, position_ids)
    return cases


def expected_logits(name: str, model, tok, seq_cls: bool) -> dict:
    out = {
        "model": name,
        "model_class": type(model).__name__,
        "dtype": "float32",
        "attn_implementation": "eager",
        "pad_token_id": tok.pad_token_id,
        "sentences": LOGIT_SENTENCES,
        "note": (
            "model(input_ids, attention_mask, position_ids) with position_ids = (attention_mask.cumsum(-1) - 1)"
            ".clamp(min=0). Values where attention_mask == 0 are whatever transformers' eager attention produces "
            "(left-pad query rows are fully masked, so every key gets the same additive min and the softmax is "
            "uniform over all keys); compare only positions with attention_mask == 1 unless you reproduce that."
        ),
        "cases": {},
    }
    for case, (input_ids, attention_mask, position_ids) in logits_batches(tok).items():
        with torch.no_grad():
            res = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        entry = {
            "input_ids": input_ids.tolist(),
            "attention_mask": attention_mask.tolist(),
            "position_ids": position_ids.tolist(),
        }
        if seq_cls:
            # transformers pools the rightmost token that is not pad_token_id
            non_pad = (input_ids != model.config.pad_token_id).int()
            last = (torch.arange(input_ids.shape[-1]) * non_pad).argmax(-1)
            entry["last_non_pad_index"] = last.tolist()
            entry["scores"] = f32_list(res.logits)  # [batch, 1]
        else:
            assert tuple(res.logits.shape) == (2, SEQ_LEN, len(tok)), res.logits.shape
            entry["logits"] = f32_list(res.logits)  # [batch, seq, vocab]
        out["cases"][case] = entry
    return out


# --------------------------------------------------------------------------------------
# Expected values: tokenization
# --------------------------------------------------------------------------------------

TOKENIZATION_STRINGS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "",
    " leading space",
    "trailing space ",
    "multiple   spaces    here",
    "   ",
    "line one\nline two\n\nline four\r\nwindows\ttab",
    "Numbers: 12345 and 3.14159, year 2025.",
    "I'll say it's what we've DONE, don't you think?",
    "Café naïve Zürich — 日本語 中文 한국어 😀🚀❤️",
    "decomposed e\u0301 vs composed \u00e9",  # NFC normalizer folds e + U+0301 into U+00E9
    "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text<|im_end|>",
    "def f(x):\n    return x * 2  # comment",
]


def expected_tokenization(tok) -> dict:
    cases = []
    for s in TOKENIZATION_STRINGS:
        ids_true = tok(s, add_special_tokens=True)["input_ids"]
        ids_false = tok(s, add_special_tokens=False)["input_ids"]
        assert tok.encode(s) == ids_true
        enc = tok.backend_tokenizer.encode(s, add_special_tokens=False)
        cases.append(
            {
                "text": s,
                "ids_add_special_tokens_true": ids_true,
                "ids_add_special_tokens_false": ids_false,
                "tokens": tok.convert_ids_to_tokens(ids_false),
                "char_offsets": [list(o) for o in enc.offsets],  # Python tokenizers: unicode-char offsets into text
                "decode_skip_special_tokens_false": tok.decode(ids_false, skip_special_tokens=False),
                "decode_skip_special_tokens_true": tok.decode(ids_false, skip_special_tokens=True),
            }
        )
    return {
        "tokenizer_dir": "fixtures/tokenizer",
        "vocab_size": len(tok),
        "special_tokens": {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS},
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "eos_token_id": tok.eos_token_id,
        "pad_token": tok.pad_token,
        "pad_token_id": tok.pad_token_id,
        "unk_token": tok.unk_token,
        "special_tokens_map": tok.special_tokens_map,
        "all_special_ids": tok.all_special_ids,
        "padding_side": tok.padding_side,
        "truncation_side": tok.truncation_side,
        "model_max_length": tok.model_max_length,
        "cases": cases,
    }


# --------------------------------------------------------------------------------------
# Expected values: chat templates
# --------------------------------------------------------------------------------------

TEMPLATE_FAMILIES = [
    # family, handles tools, extra kwargs passed to every render (determinism)
    ("qwen2.5", True, {}),
    ("llama-3.1", True, {}),
    ("llama-3.2", True, {"date_string": "26 Jul 2024"}),  # otherwise strftime_now() = today's date
    ("mistral-nemo", True, {}),
    ("smollm2", False, {}),
    ("gemma2", False, {}),
    ("gemma3", False, {}),
    ("phi-3.5", False, {}),
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
            },
            "required": ["city"],
        },
    },
}

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello! How are you?"}
A1 = {"role": "assistant", "content": "I'm fine, thanks. How can I help?"}
U2 = {"role": "user", "content": "What is the capital of France?"}
A2 = {"role": "assistant", "content": "The capital of France is Paris."}
U_WS = {"role": "user", "content": "  \n  spaced out question?  \n\n"}
U_UNI = {"role": "user", "content": "Café? 日本語 😀 <b>&amp;</b> \"quotes\" 'single'"}
U_WEATHER = {"role": "user", "content": "What's the weather in Paris?"}
A_TOOLCALL = {
    "role": "assistant",
    "tool_calls": [
        {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
    ],
}
A_TWO_TOOLCALLS = {
    "role": "assistant",
    "tool_calls": [
        {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "call67890", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
    ],
}
TOOL_RESULT = {
    "role": "tool",
    "tool_call_id": "call12345",
    "name": "get_weather",
    "content": "{\"temperature\": 22, \"unit\": \"celsius\"}",
}
A_FINAL = {"role": "assistant", "content": "It is 22 °C and sunny in Paris."}


def template_cases(family: str, handles_tools: bool):
    """(name, messages, tools, add_generation_prompt, continue_final_message, extra kwargs)."""
    cases = [
        ("user_only_gen", [U1], None, True, False, {}),
        ("user_only_nogen", [U1], None, False, False, {}),
        ("system_multi_turn_gen", [SYSTEM, U1, A1, U2], None, True, False, {}),
        ("system_multi_turn_nogen", [SYSTEM, U1, A1, U2, A2], None, False, False, {}),
        ("multi_turn_no_system_nogen", [U1, A1, U2, A2], None, False, False, {}),
        ("multi_turn_no_system_gen", [U1, A1, U2], None, True, False, {}),
        ("whitespace_and_unicode_gen", [U_WS, A1, U_UNI], None, True, False, {}),
        ("continue_final_message", [U1, {"role": "assistant", "content": "Sure, the answer is"}], None, False, True, {}),
        ("non_alternating_roles", [U1, U2], None, True, False, {}),
        ("system_only", [SYSTEM], None, True, False, {}),
        ("bos_token_kwarg_override", [U1, A1], None, False, False, {"bos_token": "<BOS>", "eos_token": "<EOS>"}),
    ]
    if handles_tools:
        cases += [
            ("tools_user_only_gen", [U_WEATHER], [WEATHER_TOOL], True, False, {}),
            ("tools_with_system_gen", [SYSTEM, U_WEATHER], [WEATHER_TOOL], True, False, {}),
            ("tool_call_roundtrip_nogen", [U_WEATHER, A_TOOLCALL, TOOL_RESULT, A_FINAL], [WEATHER_TOOL], False, False, {}),
            ("tool_call_then_gen", [U_WEATHER, A_TOOLCALL, TOOL_RESULT], [WEATHER_TOOL], True, False, {}),
            ("two_tool_calls", [U_WEATHER, A_TWO_TOOLCALLS], [WEATHER_TOOL], True, False, {}),
            ("tools_no_user_message", [SYSTEM], [WEATHER_TOOL], True, False, {}),
        ]
    if family == "llama-3.1":
        cases.append(("custom_date_string", [U1], None, True, False, {"date_string": "01 Jan 2025"}))
        cases.append(("tools_in_system_message", [U_WEATHER], [WEATHER_TOOL], True, False, {"tools_in_user_message": False}))
    return cases


def expected_chat_templates(tok) -> dict:
    families = {}
    for family, handles_tools, family_kwargs in TEMPLATE_FAMILIES:
        template = (FIX / "templates" / f"{family}.jinja").read_text(encoding="utf-8")
        results = []
        for name, messages, tools, gen, cont, extra in template_cases(family, handles_tools):
            kwargs = {**family_kwargs, **extra}
            entry = {
                "name": name,
                "messages": messages,
                "tools": tools,
                "add_generation_prompt": gen,
                "continue_final_message": cont,
                "kwargs": kwargs,
            }
            try:
                rendered = tok.apply_chat_template(
                    messages,
                    chat_template=template,
                    tokenize=False,
                    add_generation_prompt=gen,
                    continue_final_message=cont,
                    tools=tools,
                    **kwargs,
                )
            except Exception as exc:  # jinja2 TemplateError from raise_exception, or transformers ValueError
                entry["error"] = True
                entry["error_type"] = type(exc).__name__
                entry["error_message"] = str(exc)
            else:
                ids = tok(rendered, add_special_tokens=False)["input_ids"]
                ids2 = tok.apply_chat_template(
                    messages,
                    chat_template=template,
                    tokenize=True,
                    return_dict=False,
                    add_generation_prompt=gen,
                    continue_final_message=cont,
                    tools=tools,
                    **kwargs,
                )
                assert ids == ids2, (family, name)
                entry["error"] = False
                entry["rendered"] = rendered
                entry["ids"] = ids
            results.append(entry)
        families[family] = {
            "template_file": f"fixtures/templates/{family}.jinja",
            "template_sha256": hashlib.sha256(template.encode("utf-8")).hexdigest(),
            "handles_tools": handles_tools,
            "family_kwargs": family_kwargs,
            "cases": results,
        }
    return {
        "tokenizer_dir": "fixtures/tokenizer",
        "render_call": (
            "tokenizer.apply_chat_template(messages, chat_template=<template>, tokenize=False, "
            "add_generation_prompt=..., continue_final_message=..., tools=..., **kwargs); "
            "ids = tokenizer(rendered, add_special_tokens=False).input_ids"
        ),
        # exactly what transformers merges into the template variables before **kwargs
        "special_tokens_passed": tok.special_tokens_map,
        "always_passed": {"tools": "list of JSON schemas or None", "documents": None, "add_generation_prompt": "bool"},
        "families": families,
    }


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def check_versions() -> dict:
    import jinja2
    import safetensors

    import trl

    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "trl": trl.__version__,
        "jinja2": jinja2.__version__,
        "numpy": np.__version__,
    }
    for k, v in EXPECTED_VERSIONS.items():
        if not versions[k].startswith(v):
            print(f"WARNING: {k} {versions[k]} != pinned {v}; fixtures may differ", file=sys.stderr)
    return versions


def save_tokenizer(tok, path: Path) -> None:
    tok.save_pretrained(path)


def config_summary(path: Path) -> dict:
    cfg = json.loads((path / "config.json").read_text())
    return {k: cfg[k] for k in ("architectures", "model_type", "dtype", "rope_parameters", "tie_word_embeddings") if k in cfg}


# What this script writes (relative to fixtures/); everything else there belongs to the *_reference.py scripts.
OWNED = [
    "tokenizer", "models", "templates", "expected/logits",
    "expected/tokenization.json", "expected/chat_templates.json", "expected/manifest.json",
]


def clear_owned() -> None:
    for rel in OWNED:
        path = FIX / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def owned_files() -> list[Path]:
    """Every file under OWNED except the manifest, sorted by path."""
    files = []
    for rel in OWNED:
        path = FIX / rel
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file())
        elif path.is_file() and rel != "expected/manifest.json":
            files.append(path)
    return sorted(files)


def main() -> None:
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)
    versions = check_versions()

    clear_owned()
    (FIX / "expected" / "logits").mkdir(parents=True)

    # ---- chat templates (byte-exact copies) + docs
    (FIX / "templates").mkdir(parents=True)
    for src in sorted(TEMPLATE_SRC.iterdir()):
        if src.suffix in (".jinja", ".md"):
            shutil.copyfile(src, FIX / "templates" / src.name)

    # ---- tokenizer
    tok = build_tokenizer()
    save_tokenizer(tok, FIX / "tokenizer")
    tok = AutoTokenizer.from_pretrained(FIX / "tokenizer")  # everything below uses the reloaded tokenizer
    assert len(tok) == VOCAB_SIZE
    pad_id, eos_id = tok.pad_token_id, tok.eos_token_id

    # ---- models
    manifest_models = {}
    specs = model_specs(len(tok), pad_id, eos_id)
    built = {}
    for name, seed, cls, config in specs:
        model = new_model(cls, config, seed)
        out_dir = FIX / "models" / name
        model.save_pretrained(out_dir)
        save_tokenizer(tok, out_dir)
        built[name] = model

    # bf16 copy of tiny-llama (weights rounded to bf16, config dtype = bfloat16)
    llama = built["tiny-llama"]
    bf16 = LlamaForCausalLM(copy.deepcopy(llama.config)).to(torch.bfloat16)
    bf16.load_state_dict({k: v.to(torch.bfloat16) for k, v in llama.state_dict().items()})
    bf16.config.dtype = torch.bfloat16
    bf16.save_pretrained(FIX / "models" / "tiny-llama-bf16")
    save_tokenizer(tok, FIX / "models" / "tiny-llama-bf16")

    # f16 copy of tiny-llama (weights rounded to float16, config dtype = float16)
    f16 = LlamaForCausalLM(copy.deepcopy(llama.config)).to(torch.float16)
    f16.load_state_dict({k: v.to(torch.float16) for k, v in llama.state_dict().items()})
    f16.config.dtype = torch.float16
    f16.save_pretrained(FIX / "models" / "tiny-llama-f16")
    save_tokenizer(tok, FIX / "models" / "tiny-llama-f16")

    # sharded copy of tiny-llama (same float32 weights, several safetensors files + index)
    llama.save_pretrained(FIX / "models" / "tiny-llama-sharded", max_shard_size="200KB")
    save_tokenizer(tok, FIX / "models" / "tiny-llama-sharded")
    shards = sorted(p.name for p in (FIX / "models" / "tiny-llama-sharded").glob("model-*.safetensors"))
    assert (FIX / "models" / "tiny-llama-sharded" / "model.safetensors.index.json").exists() and len(shards) >= 2, shards

    # ---- expected logits: always computed from the model re-loaded from disk
    all_names = [s[0] for s in specs] + ["tiny-llama-bf16", "tiny-llama-f16", "tiny-llama-sharded"]
    for name in all_names:
        path = FIX / "models" / name
        seq_cls = name.endswith("-rm")
        model = load_model(path, seq_cls=seq_cls)
        if name in built:  # the file round-trip must be exact
            ref_sd = built[name].state_dict()
            for k, v in model.state_dict().items():
                assert torch.equal(v, ref_sd[k]), (name, k)
        if name == "tiny-llama-sharded":
            for k, v in model.state_dict().items():
                assert torch.equal(v, llama.state_dict()[k]), (name, k)
        for low, dtype in (("tiny-llama-bf16", torch.bfloat16), ("tiny-llama-f16", torch.float16)):
            if name == low:
                for k, v in model.state_dict().items():
                    assert v.dtype == torch.float32
                    assert torch.equal(v, llama.state_dict()[k].to(dtype).float()), (name, k)
        exp = expected_logits(name, model, tok, seq_cls)
        exp["model_dir"] = f"fixtures/models/{name}"
        write_json(FIX / "expected" / "logits" / f"{name}.json", exp, compact=True)
        manifest_models[name] = {
            "dir": f"fixtures/models/{name}",
            "files": sorted(p.name for p in path.iterdir()),
            "config": config_summary(path),
            "num_parameters": sum(p.numel() for p in model.parameters()),
        }

    # ---- tokenization + chat templates
    write_json(FIX / "expected" / "tokenization.json", expected_tokenization(tok))
    write_json(FIX / "expected" / "chat_templates.json", expected_chat_templates(tok))

    # ---- manifest
    sizes = {str(p.relative_to(FIX)): p.stat().st_size for p in sorted(owned_files())}
    write_json(
        FIX / "expected" / "manifest.json",
        {
            "generated_by": "reference/make_fixtures.py",
            "versions": versions,
            "models": manifest_models,
            "templates": {
                p.stem: sha256(p) for p in sorted((FIX / "templates").glob("*.jinja"))
            },
            "file_sizes": sizes,
            "total_bytes_excluding_manifest": sum(sizes.values()),
        },
    )
    print(f"wrote fixtures to {FIX} ({sum(sizes.values())} bytes before manifest)")


if __name__ == "__main__":
    main()
