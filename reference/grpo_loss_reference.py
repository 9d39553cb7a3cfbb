#!/usr/bin/env python3
"""Reference numbers for trl-rs's GRPO / RLOO math (losses and advantages), from TRL's own code.

    .venv-reference/bin/python reference/grpo_loss_reference.py

Writes ``fixtures/expected/grpo_loss.json``; checked by ``crates/trl-grpo/src/loss/tests.rs`` and
``crates/trl-grpo/src/advantages_tests.rs``.

Nothing is re-implemented here. A trainer object is made with ``__new__`` (no model, no dataset)
and given the attributes its ``__init__`` would set from a real ``GRPOConfig`` / ``RLOOConfig``
(the config object itself is ``trainer.args``); the model forward is replaced by fixed tensors:

* losses: ``_get_per_token_logps_and_entropies`` returns fixed ``per_token_logps`` (a leaf that
  requires grad) and entropies; TRL's ``_compute_loss`` runs (with its ``get_high_entropy_mask``,
  ``get_gamma_weights``, normaliser and metric code) and ``loss.backward()`` gives the gradient
  w.r.t. ``per_token_logps``. ``_metrics["train"]`` holds what the step logged.
* advantages: ``_generate`` returns fixed prompt/completion ids (the completion lengths give the
  completion mask), ``_calculate_rewards`` returns a fixed ``rewards_per_func`` (NaN = the reward
  function returned None) and, for RLOO with ``beta > 0``, ``_get_per_token_logps_and_entropies``
  returns fixed old / reference log-probs; TRL's ``_generate_and_score_completions`` runs the
  advantage block exactly as in training.

A single process is simulated: the accelerator stub's ``gather`` / ``reduce`` /
``pad_across_processes`` return their input (what accelerate does with one process).

Schema (NaN is written as null everywhere):
  generated_by, versions
  grpo_config_defaults   GRPOConfig() values of the loss / advantage options
  rloo_config_defaults   RLOOConfig() values of the same
  grpo_loss_cases: [{name,
      config: {loss_type, epsilon_low, epsilon_high, delta, beta, use_bias_correction_kl,
               importance_sampling_level, sapo_temperature_pos/neg, vespo_k_pos, vespo_lambda_pos,
               vespo_k_neg, vespo_lambda_neg, max_completion_length, top_entropy_quantile,
               entropy_coef}  (as the trainer reads them: epsilon_high already resolved)
      normalizer: {current_gradient_accumulation_steps, steps_per_generation, num_items_in_batch}
      inputs: the name of an entry of loss_inputs (its ref_per_token_logps is passed iff beta != 0)
      loss (what _compute_loss returned), grad_per_token_logps [B][T], metrics {name: value}}]
  rloo_loss_cases: [{name, config: {epsilon_low, epsilon_high},
      current_gradient_accumulation_steps (the HF Trainer divides RLOO's loss by it:
        RLOOTrainer.loss_is_scaled_for_ga is False),
      inputs: the name of an entry of loss_inputs, old_logps [B] (sum of the masked old log-probs:
        the current ones for an on-policy case),
      loss (what _compute_loss returned, before the Trainer's division), grad_per_token_logps
        (of that loss), metrics}]
  loss_inputs: {name: {per_token_logps, entropies, completion_mask [B][T], advantages [B],
      old_per_token_logps [B][T] | null (null: TRL uses per_token_logps.detach()),
      ref_per_token_logps [B][T] | null}}  (B = 6, T = 5; row 4 is all padding)
  grpo_advantage_cases: [{name, num_generations, scale_rewards, multi_objective_aggregation,
      reward_weights, rewards_per_func [N][F], advantages [N], metrics {name: value}}]
  rloo_advantage_cases: [{name, num_generations, beta, reward_clip_range | null,
      normalize_advantages, reward_weights, rewards_per_func, completion_mask [N][T],
      old_per_token_logps [N][T] | null, ref_per_token_logps [N][T] | null (beta != 0),
      advantages [N], metrics}]
"""

from __future__ import annotations

import math
import tempfile
from collections import defaultdict
from types import SimpleNamespace

import torch

from common import EXPECTED_DIR, ROOT, deterministic_torch, dump, setup_env, versions

OUT = EXPECTED_DIR / "grpo_loss.json"

B, T = 6, 5
# Completion lengths of the loss batch: padding in most rows and one all-masked row (index 4).
LENGTHS = [5, 3, 1, 4, 0, 2]

LOSS_KEYS = [
    "loss_type", "epsilon", "epsilon_high", "delta", "beta", "use_bias_correction_kl",
    "importance_sampling_level", "sapo_temperature_pos", "sapo_temperature_neg", "vespo_k_pos",
    "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg", "max_completion_length",
    "top_entropy_quantile", "entropy_coef", "use_adaptive_entropy", "scale_rewards",
    "multi_objective_aggregation", "num_generations", "num_iterations",
]
RLOO_KEYS = ["beta", "epsilon", "epsilon_high", "normalize_advantages", "reward_clip_range", "num_generations"]

ALL_LOSS_TYPES = ["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]


def nan_to_none(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (list, tuple)):
        return [nan_to_none(x) for x in v]
    if isinstance(v, dict):
        return {k: nan_to_none(x) for k, x in v.items()}
    return v


def floats(t: torch.Tensor):
    return [float(x) for x in t.detach().tolist()] if t.dim() == 1 else [floats(r) for r in t.detach()]


class Accelerator:
    """One process: gathers and reductions are the identity."""

    num_processes = 1
    process_index = 0
    is_main_process = True
    sync_gradients = True
    device = torch.device("cpu")

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x

    def reduce(self, x, reduction="sum"):
        return x

    def pad_across_processes(self, x, dim=0, pad_index=0):
        return x


def config(cls, **kwargs):
    with tempfile.TemporaryDirectory() as tmp:
        return cls(output_dir=tmp, report_to="none", bf16=False, use_cpu=True, **kwargs)


def mask_from_lengths(lengths, width):
    return torch.tensor([[1 if t < n else 0 for t in range(width)] for n in lengths], dtype=torch.long)


# ------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------


# name -> the inputs written once under "loss_inputs" (cases refer to them by name)
INPUT_SETS: dict[str, dict] = {}


def loss_inputs(name: str, seed: int, off_policy: bool, with_ref: bool, log_ratio_std: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    logps = -(torch.rand(B, T, generator=g) * 3.0 + 0.05)
    entropies = torch.rand(B, T, generator=g) * 3.0
    advantages = torch.randn(B, generator=g)
    old = logps + torch.randn(B, T, generator=g) * log_ratio_std if off_policy else None
    ref = logps + torch.randn(B, T, generator=g) * 0.3 if with_ref else None
    inputs = {
        "per_token_logps": logps,
        "entropies": entropies,
        "completion_mask": mask_from_lengths(LENGTHS, T),
        "advantages": advantages,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
    }
    INPUT_SETS[name] = {
        k: (floats(v.float()) if k == "completion_mask" else floats(v)) if v is not None else None
        for k, v in inputs.items()
    }
    return name, inputs


# ------------------------------------------------------------------------------------
# GRPO loss
# ------------------------------------------------------------------------------------


def grpo_trainer(args, ga: int):
    from trl import GRPOTrainer

    trainer = GRPOTrainer.__new__(GRPOTrainer)
    # What GRPOTrainer.__init__ sets from `args` and _compute_loss reads.
    trainer.args = args
    trainer.loss_type = args.loss_type
    trainer.epsilon_low = args.epsilon
    trainer.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
    trainer.beta = args.beta
    trainer.importance_sampling_level = args.importance_sampling_level
    trainer.off_policy_mask_threshold = args.off_policy_mask_threshold
    trainer.top_entropy_quantile = args.top_entropy_quantile
    trainer.entropy_coef = args.entropy_coef
    trainer.use_adaptive_entropy = args.use_adaptive_entropy
    trainer._entropy_bonus_enabled = trainer.entropy_coef != 0.0 or trainer.use_adaptive_entropy
    trainer._last_world_entropy = float("inf")
    trainer._entropy_window_stats = None
    trainer.max_completion_length = args.max_completion_length
    trainer.use_vllm = args.use_vllm
    trainer.vllm_importance_sampling_correction = args.vllm_importance_sampling_correction
    trainer.aux_loss_enabled = False
    trainer.num_generations = args.num_generations
    trainer.num_iterations = args.num_iterations
    trainer.scale_rewards = args.scale_rewards
    trainer.multi_objective_aggregation = args.multi_objective_aggregation
    trainer.mask_truncated_completions = args.mask_truncated_completions
    # What the HF Trainer / accelerate provide.
    trainer.current_gradient_accumulation_steps = ga
    trainer.accelerator = Accelerator()
    trainer.model = SimpleNamespace(training=True, is_gradient_checkpointing=False)
    trainer.state = SimpleNamespace(global_step=0)
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    return trainer


def run_grpo_loss(name, named_inputs, ga=2, steps_per_generation=4, num_items=None, **kwargs):
    inputs_name, inputs = named_inputs
    args = config_grpo(steps_per_generation=steps_per_generation, **kwargs)
    trainer = grpo_trainer(args, ga)
    logps = inputs["per_token_logps"].clone().requires_grad_(True)
    mask = inputs["completion_mask"]
    if num_items is None:
        # the whole generation batch: this micro-batch's tokens and some more from the others
        num_items = int(mask.sum()) * steps_per_generation - 3
    batch = {
        "prompt_ids": torch.ones(B, 2, dtype=torch.long),
        "prompt_mask": torch.ones(B, 2, dtype=torch.long),
        "completion_ids": torch.ones(B, T, dtype=torch.long),
        "completion_mask": mask,
        "advantages": inputs["advantages"],
        "num_items_in_batch": torch.tensor(num_items),
    }
    if inputs["old_per_token_logps"] is not None:
        batch["old_per_token_logps"] = inputs["old_per_token_logps"]
    if args.beta != 0.0:
        batch["ref_per_token_logps"] = inputs["ref_per_token_logps"]

    def fake_forward(model, input_ids, attention_mask, logits_to_keep, **kw):
        assert logits_to_keep == T and kw["compute_entropy"]
        return logps, inputs["entropies"], None

    trainer._get_per_token_logps_and_entropies = fake_forward
    loss = trainer._compute_loss(trainer.model, batch)
    loss.backward()
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return {
        "name": name,
        "config": {
            "loss_type": trainer.loss_type,
            "epsilon_low": trainer.epsilon_low,
            "epsilon_high": trainer.epsilon_high,
            "delta": args.delta,
            "beta": trainer.beta,
            "use_bias_correction_kl": args.use_bias_correction_kl,
            "importance_sampling_level": trainer.importance_sampling_level,
            "sapo_temperature_pos": args.sapo_temperature_pos,
            "sapo_temperature_neg": args.sapo_temperature_neg,
            "vespo_k_pos": args.vespo_k_pos,
            "vespo_lambda_pos": args.vespo_lambda_pos,
            "vespo_k_neg": args.vespo_k_neg,
            "vespo_lambda_neg": args.vespo_lambda_neg,
            "max_completion_length": trainer.max_completion_length,
            "top_entropy_quantile": trainer.top_entropy_quantile,
            "entropy_coef": trainer.entropy_coef,
        },
        "normalizer": {
            "current_gradient_accumulation_steps": ga,
            "steps_per_generation": args.steps_per_generation,
            "num_items_in_batch": num_items,
        },
        "inputs": inputs_name,
        "loss": float(loss.detach()),
        "grad_per_token_logps": floats(logps.grad),
        "metrics": metrics,
    }


def config_grpo(**kwargs):
    from trl import GRPOConfig

    base = dict(per_device_train_batch_size=2, num_generations=2)
    return config(GRPOConfig, **(base | kwargs))


def grpo_loss_cases():
    on = loss_inputs("on_policy", 1, off_policy=False, with_ref=True)
    off = loss_inputs("off_policy", 2, off_policy=True, with_ref=True)
    wide = loss_inputs("off_policy_wide", 3, off_policy=True, with_ref=True, log_ratio_std=1.0)
    cases = []
    for lt in ALL_LOSS_TYPES:
        level = "sequence" if lt == "luspo" else "token"
        cases.append(run_grpo_loss(f"{lt}_on_policy", on, loss_type=lt, importance_sampling_level=level))
        cases.append(run_grpo_loss(f"{lt}_off_policy", off, loss_type=lt, importance_sampling_level=level))
        other = "token" if level == "sequence" else "sequence"
        cases.append(run_grpo_loss(f"{lt}_off_policy_{other}", off, loss_type=lt, importance_sampling_level=other))
    for lt in ["grpo", "dapo", "luspo", "vespo"]:
        cases.append(run_grpo_loss(f"{lt}_beta0.04", off, loss_type=lt, beta=0.04))
        cases.append(
            run_grpo_loss(f"{lt}_beta0.04_no_bias_correction", off, loss_type=lt, beta=0.04,
                          use_bias_correction_kl=False)
        )
    cases += [
        run_grpo_loss("dapo_beta0.04_on_policy", on, loss_type="dapo", beta=0.04),
        run_grpo_loss("grpo_beta0.04_sequence", off, loss_type="grpo", beta=0.04, importance_sampling_level="sequence"),
        run_grpo_loss("grpo_delta1.5_eps_high0.28", wide, loss_type="grpo", delta=1.5, epsilon_high=0.28),
        run_grpo_loss("dapo_delta1.5_sequence", wide, loss_type="dapo", delta=1.5, importance_sampling_level="sequence"),
        run_grpo_loss("dapo_eps_high0.28", wide, loss_type="dapo", epsilon_high=0.28),
        run_grpo_loss("cispo_eps_high1.5", wide, loss_type="cispo", epsilon_high=1.5),
        run_grpo_loss("sapo_temps", wide, loss_type="sapo", sapo_temperature_pos=0.5, sapo_temperature_neg=2.0),
        run_grpo_loss("vespo_wide", wide, loss_type="vespo", vespo_k_pos=1.5, vespo_lambda_neg=1.0),
        run_grpo_loss("dr_grpo_max_len8", off, loss_type="dr_grpo", max_completion_length=8),
        run_grpo_loss("dapo_ga1_spg1", off, ga=1, steps_per_generation=1, loss_type="dapo"),
        run_grpo_loss("grpo_ga1", off, ga=1, steps_per_generation=1, loss_type="grpo"),
        run_grpo_loss("dapo_top_entropy0.5", off, loss_type="dapo", top_entropy_quantile=0.5),
        run_grpo_loss("grpo_top_entropy0.2", off, loss_type="grpo", top_entropy_quantile=0.2),
        run_grpo_loss("bnpo_top_entropy0.0", off, loss_type="bnpo", top_entropy_quantile=0.0),
        run_grpo_loss("dapo_entropy_coef0.01", off, loss_type="dapo", entropy_coef=0.01),
        run_grpo_loss("grpo_entropy_coef0.05_beta", off, loss_type="grpo", entropy_coef=0.05, beta=0.04),
        run_grpo_loss(
            "dapo_entropy_coef0.01_top_entropy0.5", off, loss_type="dapo", entropy_coef=0.01, top_entropy_quantile=0.5
        ),
        run_grpo_loss("dapo_top_entropy0.5_beta", off, loss_type="dapo", top_entropy_quantile=0.5, beta=0.04),
    ]
    return cases


# ------------------------------------------------------------------------------------
# RLOO loss
# ------------------------------------------------------------------------------------


def rloo_trainer(args, ga: int):
    from trl import RLOOTrainer

    trainer = RLOOTrainer.__new__(RLOOTrainer)
    trainer.args = args
    trainer.epsilon_low = args.epsilon
    trainer.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
    trainer.beta = args.beta
    trainer.num_generations = args.num_generations
    trainer.num_iterations = args.num_iterations
    trainer.normalize_advantages = args.normalize_advantages
    trainer.reward_clip_range = args.reward_clip_range
    trainer.mask_truncated_completions = args.mask_truncated_completions
    trainer.aux_loss_enabled = False
    trainer.current_gradient_accumulation_steps = ga
    trainer.accelerator = Accelerator()
    trainer.model = SimpleNamespace(training=True, is_gradient_checkpointing=False)
    trainer.state = SimpleNamespace(global_step=0)
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    return trainer


def config_rloo(**kwargs):
    from trl import RLOOConfig

    base = dict(per_device_train_batch_size=2, num_generations=2)
    return config(RLOOConfig, **(base | kwargs))


def run_rloo_loss(name, named_inputs, on_policy: bool, ga=1, **kwargs):
    inputs_name, inputs = named_inputs
    args = config_rloo(**kwargs)
    trainer = rloo_trainer(args, ga)
    logps = inputs["per_token_logps"].clone().requires_grad_(True)
    mask = inputs["completion_mask"]
    old_token = inputs["per_token_logps"] if on_policy else inputs["old_per_token_logps"]
    # As _generate_and_score_completions forms it.
    old_logps = (old_token * mask).sum(1)
    batch = {
        "prompt_ids": torch.ones(B, 2, dtype=torch.long),
        "prompt_mask": torch.ones(B, 2, dtype=torch.long),
        "completion_ids": torch.ones(B, T, dtype=torch.long),
        "completion_mask": mask,
        "old_logps": old_logps,
        "advantages": inputs["advantages"],
    }

    def fake_forward(model, input_ids, attention_mask, logits_to_keep, **kw):
        return logps, inputs["entropies"], None

    trainer._get_per_token_logps_and_entropies = fake_forward
    loss = trainer._compute_loss(trainer.model, batch)
    loss.backward()
    return {
        "name": name,
        "config": {"epsilon_low": trainer.epsilon_low, "epsilon_high": trainer.epsilon_high},
        "current_gradient_accumulation_steps": ga,
        "inputs": inputs_name,
        "old_logps": floats(old_logps),
        "loss": float(loss.detach()),
        "grad_per_token_logps": floats(logps.grad),
        "metrics": {k: v[-1] for k, v in trainer._metrics["train"].items()},
    }


def rloo_loss_cases():
    on = loss_inputs("rloo_on_policy", 4, off_policy=False, with_ref=False)
    off = loss_inputs("rloo_off_policy", 5, off_policy=True, with_ref=False, log_ratio_std=0.15)
    return [
        run_rloo_loss("rloo_on_policy", on, True),
        run_rloo_loss("rloo_off_policy", off, False),
        run_rloo_loss("rloo_off_policy_eps_high0.28_ga2", off, False, ga=2, epsilon_high=0.28),
        run_rloo_loss("rloo_off_policy_eps0.1", off, False, epsilon=0.1),
    ]


# ------------------------------------------------------------------------------------
# advantages
# ------------------------------------------------------------------------------------


def fake_generation(trainer, num_rows, lengths, width):
    """_generate returns fixed ids: prompt [1, 2]; completion i has lengths[i] tokens (last one EOS)."""
    prompts = [f"p{i}" for i in range(num_rows)]
    completion_ids = [[5] * (n - 1) + [7] for n in lengths]

    def fake_generate(prompts_in):
        assert prompts_in == prompts
        return [[1, 2]] * num_rows, completion_ids, [f"c{i}" for i in range(num_rows)]

    return prompts, fake_generate


def advantage_trainer_common(trainer, args, reward_names):
    import trl

    trainer.accelerator = Accelerator()
    trainer.model = SimpleNamespace(training=True, is_gradient_checkpointing=False)
    trainer.state = SimpleNamespace(global_step=0)
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer._logs = {
        "prompt": [], "completion": [], "rewards": defaultdict(list), "advantages": [], "extra": defaultdict(list),
        "images": [],
    }
    trainer._pending_extra_logs = {}
    trainer._pending_metrics = {}
    trainer.log_multimodal = False
    trainer._tokenizer = SimpleNamespace(pad_token_id=0)
    trainer.pad_to_multiple_of = None
    trainer.reward_func_names = reward_names
    trainer.reward_funcs = reward_names  # only its length is read
    trainer.reward_weights = (
        torch.tensor(args.reward_weights, dtype=torch.float32)
        if args.reward_weights is not None
        else torch.ones(len(reward_names), dtype=torch.float32)
    )
    trainer.num_generations = args.num_generations
    trainer.num_iterations = args.num_iterations
    trainer.mask_truncated_completions = args.mask_truncated_completions
    assert trl.__version__.startswith("1.16")


def run_grpo_advantages(name, rewards, weights=None, num_generations=4, **kwargs):
    from trl import GRPOTrainer

    num_rows = rewards.shape[0]
    args = config_grpo(
        num_generations=num_generations, per_device_train_batch_size=num_rows, reward_weights=weights, **kwargs
    )
    trainer = GRPOTrainer.__new__(GRPOTrainer)
    trainer.args = args
    names = [f"reward_{i}" for i in range(rewards.shape[1])]
    advantage_trainer_common(trainer, args, names)
    trainer.environment_factories = None
    trainer.tools = None
    trainer.environments = None
    trainer.use_vllm = False
    trainer.vllm_importance_sampling_correction = False
    trainer.beta = 0.0
    trainer.scale_rewards = args.scale_rewards
    trainer.multi_objective_aggregation = args.multi_objective_aggregation
    prompts, gen = fake_generation(trainer, num_rows, [2] * num_rows, 2)

    def fake_generate(prompts_in):
        prompt_ids, completion_ids, completions = gen(prompts_in)
        # (prompt_ids, completion_ids, tool_mask, completions, sampling_logps, extra_fields, images, tool_images)
        return prompt_ids, completion_ids, None, completions, None, {}, None, None

    trainer._generate = fake_generate
    trainer._calculate_rewards = lambda inputs, prompts_, completions, ids: rewards.clone()
    out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts])
    return {
        "name": name,
        "num_generations": num_generations,
        "scale_rewards": args.scale_rewards,
        "multi_objective_aggregation": args.multi_objective_aggregation,
        "reward_weights": floats(trainer.reward_weights),
        "rewards_per_func": floats(rewards),
        "advantages": floats(out["advantages"]),
        "metrics": {k: v[-1] for k, v in trainer._metrics["train"].items()},
    }


def reward_table(seed, rows, funcs, binary_first=False):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(rows, funcs, generator=g)
    if binary_first:
        r[:, 0] = (torch.rand(rows, generator=g) > 0.5).float()
    return r


def grpo_advantage_cases():
    nan = float("nan")
    r12 = reward_table(10, 12, 2, binary_first=True)
    # group 0 (rows 0-3) all scored 1.0 by func 0 and 0.5 by func 1: zero std
    r12[0:4, 0] = 1.0
    r12[0:4, 1] = 0.5
    with_nan = r12.clone()
    with_nan[5, 1] = nan  # one function did not score row 5
    with_nan[6, :] = nan  # row 6 unscorable
    with_nan[8:11, :] = nan  # group 2 has a single scorable row
    with_nan[11, 0] = nan
    single = reward_table(11, 8, 1)
    cases = []
    for scale in ["group", "batch", "none"]:
        cases.append(run_grpo_advantages(f"sum_{scale}", r12, scale_rewards=scale))
        cases.append(run_grpo_advantages(f"sum_{scale}_weights", r12, weights=[1.0, 0.5], scale_rewards=scale))
        cases.append(run_grpo_advantages(f"sum_{scale}_nan", with_nan, weights=[0.7, 1.3], scale_rewards=scale))
    for scale in ["group", "none"]:
        cases.append(
            run_grpo_advantages(f"normalize_then_sum_{scale}", r12, weights=[1.0, 0.5], scale_rewards=scale,
                                multi_objective_aggregation="normalize_then_sum")
        )
    cases.append(
        run_grpo_advantages("normalize_then_sum_nan", with_nan, weights=[2.0, 1.0],
                            multi_objective_aggregation="normalize_then_sum")
    )
    cases.append(run_grpo_advantages("single_func_g2", single, num_generations=2))
    cases.append(run_grpo_advantages("single_func_g8_batch", single, num_generations=8, scale_rewards="batch"))
    return cases


def run_rloo_advantages(name, rewards, lengths, weights=None, num_generations=4, seed=0, **kwargs):
    from trl import RLOOTrainer

    num_rows = rewards.shape[0]
    width = max(lengths)
    args = config_rloo(
        num_generations=num_generations, per_device_train_batch_size=num_rows, reward_weights=weights, **kwargs
    )
    trainer = RLOOTrainer.__new__(RLOOTrainer)
    trainer.args = args
    names = [f"reward_{i}" for i in range(rewards.shape[1])]
    advantage_trainer_common(trainer, args, names)
    trainer.beta = args.beta
    trainer.normalize_advantages = args.normalize_advantages
    trainer.reward_clip_range = args.reward_clip_range
    trainer.ref_model = object() if args.beta != 0.0 else None
    g = torch.Generator().manual_seed(seed)
    old = -(torch.rand(num_rows, width, generator=g) * 2.0 + 0.1)
    ref = old + torch.randn(num_rows, width, generator=g) * 0.3
    calls = []

    def fake_forward(model, input_ids, attention_mask, logits_to_keep, batch_size=None, **kw):
        assert logits_to_keep == width
        calls.append(model)
        return (old if len(calls) == 1 else ref), None, None

    trainer._get_per_token_logps_and_entropies = fake_forward
    prompts, gen = fake_generation(trainer, num_rows, lengths, width)
    trainer._generate = gen
    trainer._calculate_rewards = lambda inputs, prompts_, completions, ids: rewards.clone()
    out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts])
    assert torch.equal(out["completion_mask"], mask_from_lengths(lengths, width))
    return {
        "name": name,
        "num_generations": num_generations,
        "beta": args.beta,
        "reward_clip_range": list(args.reward_clip_range) if args.reward_clip_range else None,
        "normalize_advantages": args.normalize_advantages,
        "reward_weights": floats(trainer.reward_weights),
        "rewards_per_func": floats(rewards),
        "completion_mask": floats(out["completion_mask"].float()),
        "old_per_token_logps": floats(old),
        "ref_per_token_logps": floats(ref) if args.beta != 0.0 else None,
        "advantages": floats(out["advantages"]),
        "metrics": {k: v[-1] for k, v in trainer._metrics["train"].items()},
    }


def rloo_advantage_cases():
    nan = float("nan")
    r = reward_table(20, 12, 2, binary_first=True)
    r[0:4, :] = 1.0  # a zero-std group
    lengths = [3, 5, 1, 4, 2, 5, 5, 3, 1, 2, 4, 5]
    with_nan = r.clone()
    with_nan[5, 0] = nan
    with_nan[6, :] = nan
    with_nan[8:11, :] = nan
    return [
        run_rloo_advantages("rloo_beta0", r, lengths, beta=0.0),
        run_rloo_advantages("rloo_beta0.05_default", r, lengths),
        run_rloo_advantages("rloo_beta0.05_weights_clip", r, lengths, weights=[1.0, 0.5], reward_clip_range=(-0.5, 0.8)),
        run_rloo_advantages("rloo_normalize", r, lengths, normalize_advantages=True),
        run_rloo_advantages("rloo_nan_beta0.1_normalize", with_nan, lengths, beta=0.1, normalize_advantages=True),
        run_rloo_advantages("rloo_nan_beta0", with_nan, lengths, beta=0.0),
        run_rloo_advantages("rloo_g2", reward_table(21, 8, 1), [2, 3, 1, 4, 4, 4, 2, 1], num_generations=2),
    ]


# ------------------------------------------------------------------------------------


def main() -> None:
    setup_env()
    deterministic_torch()
    from trl import GRPOConfig, RLOOConfig

    grpo_defaults, rloo_defaults = config(GRPOConfig), config(RLOOConfig)
    fixture = {
        "generated_by": "reference/grpo_loss_reference.py",
        "versions": versions(with_datasets=False),
        "grpo_config_defaults": {k: getattr(grpo_defaults, k) for k in LOSS_KEYS},
        "rloo_config_defaults": {k: getattr(rloo_defaults, k) for k in RLOO_KEYS},
        "grpo_loss_cases": grpo_loss_cases(),
        "rloo_loss_cases": rloo_loss_cases(),
        "loss_inputs": INPUT_SETS,
        "grpo_advantage_cases": grpo_advantage_cases(),
        "rloo_advantage_cases": rloo_advantage_cases(),
    }
    OUT.write_text(dump(nan_to_none(fixture)), encoding="utf-8")
    counts = {k: len(v) for k, v in fixture.items() if k.endswith("_cases")}
    print(f"wrote {OUT.relative_to(ROOT)}: {counts}")


if __name__ == "__main__":
    main()
