#!/usr/bin/env python3
"""The Python side of ``cargo xtask bench``: the benchmark model and data, and TRL's training steps.

    python reference/bench_trl.py make-model --out target/bench/model
    python reference/bench_trl.py run --method sft --impl trl   --model target/bench/model --out sft-trl.json
    python reference/bench_trl.py run --method dpo --impl torch --model target/bench/model --out dpo-torch.json
    python reference/bench_trl.py run --method sft --impl trl --peft --model target/bench/model --out sft-lora-trl.json
    python reference/bench_trl.py generate --model target/bench/model --batch 16 --num_return_sequences 4 --out gen.json
    python reference/bench_trl.py grpo --model target/bench/model --out grpo-trl.json   (``bench_grpo.py``)

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, trl 1.16.0 (``requirements.txt``); the xtask
runs this with the reference venv it creates from that file.

``make-model`` writes the one model both sides train, so that trl-rs and TRL start from identical weights:
a ``Qwen2ForCausalLM`` initialised by transformers (seed 0; hidden 256, 4 layers, 8 query / 4 key-value
heads, intermediate 1024, vocab 512, untied ``lm_head``, fp32), the tiny-qwen2 fixture's tokenizer (its
special ids 381..383 fit the vocabulary), and ``bench_data.json``: the token ids of every row, random in
``[0, 381)`` so no special token appears:
  ``sft``: 8 rows of 256 tokens (one batch; every token is a label);
  ``dpo``: 8 pairs of ``prompt_ids`` (128) + ``chosen_ids`` / ``rejected_ids`` (128 each): 16 sequences of
  256 tokens in one concatenated forward.

``make-model --preset qwen2.5-0.5b [--layers N]`` writes instead a random model with Qwen2.5-0.5B's exact
config (24 layers, hidden 896, 14 / 2 heads, intermediate 4864, vocab 151,936, tied embeddings; ``--layers``
keeps fewer layers when the full depth is too slow), never committed: the real-shape benchmark.
``make-data --model DIR --rows R --seq S`` writes ``DIR/bench_data_RxS.json``: ``R`` SFT rows of ``S`` tokens
and ``R`` DPO pairs of ``S / 2`` prompt + ``S / 2`` completion tokens (the shapes of the real-shape case and
of the sequence-length sweep); ``run --data FILE`` trains on such a file (batch = its rows / pairs).

``run`` does ``warmup + steps`` optimizer steps of one method with one implementation, in its own process
(so its peak RSS is its own), and writes JSON: every step's wall time, the median of the measured steps,
tokens/s, and ``peak_rss_bytes`` (``VmHWM`` of ``/proc/self/status`` at the end, the whole process:
interpreter, torch and TRL included, as the Rust side counts its whole process too).
  ``--impl trl``: TRL 1.16's ``SFTTrainer`` / ``DPOTrainer`` (sigmoid loss, reference model = a frozen copy
  of the policy, TRL's default), timed between consecutive ``on_step_end`` callbacks.
  ``--impl torch``: a hand-written loop with the same work per step (forward, loss, backward, grad-norm
  clip, AdamW), the lower bound of what PyTorch needs without a trainer around it.
  ``--peft`` (``--impl trl`` only): the trainer gets ``peft_config``, TRL's ``--use_peft`` defaults (``LoraConfig``
  r 16, alpha 32, dropout 0.05, peft's default targets ``q_proj``/``v_proj``); the method is reported as
  ``sft-lora`` / ``dpo-lora``.
Both: fp32, sdpa attention (transformers' default), ``torch.set_num_threads(threads)`` (2 by default: the
machine's cores), AdamW lr 1e-5, no weight decay, ``max_grad_norm`` 1.0, batch size 8 (SFT rows / DPO
pairs), no checkpoints, no evaluation, no logging sinks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER_SOURCE = ROOT / "fixtures" / "models" / "tiny-qwen2"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")

BATCH = 8  # SFT rows, DPO pairs
SEQ = 256  # every sequence's length
PROMPT = 128  # DPO prompt length; the completion is the rest
TOKEN_RANGE = 381  # ids below the tokenizer's special tokens (381 pad, 382/383 chat markers)
LEARNING_RATE = 1e-5
SEED = 0

# Qwen2.5-0.5B's config.json (architecture fields), randomly initialised.
QWEN_05B_CONFIG = dict(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    pad_token_id=381,
    eos_token_id=383,
    bos_token_id=None,
)

MODEL_CONFIG = dict(
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=4,
    intermediate_size=1024,
    vocab_size=512,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    pad_token_id=381,
    eos_token_id=383,
    bos_token_id=None,
)


def _setup_env(threads: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ["OMP_NUM_THREADS"] = str(threads)


def peak_rss_bytes() -> int:
    """``VmHWM`` (the resident-set high-water mark) of this process, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def cpu_time_s() -> float:
    """User + system CPU time of this process (all threads) so far, in seconds."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_model(out: Path, preset: str = "bench", layers: int | None = None) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(SEED)
    fields = dict(MODEL_CONFIG if preset == "bench" else QWEN_05B_CONFIG)
    if layers is not None:
        fields["num_hidden_layers"] = layers
    config = Qwen2Config(**fields)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(TOKENIZER_SOURCE / name, out / name)

    generator = torch.Generator().manual_seed(SEED + 1)

    def ids(n: int) -> list[int]:
        return torch.randint(0, TOKEN_RANGE, (n,), generator=generator).tolist()

    data = {
        "description": "bench_trl.py make-model: random token ids, identical for trl-rs and TRL",
        "sft": [ids(SEQ) for _ in range(BATCH)],
        "dpo": [
            {"prompt_ids": ids(PROMPT), "chosen_ids": ids(SEQ - PROMPT), "rejected_ids": ids(SEQ - PROMPT)}
            for _ in range(BATCH)
        ],
    }
    (out / "bench_data.json").write_text(json.dumps(data))
    params = sum(p.numel() for p in model.parameters())
    print(f"bench model: {params} parameters -> {out}")


def make_data(model_dir: Path, rows: int, seq: int) -> Path:
    """``R`` SFT rows of ``S`` random tokens and ``R`` DPO pairs of ``S / 2`` + ``S / 2``."""
    import torch

    generator = torch.Generator().manual_seed(SEED + seq * 1000 + rows)

    def ids(n: int) -> list[int]:
        return torch.randint(0, TOKEN_RANGE, (n,), generator=generator).tolist()

    half = seq // 2
    data = {
        "description": f"bench_trl.py make-data: {rows} x {seq} random token ids, identical for trl-rs and TRL",
        "sft": [ids(seq) for _ in range(rows)],
        "dpo": [
            {"prompt_ids": ids(half), "chosen_ids": ids(seq - half), "rejected_ids": ids(seq - half)}
            for _ in range(rows)
        ],
    }
    path = model_dir / f"bench_data_{rows}x{seq}.json"
    path.write_text(json.dumps(data))
    print(f"bench data {rows} x {seq} -> {path}")
    return path


def data_shape(data: dict, method: str) -> tuple[int, int, int]:
    """``(batch, seq, prompt)`` of a data file: rows (SFT) or pairs (DPO), sequence length, prompt."""
    if method == "sft":
        return len(data["sft"]), len(data["sft"][0]), 0
    pair = data["dpo"][0]
    prompt = len(pair["prompt_ids"])
    return len(data["dpo"]), prompt + len(pair["chosen_ids"]), prompt


def _load(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def _peft_config():
    """TRL's ``--use_peft`` defaults (``ModelConfig`` -> ``get_peft_config``)."""
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM")


def run_trl(
    method: str,
    model_dir: Path,
    data: dict,
    total_steps: int,
    peft: bool = False,
    device: str = "cpu",
    gradient_checkpointing: bool = False,
    bf16: bool = False,
) -> list[float]:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            if device != "cpu":
                torch.cuda.synchronize()  # a step's time includes its queued kernels
            self.marks.append(time.perf_counter())

    timer = StepTimer()
    batch, seq, _ = data_shape(data, method)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = _load(model_dir)
    common = dict(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"),
        per_device_train_batch_size=batch,
        max_steps=total_steps,
        learning_rate=LEARNING_RATE,
        # TRL's configs default bf16 to True (autocast, on the CPU too); the fp32 rows pass False.
        bf16=bf16,
        # Explicit: TRL's configs default it to True, trl-rs's benchmark steps keep activations.
        gradient_checkpointing=gradient_checkpointing,
        use_cpu=device == "cpu",
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=42,
    )
    if method == "sft":
        from trl import SFTConfig, SFTTrainer

        # Pre-tokenized rows (an `input_ids` column): TRL skips tokenization, trains on every token.
        dataset = Dataset.from_dict({"input_ids": data["sft"]})
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(max_length=seq, **common),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[timer],
            peft_config=_peft_config() if peft else None,
        )
    else:
        from trl import DPOConfig, DPOTrainer

        # DPOTrainer always tokenizes its text columns: build it on placeholder text, then hand it
        # the pre-tokenized pairs (the columns its collator reads).
        placeholder = Dataset.from_dict({"prompt": ["a"] * batch, "chosen": ["b"] * batch, "rejected": ["c"] * batch})
        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(max_length=seq, **common),
            train_dataset=placeholder,
            processing_class=tokenizer,
            callbacks=[timer],
            peft_config=_peft_config() if peft else None,
        )
        trainer.train_dataset = Dataset.from_list([dict(pair) for pair in data["dpo"]])
    trainer.train()
    marks = timer.marks
    return [b - a for a, b in zip(marks, marks[1:])]


def run_torch(method: str, model_dir: Path, data: dict, total_steps: int) -> list[float]:
    import torch
    import torch.nn.functional as F

    model = _load(model_dir)
    model.train()
    batch, _, prompt = data_shape(data, method)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    if method == "sft":
        input_ids = torch.tensor(data["sft"])  # [8, 256]

        def loss_fn():
            return model(input_ids=input_ids, labels=input_ids).loss

    else:
        reference = _load(model_dir).eval()
        for p in reference.parameters():
            p.requires_grad_(False)
        pairs = data["dpo"]
        rows = [p["prompt_ids"] + p["chosen_ids"] for p in pairs] + [p["prompt_ids"] + p["rejected_ids"] for p in pairs]
        input_ids = torch.tensor(rows)  # [16, 256]: chosen rows, then rejected rows
        completion = torch.zeros_like(input_ids, dtype=torch.bool)
        completion[:, prompt:] = True
        labels = input_ids[:, 1:]
        mask = completion[:, 1:]
        beta = 0.1

        def sequence_logps(logits):
            # [16, 255, vocab] -> [16]
            logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
            return (logps * mask).sum(-1)

        def loss_fn():
            policy = sequence_logps(model(input_ids=input_ids).logits)
            with torch.no_grad():
                ref = sequence_logps(reference(input_ids=input_ids).logits)
            ratios = (policy - ref).view(2, batch)
            return -F.logsigmoid(beta * (ratios[0] - ratios[1])).mean()

    times = []
    for _ in range(total_steps):
        start = time.perf_counter()
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - start)
    return times


def run(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model)
    data = json.loads(Path(args.data or model_dir / "bench_data.json").read_text())
    total = args.warmup + args.steps
    if args.peft and args.impl != "trl":
        raise SystemExit("--peft runs TRL's trainer with peft_config: use it with --impl trl")
    if args.device != "cpu" and args.impl != "trl":
        raise SystemExit("--device cuda runs TRL's trainer: use it with --impl trl")
    if args.device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    if args.impl == "trl":
        times = run_trl(
            args.method,
            model_dir,
            data,
            total,
            peft=args.peft,
            device=args.device,
            gradient_checkpointing=args.gradient_checkpointing == "true",
            bf16=args.bf16 == "true",
        )
    else:
        times = run_torch(args.method, model_dir, data, total)
    if len(times) < total:
        raise SystemExit(f"expected {total} step times, got {len(times)}")
    measured = times[args.warmup : total]
    median = statistics.median(measured)
    batch, seq, _ = data_shape(data, args.method)
    sequences = batch if args.method == "sft" else 2 * batch
    tokens = sequences * seq
    import transformers
    import trl

    result = {
        "side": f"{args.impl}",
        "implementation": {
            "trl": f"TRL {trl.__version__} {'SFTTrainer' if args.method == 'sft' else 'DPOTrainer'}"
            + (" + peft" if args.peft else "")
            + " (sdpa)",
            "torch": "hand-written PyTorch loop (sdpa)",
        }[args.impl],
        "method": args.method + ("-lora" if args.peft else "") + ("-bf16" if args.bf16 == "true" else ""),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens,
        "sequences_per_step": sequences,
        "seq_len": seq,
        "warmup_steps": args.warmup,
        "step_times_s": times,
        "median_step_s": median,
        "tokens_per_s": tokens / median,
        "peak_rss_bytes": peak_rss_bytes(),
        # user + system CPU of every thread so far: against the wall time, how many cores it used
        "cpu_time_s": cpu_time_s(),
        "device": args.device,
        # what torch's caching allocator held at most (the GPU benchmark also samples nvidia-smi)
        "torch_peak_reserved_bytes": torch.cuda.max_memory_reserved() if args.device != "cpu" else None,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(
        f"{result['implementation']:<45} {result['method']}: {median:.3f} s/step, {tokens / median:.0f} tokens/s, "
        f"peak RSS {result['peak_rss_bytes'] / 1e9:.2f} GB"
    )


def generate(args: argparse.Namespace) -> None:
    """transformers' ``generate`` on the benchmark model, as ``benches/generate.rs`` runs ours: prompt ``i``
    is sft row ``i % 8`` from token ``(i // 8) * 128``, ``prompt_len`` long; sampling with transformers'
    defaults (temperature 1, top-k 50), ``min_new_tokens = max_new_tokens``, fp32, sdpa, KV cache; the time
    is the whole ``generate`` call."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model)
    data = json.loads((model_dir / "bench_data.json").read_text())
    rows = data["sft"]
    prompts = [rows[i % len(rows)][(i // len(rows)) * 128 :][: args.prompt_len] for i in range(args.batch)]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    input_ids = torch.tensor(prompts)
    attention_mask = torch.ones_like(input_ids)
    times = []
    for run_index in range(args.warmup + args.runs):
        torch.manual_seed(run_index)
        started = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=True,
                max_new_tokens=args.max_new_tokens,
                min_new_tokens=args.max_new_tokens,
                num_return_sequences=args.num_return_sequences,
                pad_token_id=MODEL_CONFIG["pad_token_id"],
            )
        times.append(time.perf_counter() - started)
        assert out.shape == (args.batch * args.num_return_sequences, args.prompt_len + args.max_new_tokens)
    median = statistics.median(times[args.warmup :])
    generated = args.batch * args.num_return_sequences * args.max_new_tokens
    result = {
        "side": "transformers",
        "implementation": f"transformers {transformers.__version__} generate (sdpa, KV cache)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "batch": args.batch,
        "num_return_sequences": args.num_return_sequences,
        "prompt_len": args.prompt_len,
        "max_new_tokens": args.max_new_tokens,
        "threads": torch.get_num_threads(),
        "run_times_s": times,
        "median_s": median,
        "tokens_per_s": generated / median,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(
        f"transformers generate {args.batch}x{args.num_return_sequences}: {median:.3f} s, "
        f"{generated / median:.0f} tokens/s, peak RSS {result['peak_rss_bytes'] / 1e9:.2f} GB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make-model", help="write the benchmark model, tokenizer and data")
    make.add_argument("--out", required=True)
    make.add_argument("--preset", choices=["bench", "qwen2.5-0.5b"], default="bench")
    make.add_argument("--layers", type=int, default=None, help="decoder layers (default: the preset's)")
    shape = sub.add_parser("make-data", help="write bench_data_RxS.json next to a benchmark model")
    shape.add_argument("--model", required=True)
    shape.add_argument("--rows", type=int, required=True)
    shape.add_argument("--seq", type=int, required=True)
    bench = sub.add_parser("run", help="time training steps of one method with one implementation")
    bench.add_argument("--method", choices=["sft", "dpo"], required=True)
    bench.add_argument("--impl", choices=["trl", "torch"], default="trl")
    bench.add_argument("--model", required=True)
    bench.add_argument("--out", required=True)
    bench.add_argument("--data", default=None, help="a make-data file (default: the model's bench_data.json)")
    bench.add_argument("--warmup", type=int, default=3)
    bench.add_argument("--steps", type=int, default=10)
    bench.add_argument("--threads", type=int, default=2)
    bench.add_argument("--peft", action="store_true", help="train LoRA adapters (TRL's --use_peft defaults)")
    bench.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where TRL trains (fp32 either way)")
    bench.add_argument(
        "--gradient_checkpointing",
        choices=["true", "false"],
        default="false",
        help="recompute activations in the backward (TRL's configs default to true; trl-rs's e2e steps to false)",
    )
    bench.add_argument(
        "--bf16",
        choices=["true", "false"],
        default="false",
        help="bf16 autocast (TRL's configs default to true; the fp32 rows pass false)",
    )
    gen = sub.add_parser("generate", help="time transformers' generate on the benchmark model")
    gen.add_argument("--model", required=True)
    gen.add_argument("--out", required=True)
    gen.add_argument("--batch", type=int, default=1)
    gen.add_argument("--num_return_sequences", type=int, default=1)
    gen.add_argument("--prompt_len", type=int, default=64)
    gen.add_argument("--max_new_tokens", type=int, default=128)
    gen.add_argument("--warmup", type=int, default=1)
    gen.add_argument("--runs", type=int, default=3)
    gen.add_argument("--threads", type=int, default=2)
    import bench_grpo  # this folder is on sys.path when the script runs

    bench_grpo.add_arguments(sub.add_parser("grpo", help="time TRL GRPOTrainer steps (bench_grpo.py)"))
    args = parser.parse_args()
    _setup_env(getattr(args, "threads", 2))
    if args.command == "make-model":
        make_model(Path(args.out), args.preset, args.layers)
    elif args.command == "make-data":
        make_data(Path(args.model), args.rows, args.seq)
    elif args.command == "generate":
        generate(args)
    elif args.command == "grpo":
        bench_grpo.run_grpo(args, peak_rss_bytes, cpu_time_s)
    else:
        run(args)


if __name__ == "__main__":
    sys.exit(main())
