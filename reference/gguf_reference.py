#!/usr/bin/env python3
"""Reference quantized blocks for trl-gguf, and the checker of `trl export gguf` files.

    .venv-reference/bin/python reference/gguf_reference.py
        # writes fixtures/expected/gguf/quantizers.json
    .venv-reference/bin/python reference/gguf_reference.py --check MODEL_DIR FILE [MODEL_DIR FILE ...]
        # checks exported GGUF files (run by tests/export.rs when the venv exists)

Pinned environment: ``gguf`` 0.19.0 (llama.cpp's gguf-py) and ``llama-cpp-python`` 0.3.36 (built
from source by pip) besides torch / transformers (``requirements.txt``).

Output
------
``fixtures/expected/gguf/quantizers.json``: ``inputs``, seeded f32 rows (``rows`` x 256: normal
noise at several scales, plus an all-zero row, a constant row, a row with exact .5 ties and a row
of bf16-precision values), and
for each type the bytes (hex) of the whole ``inputs`` tensor quantized: ``bf16``, ``q8_0``,
``q4_0``, ``q5_0``, ``q5_1`` from gguf-py's numpy quantizers (``gguf.quants.quantize``), and
``q4_K``, ``q5_K``, ``q6_K`` from ggml's C reference (``ggml_quantize_chunk`` with no importance
matrix, what ``llama-quantize`` runs) in the libggml-base that llama-cpp-python ships.

``fixtures/expected/gguf/spm-tokenizer/``: tokenizer.json and tokenizer_config.json of a
Llama-2-style tokenizer (BPE with byte fallback, 384 ids) trained on ``reference/corpus.txt``, the
input of the sentencepiece-style (``llama``) tokenizer export.

``--check``: for each (model folder, GGUF file): gguf-py's reader must read the file; its
``general.architecture`` / block count / token list / eos id / chat template must match the folder;
every tensor must have llama.cpp's name and the safetensors weight's shape (the q/k rows of Llama
models permuted as ``convert_hf_to_gguf.py``'s ``LlamaModel.permute``); f32 and f16 tensors must
equal the weights (f16: rounded); quantized tensors must equal gguf-py's / ggml's quantization of
the same weights byte for byte. With llama-cpp-python installed, f32 and f16 files are run by
llama.cpp: its tokenization of a prompt and its greedy continuation must equal transformers'; for
q8_0 files the last-position logits must be close. Exits non-zero with the differences.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

from common import EXPECTED_DIR, dump, init_libraries

OUT = EXPECTED_DIR / "gguf" / "quantizers.json"
SPM_DIR = EXPECTED_DIR / "gguf" / "spm-tokenizer"
QK_K = 256
PROMPT = "The quick brown fox, said the model, is 42 years old."


def fixed_inputs():
    import numpy as np

    rng = np.random.default_rng(42)
    rows = [rng.normal(0.0, scale, QK_K) for scale in (0.02, 0.1, 1.0, 3.0)]
    skew = rng.normal(0.5, 0.1, QK_K)  # all positive: min > 0 paths
    rows += [skew, np.zeros(QK_K), np.full(QK_K, 0.25)]
    ties = np.tile(np.array([0.5, -0.5, 1.5, -2.5, 127.0, -127.0, 63.5, 0.0]), QK_K // 8)
    rows.append(ties)
    sparse = np.zeros(QK_K)
    sparse[::17] = rng.normal(0.0, 1.0, len(sparse[::17]))
    rows.append(sparse)
    # bf16-precision values (a bf16 checkpoint): scaled values land exactly on rounding edges.
    coarse = rng.normal(0.0, 0.5, QK_K).astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
    rows.append(coarse.view(np.float32))
    return np.stack(rows).astype(np.float32)


def ggml_library():
    """libggml-base from llama-cpp-python, or None when it is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    lib = ctypes.CDLL(str(lib_dir / "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
        ctypes.c_int64, ctypes.c_void_p,
    ]
    return lib


def ggml_quantize(lib, data, qtype):
    """``ggml_quantize_chunk(type, data, ..., imatrix=NULL)`` on a 2-D f32 array."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES

    data = np.ascontiguousarray(data, dtype=np.float32)
    rows, cols = data.shape
    block, size = GGML_QUANT_SIZES[qtype]
    out = np.zeros(rows * cols // block * size, dtype=np.uint8)
    lib.ggml_quantize_chunk(int(qtype), data.ctypes.data, out.ctypes.data, 0, rows, cols, None)
    return out


def write_spm_tokenizer():
    """A Llama-2-style tokenizer.json (BPE with byte fallback, "\u2581" for spaces, <s> added in
    front) with 384 ids like the fixture models, trained on reference/corpus.txt: the input of
    the `llama` (sentencepiece-style) tokenizer export."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=specials + byte_tokens, limit_alphabet=50,
                                  show_progress=False)
    lines = (EXPECTED_DIR.parent.parent / "reference" / "corpus.txt").read_text().splitlines()
    tok.train_from_iterator(lines, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    data = json.loads(tok.to_str())
    # Byte tokens belong to the model's vocabulary, not to the added (special) tokens.
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] in specials]
    out = SPM_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    config = {"backend": "tokenizers", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "model_max_length": 512, "tokenizer_class": "TokenizersBackend"}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")


def write_fixture():
    from importlib.metadata import version

    import gguf
    from gguf import GGMLQuantizationType as T

    x = fixed_inputs()
    lib = ggml_library()
    if lib is None:
        sys.exit("llama-cpp-python is not installed: it provides ggml's k-quant reference (see requirements.txt)")
    out = {
        "generated_by": "reference/gguf_reference.py",
        "versions": {"gguf": version("gguf"), "llama-cpp-python": version("llama-cpp-python")},
        "shape": list(x.shape),
        "inputs": [[float(v) for v in row] for row in x],
    }
    for name, qtype in [("bf16", T.BF16), ("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q5_0", T.Q5_0), ("q5_1", T.Q5_1)]:
        out[name] = gguf.quants.quantize(x, qtype).tobytes().hex()
    for name, qtype in [("q4_K", T.Q4_K), ("q5_K", T.Q5_K), ("q6_K", T.Q6_K)]:
        out[name] = ggml_quantize(lib, x, qtype).tobytes().hex()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dump(out) + "\n")
    write_spm_tokenizer()
    print(f"wrote {OUT.relative_to(EXPECTED_DIR.parent.parent)} and {SPM_DIR.relative_to(EXPECTED_DIR.parent.parent)}/")


# ---------------------------------------------------------------- checking exported files

LAYER_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
ARCH = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2",
        "Qwen3ForCausalLM": "qwen3"}


def gguf_name(hf):
    if hf in TOP_NAMES:
        return TOP_NAMES[hf]
    parts = hf.split(".")
    layer, module, suffix = parts[2], ".".join(parts[3:-1]), parts[-1]
    return f"blk.{layer}.{LAYER_NAMES[module]}.{suffix}"


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def expected_weights(model_dir: Path, config: dict) -> dict:
    import torch
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(f))
    arch = ARCH[config["architectures"][0]]
    out = {}
    for hf, t in tensors.items():
        w = t.to(torch.float32).numpy()
        if arch == "llama" and hf.endswith("q_proj.weight"):
            w = permute(w, config["num_attention_heads"], config["num_attention_heads"])
        if arch == "llama" and hf.endswith("k_proj.weight"):
            w = permute(w, config["num_attention_heads"], config.get("num_key_value_heads"))
        out[gguf_name(hf)] = w
    return out


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def check_metadata(reader, model_dir: Path, config: dict, errors: list):
    from transformers import AutoTokenizer

    arch = ARCH[config["architectures"][0]]
    tok = AutoTokenizer.from_pretrained(model_dir)
    want = {
        "general.architecture": arch,
        f"{arch}.block_count": config["num_hidden_layers"],
        f"{arch}.embedding_length": config["hidden_size"],
        f"{arch}.attention.head_count": config["num_attention_heads"],
        "tokenizer.ggml.eos_token_id": tok.eos_token_id,
        "general.quantization_version": 2,
    }
    for key, value in want.items():
        if field(reader, key) != value:
            errors.append(f"{key}: {field(reader, key)!r} != {value!r}")
    vocab = tok.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    tokens = field(reader, "tokenizer.ggml.tokens")
    if tokens != [by_id[i] for i in range(config["vocab_size"])]:
        errors.append("tokenizer.ggml.tokens differ from the tokenizer's vocabulary")
    template = (model_dir / "chat_template.jinja").read_text() if (model_dir / "chat_template.jinja").is_file() else None
    if template is not None and field(reader, "tokenizer.chat_template") != template:
        errors.append("tokenizer.chat_template differs from chat_template.jinja")


def check_tensor(t, w, lib, errors):
    import gguf
    import numpy as np
    from gguf import GGMLQuantizationType as T

    name, qtype = t.name, T(t.tensor_type)
    if list(reversed([int(d) for d in t.shape])) != list(w.shape):
        errors.append(f"{name}: shape {list(t.shape)} (GGUF order) vs weight {list(w.shape)}")
        return
    raw = np.asarray(t.data)
    if qtype == T.F32:
        ok = np.array_equal(raw.reshape(w.shape), w)
    elif qtype == T.F16:
        ok = np.array_equal(raw.reshape(w.shape), w.astype(np.float16))
    elif qtype in (T.BF16, T.Q8_0, T.Q4_0, T.Q5_0, T.Q5_1):
        ok = raw.tobytes() == gguf.quants.quantize(w, qtype).tobytes()
    elif qtype in (T.Q4_K, T.Q5_K, T.Q6_K) and lib is not None:
        ok = raw.tobytes() == ggml_quantize(lib, w.reshape(-1, w.shape[-1]), qtype).tobytes()
    else:
        ok = np.allclose(gguf.quants.dequantize(raw, qtype).reshape(w.shape), w, atol=0.1 * np.abs(w).max())
    if not ok:
        errors.append(f"{name}: {qtype.name} data differs from the reference on the safetensors weight")


def check_runtime(path: Path, model_dir: Path, ftype: int, errors: list):
    """llama.cpp runs the file: same tokens as transformers, same greedy continuation."""
    try:
        from llama_cpp import Llama
    except ImportError:
        print("  (llama-cpp-python not installed: llama.cpp runtime check skipped)")
        return
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    ids = tok(PROMPT, add_special_tokens=True)["input_ids"]
    llm = Llama(model_path=str(path), n_ctx=128, n_threads=1, logits_all=True, verbose=False)
    cpp_ids = llm.tokenize(PROMPT.encode(), add_bos=True, special=False)
    if cpp_ids != ids:
        errors.append(f"llama.cpp tokenizes the prompt as {cpp_ids}, transformers as {ids}")
        return
    with torch.no_grad():
        hf_out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                do_sample=False, max_new_tokens=8, eos_token_id=None)
        hf_logits = model(torch.tensor([ids])).logits[0, -1].numpy()
    hf_new = hf_out[0, len(ids):].tolist()
    llm.reset()
    llm.eval(ids)
    cpp_logits = np.array(llm.scores[llm.n_tokens - 1])
    cpp_new = []
    for _ in range(8):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        cpp_new.append(nxt)
        llm.eval([nxt])
    diff = float(np.abs(cpp_logits - hf_logits).max())
    scale = float(np.abs(hf_logits).max())
    # f32/f16: the same greedy tokens and logits within 0.5% of their range (llama.cpp keeps its
    # KV cache in f16); q8_0: logits within 5%.
    if ftype in (0, 1) and cpp_new != hf_new:
        errors.append(f"llama.cpp greedy {cpp_new} != transformers {hf_new}")
    if diff > (0.005 if ftype in (0, 1) else 0.05) * scale + 1e-3:
        errors.append(f"llama.cpp logits differ from transformers' by {diff:.4f} (largest logit {scale:.3f})")
    print(f"  llama.cpp greedy {cpp_new} (transformers {hf_new}), max logit diff {diff:.2e} of {scale:.2e}")


def check(pairs):
    init_libraries(transformers_progress_bar=False)
    from gguf import GGUFReader

    lib = ggml_library()
    failures = 0
    for model_dir, path in pairs:
        model_dir, path = Path(model_dir), Path(path)
        config = json.loads((model_dir / "config.json").read_text())
        reader = GGUFReader(path)
        errors: list[str] = []
        check_metadata(reader, model_dir, config, errors)
        weights = expected_weights(model_dir, config)
        names = {t.name for t in reader.tensors} - {"rope_freqs.weight"}
        if names != set(weights):
            errors.append(f"tensor names {sorted(names ^ set(weights))} differ")
        for t in reader.tensors:
            if t.name in weights:
                check_tensor(t, weights[t.name], lib, errors)
        ftype = field(reader, "general.file_type")
        if ftype in (0, 1, 7):
            check_runtime(path, model_dir, ftype, errors)
        status = "ok" if not errors else "FAILED"
        print(f"{path.name}: {status}")
        for e in errors:
            print(f"  {e}")
        failures += bool(errors)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--check":
        rest = args[1:]
        if not rest or len(rest) % 2:
            sys.exit("usage: gguf_reference.py --check MODEL_DIR FILE [MODEL_DIR FILE ...]")
        check(list(zip(rest[::2], rest[1::2])))
    else:
        write_fixture()
