"""TRL's side of the GRPO benchmark (``bench_trl.py grpo``): GRPOTrainer steps on the benchmark model, as
``benches/grpo.rs`` runs trl-rs's.

    python reference/bench_trl.py grpo --model target/bench/model --out grpo-trl.json \
        [--prompts 16] [--num_generations 4] [--prompt_len 64] [--max_completion_length 128] \
        [--gradient_accumulation_steps 4] [--warmup 2] [--steps 5] [--threads 2]

Same work per step on both sides: prompt ``i`` is sft row ``i % 8`` of ``bench_data.json`` from token
``(i // 8) * 128``, ``prompt_len`` long, handed to TRL as token ids (the dataset's prompts are the names ``p0``,
``p1``, ...; ``_tokenize_prompts`` maps a name to its ids, so no tokenizer round trip changes them). One optimizer
step = one generation batch of ``prompts x num_generations`` completions, scored by an in-process reward (the share
of even token ids), then ``gradient_accumulation_steps`` micro-batches (``steps_per_generation`` defaults to the
accumulation steps). GRPOConfig's defaults otherwise (temperature 1, top-k 0, top-p 1, dapo loss, beta 0, learning
rate 1e-6), plus ``generation_kwargs={"min_new_tokens": max_completion_length}`` so every completion has the full
length. fp32, sdpa, ``torch.set_num_threads(threads)``.

Times: a step is the interval between consecutive ``on_step_end`` callbacks; the generation time is the
``_generate_single_turn`` call (padding, ``model.generate`` with its KV cache, cutting at EOS); the rollout time is
the ``_generate_and_score_completions`` call (generation, decoding, scoring, advantages); the rest is the update.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--num_generations", type=int, default=4)
    parser.add_argument("--prompt_len", type=int, default=64)
    parser.add_argument("--max_completion_length", type=int, default=128)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)


def even_share(completion_ids, **kwargs) -> list[float]:
    """The reward both sides compute: the share of even token ids in each completion."""
    return [sum(1 for t in ids if t % 2 == 0) / max(len(ids), 1) for ids in completion_ids]


def _trainer(args, model_dir: Path, prompt_ids: dict[str, list[int]], timings: dict[str, list]):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    class BenchGRPOTrainer(GRPOTrainer):
        def _tokenize_prompts(self, prompts):
            return [list(prompt_ids[p]) for p in prompts], None, {}

        def _generate_single_turn(self, *a, **kw):
            started = time.perf_counter()
            completion_ids, logprobs = super()._generate_single_turn(*a, **kw)
            timings["generation_s"].append(time.perf_counter() - started)
            timings["lengths"].extend(len(c) for c in completion_ids)
            return completion_ids, logprobs

        def _generate_and_score_completions(self, *a, **kw):
            started = time.perf_counter()
            out = super()._generate_and_score_completions(*a, **kw)
            timings["rollout_s"].append(time.perf_counter() - started)
            return out

    total = args.prompts * args.num_generations
    if total % args.gradient_accumulation_steps:
        raise SystemExit("--prompts x --num_generations must split into --gradient_accumulation_steps micro-batches")
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-grpo-"),
        per_device_train_batch_size=total // args.gradient_accumulation_steps,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        generation_kwargs={"min_new_tokens": args.max_completion_length},
        max_steps=args.warmup + args.steps,
        logging_steps=1,
        bf16=False,
        # Explicit: TRL's configs default it to True; trl-rs's benchmark step keeps activations.
        gradient_checkpointing=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=42,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return BenchGRPOTrainer(
        model=model,
        reward_funcs=[even_share],
        args=config,
        train_dataset=Dataset.from_dict({"prompt": list(prompt_ids)}),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )


def run_grpo(args, peak_rss_bytes, cpu_time_s) -> None:
    import torch
    import transformers
    import trl
    from transformers import TrainerCallback

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model)
    rows = json.loads((model_dir / "bench_data.json").read_text())["sft"]
    prompt_ids = {
        f"p{i}": rows[i % len(rows)][(i // len(rows)) * 128 :][: args.prompt_len] for i in range(args.prompts)
    }
    timings: dict[str, list] = {"generation_s": [], "rollout_s": [], "lengths": []}

    class StepTimer(TrainerCallback):
        marks: list[float] = []

        def on_train_begin(self, a, state, control, **kwargs):
            self.marks = [time.perf_counter()]

        def on_step_end(self, a, state, control, **kwargs):
            self.marks.append(time.perf_counter())

    timer = StepTimer()
    trainer = _trainer(args, model_dir, prompt_ids, timings)
    trainer.add_callback(timer)
    trainer.train()
    steps = [b - a for a, b in zip(timer.marks, timer.marks[1:])]
    total = args.warmup + args.steps
    generation_s, rollout_s = timings["generation_s"], timings["rollout_s"]
    counts = [len(steps), len(rollout_s), len(generation_s)]
    if counts != [total] * 3:
        raise SystemExit(f"expected {total} steps with one rollout and generation each, got {counts}")
    if any(n != args.max_completion_length for n in timings["lengths"]):
        raise SystemExit(f"a completion is not {args.max_completion_length} tokens long")
    measured, measured_gen = steps[args.warmup :], generation_s[args.warmup :]
    result = {
        "side": "trl",
        "implementation": f"TRL {trl.__version__} GRPOTrainer (transformers generate, sdpa)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "prompts": args.prompts,
        "num_generations": args.num_generations,
        "prompt_len": args.prompt_len,
        "max_completion_length": args.max_completion_length,
        "per_device_train_batch_size": trainer.args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "threads": torch.get_num_threads(),
        "warmup_steps": args.warmup,
        "step_times_s": steps,
        "rollout_times_s": rollout_s,
        "generation_times_s": generation_s,
        "median_step_s": statistics.median(measured),
        "median_rollout_s": statistics.median(rollout_s[args.warmup :]),
        "median_generation_s": statistics.median(measured_gen),
        "generation_share": sum(measured_gen) / sum(measured),
        "peak_rss_bytes": peak_rss_bytes(),
        "cpu_time_s": cpu_time_s(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(
        f"{result['implementation']} {args.prompts}x{args.num_generations}: {result['median_step_s']:.3f} s/step, "
        f"generation {100 * result['generation_share']:.0f}% of the step, "
        f"peak RSS {result['peak_rss_bytes'] / 1e9:.2f} GB"
    )
