#!/usr/bin/env python3
"""Reference numbers for trl-rs's DPO trainer, produced with TRL's own ``DPOTrainer``.

    /work/pyref/bin/python reference/dpo_reference.py                 # losses.json + all training cases
    /work/pyref/bin/python reference/dpo_reference.py --losses-only
    /work/pyref/bin/python reference/dpo_reference.py --case sigmoid --case ipo
    /work/pyref/bin/python reference/dpo_reference.py --no-losses --case hinge

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, trl 1.16.0 (see requirements.txt).
Semantics behind these numbers: ``docs/notes/trl-dpo-semantics.md``.

Conventions (same as ``reference/sft_reference.py``): one CPU thread, deterministic algorithms,
``seed=42``, fp32 (``bf16=False`` must be passed: TRL configs default it to True), eager attention,
``train_sampling_strategy="sequential"``, ``report_to="none"``, ``save_strategy="no"``,
``logging_steps=1``; wall-clock values in ``log_history`` are replaced by ``null``.  Two runs give
byte-identical files.

Internal values (per-sequence log-probs, per-element losses, ...) are read out of TRL's own
``DPOTrainer._compute_loss`` with a line tracer (``LocalsProbe``): the numbers are the ones TRL
computed, not a re-implementation.

1. ``fixtures/expected/dpo/losses.json`` -- every loss variant on one fixed synthetic batch
   -------------------------------------------------------------------------------------------
   A real ``DPOTrainer`` is built for each case (so TRL's config validation runs), then its
   ``_compute_loss`` is called with a *fake* policy and a *fake* reference model that return
   fixed per-token outputs of the fused LM head (log_probs, entropy, mean_logits, is_top1,
   log_sum_sq_probs), exactly as ``add_fused_lm_head`` would: shape ``[2B, T-1]``, zero where the
   shifted label is -100.  Batch: B = 4 pairs (rows 0..3 chosen, rows 4..7 rejected), T = 10.
   Pair 3 has an *empty prompt* (its first completion token is at position 0 and is never
   predicted), so ``completion_mask.sum()`` (used by ipo / sigmoid_norm) and
   ``completion_mask[:, 1:].sum()`` (used by sft / use_weighting / ld_alpha / metrics) differ
   for it.

   Schema:
     description, versions
     inputs:
       batch_pairs B, seq_len T, pad_token_id
       input_ids [2B][T], attention_mask [2B][T], completion_mask [2B][T]   (collator layout)
       shift_completion_mask [2B][T-1] = completion_mask[:, 1:]
       policy: {log_probs, entropy, mean_logits, is_top1, log_sum_sq_probs}  each [2B][T-1]
       reference: {log_probs} [2B][T-1]
       derived: (what TRL computes from the above with ld_alpha=None)
         chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps [B]
             = per-token log_probs summed over dim 1
         chosen_logratios, rejected_logratios [B]
         chosen_completion_tokens, rejected_completion_tokens [B]   completion_mask.sum(1)
         chosen_shift_completion_tokens, rejected_shift_completion_tokens [B]
     cases: [ {name, config (DPOConfig kwargs that differ from defaults), resolved (beta,
               loss_type, loss_weights, f_divergence_type, f_alpha_divergence_coef,
               label_smoothing, use_weighting, ld_alpha, discopop_tau),
               chosen_logps/rejected_logps/ref_chosen_logps/ref_rejected_logps [B] (as TRL used
               them: differ from inputs.derived only with ld_alpha),
               chosen_scores, rejected_scores [B] (after the f-divergence transform),
               per_loss: [ {loss_type, weight, per_sequence_loss_unweighted [B] (before WPO
                            weighting), per_sequence_loss [B] (after; what is averaged),
                            wpo_weights [2B] or null (exp of the length-normalised aligned log-prob of
                            every sequence, chosen rows then rejected rows; a pair is weighted by
                            w_chosen * w_rejected), mean} ],
               loss (scalar = sum_k weight_k * mean(per_sequence_loss_k)),
               grad_policy_log_probs [2B][T-1] (d loss / d policy per-token log_probs),
               metrics {name: value} (what one compute_loss call appends to the logged metrics;
                        num_tokens is cumulative and starts at 0 here) } ]

2. ``fixtures/expected/dpo/<case>.json`` -- 8 optimizer steps of ``DPOTrainer`` on tiny-qwen2
   -----------------------------------------------------------------------------------------
   Schema:
     case, description, dataset, versions
     dpo_config        kwargs given to DPOConfig (output_dir omitted)
     resolved_config   relevant DPOConfig values after __post_init__ (defaults included)
     trainer_info      pad/eos ids, ref model kind, loss types/weights, optimizer groups,
                       len_dataloader, num_update_steps_per_epoch, num_parameters(_exclude_embeddings)
     prepared_dataset  num_rows, columns, source_rows (index in the jsonl of each kept row),
                       prompt_lengths / chosen_lengths / rejected_lengths (all rows), and the
                       first 4 rows in full: prompt / chosen / rejected (text or messages, after
                       prompt extraction and EOS appending) and prompt_ids / chosen_ids /
                       rejected_ids (+ ref_chosen_logps / ref_rejected_logps for all rows when
                       precompute_ref_log_probs)
     first_batch       the first collated micro-batch as given to compute_loss (input_ids,
                       attention_mask, completion_mask [, ref_chosen_logps, ref_rejected_logps])
     first_batch_forward  per-token outputs of the first forward (before any update):
                       policy log_probs / entropy / mean_logits / is_top1, reference log_probs
                       (absent with precompute), each [2b][T-1]; plus chosen/rejected/ref sums
     micro_batches     per compute_loss call: global_step (0-based step being accumulated),
                       shape, completion_tokens, shift_completion_tokens, attention_tokens,
                       chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps [b],
                       per_loss [{loss_type, weight, per_sequence_loss}], loss (as returned by
                       compute_loss, i.e. before the Trainer divides by gradient_accumulation_steps),
                       metrics (values appended to the logged metrics by this call)
     log_history       trainer.state.log_history (wall-clock values null)
     trainer_state     global_step, max_steps, epoch, num_train_epochs, logging_steps,
                       train_batch_size, total_flos
     param_update_norms {param: L2 norm of (final - initial)} of the policy
     train_output      {global_step, training_loss}
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
from pathlib import Path

import common
from common import FIRST_ROWS, MODEL_DIR, jsonable, to_list

OUT_DIR = common.EXPECTED_DIR / "dpo"

# Arguments shared by every training case (TRL / TrainingArguments names).
BASE_ARGS = common.base_args(per_device_train_batch_size=2)

CASES = {
    # --- requested cases ---------------------------------------------------------------
    "sigmoid": dict(
        description="loss_type sigmoid (standard DPO), explicit prompt, standard format",
        dataset="datasets/preference.jsonl",
        args={},
    ),
    "ipo": dict(
        description="loss_type ipo (length-normalised squared loss), explicit prompt, standard format",
        dataset="datasets/preference.jsonl",
        args={"loss_type": ["ipo"]},
    ),
    "hinge": dict(
        description="loss_type hinge, explicit prompt, standard format",
        dataset="datasets/preference.jsonl",
        args={"loss_type": ["hinge"]},
    ),
    "sigmoid_conversational": dict(
        description="sigmoid on conversational data (chat template); max_length=64 drops the 32 rows whose "
        "prompt alone has >= 64 tokens and truncates the completions of the others",
        dataset="datasets/preference_conversational.jsonl",
        args={},
    ),
    "sigmoid_implicit": dict(
        description="sigmoid on implicit-prompt data (prompt = longest common character prefix of chosen and "
        "rejected, minus a trailing space)",
        dataset="datasets/preference_implicit.jsonl",
        args={},
    ),
    # --- extra cases ---------------------------------------------------------------------
    "sigmoid_conversational_len128": dict(
        description="as sigmoid_conversational with max_length=128 (no row dropped; few truncated)",
        dataset="datasets/preference_conversational.jsonl",
        args={"max_length": 128},
    ),
    "sigmoid_ga2": dict(
        description="sigmoid with gradient_accumulation_steps=2 (loss divided by GA; metrics averaged over micro-batches)",
        dataset="datasets/preference.jsonl",
        args={"gradient_accumulation_steps": 2},
    ),
    "sigmoid_precompute_ref": dict(
        description="sigmoid with precompute_ref_log_probs=True (no reference model kept; same numbers as 'sigmoid')",
        dataset="datasets/preference.jsonl",
        args={"precompute_ref_log_probs": True},
    ),
    "sigmoid_sft_weighted": dict(
        description="multi-loss ['sigmoid', 'sft'] with loss_weights [1.0, 0.5]",
        dataset="datasets/preference.jsonl",
        args={"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]},
    ),
    "sigmoid_ld_alpha": dict(
        description="sigmoid with ld_alpha=0.5 (LD-DPO: tokens beyond the shorter completion count half)",
        dataset="datasets/preference.jsonl",
        args={"ld_alpha": 0.5},
    ),
    "sigmoid_sync_ref": dict(
        description="sigmoid with sync_ref_model=True, ref_model_sync_steps=2, ref_model_mixup_alpha=0.6 (TR-DPO)",
        dataset="datasets/preference.jsonl",
        args={"sync_ref_model": True, "ref_model_sync_steps": 2, "ref_model_mixup_alpha": 0.6},
    ),
    # --- step accounting (issue 14): ceil(micro_batches / GA) optimizer steps per epoch, the last
    # one with the remaining micro-batches; `dataset_rows` takes the first N rows of the file.
    "sigmoid_ga_remainder": dict(
        description="14 pairs, batch 2 -> 7 micro-batches, gradient_accumulation_steps=2, one epoch: 4 optimizer "
        "steps, the last with a single micro-batch",
        dataset="datasets/preference.jsonl",
        dataset_rows=14,
        args={"gradient_accumulation_steps": 2, "max_steps": -1, "num_train_epochs": 1},
    ),
    "sigmoid_partial_batch": dict(
        description="13 pairs, batch 3 -> 5 micro-batches, the last with one pair; one epoch, no accumulation",
        dataset="datasets/preference.jsonl",
        dataset_rows=13,
        args={"per_device_train_batch_size": 3, "max_steps": -1, "num_train_epochs": 1},
    ),
    "sigmoid_epochs_remainder": dict(
        description="11 pairs, batch 2 -> 6 micro-batches (last with one pair), gradient_accumulation_steps=4: "
        "2 steps per epoch (4 + 2 micro-batches), num_train_epochs=2",
        dataset="datasets/preference.jsonl",
        dataset_rows=11,
        args={"gradient_accumulation_steps": 4, "max_steps": -1, "num_train_epochs": 2},
    ),
    "sigmoid_max_steps_across_epochs": dict(
        description="10 pairs, batch 2 -> 5 micro-batches, gradient_accumulation_steps=2 (3 steps per epoch, the "
        "last with one micro-batch), max_steps=5: the run crosses into a second epoch and stops inside it",
        dataset="datasets/preference.jsonl",
        dataset_rows=10,
        args={"gradient_accumulation_steps": 2, "max_steps": 5},
    ),
    # --- other options checked end to end against TRL
    "sigmoid_random_order": dict(
        description="train_sampling_strategy='random' (the Trainer's default: torch.randperm seeded with "
        "seed + epoch), 8 pairs, batch 2, num_train_epochs=2",
        dataset="datasets/preference.jsonl",
        dataset_rows=8,
        args={"train_sampling_strategy": "random", "max_steps": -1, "num_train_epochs": 2},
    ),
    "sigmoid_keep_end": dict(
        description="truncation_mode='keep_end', max_length=20: long pairs lose the start of the prompt",
        dataset="datasets/preference.jsonl",
        args={"truncation_mode": "keep_end", "max_length": 20},
    ),
}

RESOLVED_KEYS = [
    "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2",
    "adam_epsilon", "max_grad_norm", "optim", "seed", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "logging_steps", "train_sampling_strategy", "dataloader_drop_last", "bf16",
    "fp16", "gradient_checkpointing", "remove_unused_columns", "max_length", "truncation_mode", "padding_free",
    "pad_to_multiple_of", "precompute_ref_log_probs", "precompute_ref_batch_size", "loss_type", "loss_weights",
    "ld_alpha", "f_divergence_type", "f_alpha_divergence_coef", "label_smoothing", "beta", "use_weighting",
    "discopop_tau", "sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps", "disable_dropout",
    "router_aux_loss_coef", "average_tokens_across_devices",
]


# ------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------


class LocalsProbe:
    """Calls ``callbacks[key](frame_locals)`` right before a given source line of ``func`` runs, and
    ``on_return(frame_locals, value)`` when it returns.  ``key`` is the stripped text of the line; when
    the text occurs several times, ``occurrence`` picks which (``-1`` = last)."""

    def __init__(self, func, callbacks, on_return=None, occurrence=None):
        self.code = func.__code__
        src, start = inspect.getsourcelines(func)
        occurrence = occurrence or {}
        self.lines = {}
        for key, cb in callbacks.items():
            hits = [start + i for i, line in enumerate(src) if line.strip() == key]
            if not hits:
                raise RuntimeError(f"line {key!r} not found in {func.__qualname__}")
            if len(hits) > 1 and key not in occurrence:
                raise RuntimeError(f"line {key!r} occurs {len(hits)} times in {func.__qualname__}")
            self.lines[hits[occurrence.get(key, 0)]] = cb
        self.on_return = on_return

    def _global(self, frame, event, arg):
        if event == "call" and frame.f_code is self.code:
            return self._local
        return None

    def _local(self, frame, event, arg):
        if event == "line" and frame.f_lineno in self.lines:
            self.lines[frame.f_lineno](frame.f_locals)
        elif event == "return" and self.on_return is not None:
            self.on_return(frame.f_locals, arg)
        return self._local

    def __enter__(self):
        self._prev = sys.gettrace()
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc):
        sys.settrace(self._prev)
        return False


def _loss_probe(record):
    """Probe on DPOTrainer._compute_loss that fills ``record`` with TRL's intermediate values."""
    import torch
    from trl.trainer.dpo_trainer import DPOTrainer

    def cl(t):
        return t.detach().clone() if isinstance(t, torch.Tensor) else t

    def at_logratios(loc):  # right before `chosen_logratios = chosen_logps - ref_chosen_logps`
        record["per_token_logps"] = cl(loc["per_token_logps"])
        record["ref_per_token_logps"] = cl(loc.get("ref_per_token_logps"))
        out = loc["outputs"]
        record["entropy"] = cl(out.entropy)
        record["mean_logits"] = cl(out.mean_logits)
        record["is_top1"] = cl(out.is_top1)
        for k in ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps"):
            record[k] = cl(loc[k])

    def at_loss_init(loc):  # right before `loss = 0.0`
        record["chosen_scores"] = cl(loc["chosen_scores"])
        record["rejected_scores"] = cl(loc["rejected_scores"])
        record["per_loss"] = []

    def at_weighting(loc):  # right before `if self.use_weighting:` (inside the loss loop)
        record["per_loss"].append(
            {"loss_type": loc["loss_type"], "weight": loc["loss_weight"],
             "per_sequence_loss_unweighted": cl(loc["per_sequence_loss"])}
        )

    def at_accumulate(loc):  # right before `loss += per_sequence_loss.mean() * loss_weight`
        entry = record["per_loss"][-1]
        entry["per_sequence_loss"] = cl(loc["per_sequence_loss"])
        entry["wpo_weights"] = cl(loc["weights"]) if loc["self"].use_weighting else None
        entry["mean"] = cl(loc["per_sequence_loss"].mean())

    def on_return(loc, value):
        if isinstance(value, torch.Tensor):
            record["loss"] = cl(value)

    return LocalsProbe(
        DPOTrainer._compute_loss,
        {
            "chosen_logratios = chosen_logps - ref_chosen_logps": at_logratios,
            "loss = 0.0": at_loss_init,
            "if self.use_weighting:": at_weighting,
            "loss += per_sequence_loss.mean() * loss_weight": at_accumulate,
        },
        on_return=on_return,
    )


# ------------------------------------------------------------------------------------
# Part 1: losses.json
# ------------------------------------------------------------------------------------

LOSS_CASES = [
    # every loss type at defaults (beta=0.1); exo_pair requires label_smoothing > 0
    ("sigmoid", {}),
    ("hinge", {"loss_type": ["hinge"]}),
    ("ipo", {"loss_type": ["ipo"]}),
    ("exo_pair", {"loss_type": ["exo_pair"], "label_smoothing": 1e-3}),
    ("nca_pair", {"loss_type": ["nca_pair"]}),
    ("robust", {"loss_type": ["robust"]}),
    ("bco_pair", {"loss_type": ["bco_pair"]}),
    ("sppo_hard", {"loss_type": ["sppo_hard"]}),
    ("aot", {"loss_type": ["aot"]}),
    ("aot_unpaired", {"loss_type": ["aot_unpaired"]}),
    ("apo_zero", {"loss_type": ["apo_zero"]}),
    ("apo_down", {"loss_type": ["apo_down"]}),
    ("discopop", {"loss_type": ["discopop"]}),
    ("sft", {"loss_type": ["sft"]}),
    ("sigmoid_norm", {"loss_type": ["sigmoid_norm"]}),
    # larger beta (non-linear regime, hinge partly inactive)
    ("sigmoid_beta1", {"beta": 1.0}),
    ("hinge_beta1", {"loss_type": ["hinge"], "beta": 1.0}),
    ("ipo_beta1", {"loss_type": ["ipo"], "beta": 1.0}),
    ("discopop_beta1_tau0.5", {"loss_type": ["discopop"], "beta": 1.0, "discopop_tau": 0.5}),
    ("sigmoid_norm_beta1", {"loss_type": ["sigmoid_norm"], "beta": 1.0}),
    # f-divergences
    ("sigmoid_forward_kl", {"f_divergence_type": "forward_kl"}),
    ("sigmoid_js_divergence", {"f_divergence_type": "js_divergence"}),
    ("sigmoid_alpha_divergence_0.5", {"f_divergence_type": "alpha_divergence"}),
    ("sigmoid_alpha_divergence_0.3_beta1",
     {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.3, "beta": 1.0}),
    ("sigmoid_alpha_divergence_1.0", {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 1.0}),
    ("hinge_forward_kl_beta1", {"loss_type": ["hinge"], "f_divergence_type": "forward_kl", "beta": 1.0}),
    ("ipo_js_divergence", {"loss_type": ["ipo"], "f_divergence_type": "js_divergence"}),
    ("sigmoid_norm_forward_kl", {"loss_type": ["sigmoid_norm"], "f_divergence_type": "forward_kl"}),
    # label smoothing (sigmoid ignores it in TRL 1.16; robust / exo_pair / aot use it)
    ("sigmoid_label_smoothing_0.1", {"label_smoothing": 0.1}),
    ("robust_label_smoothing_0.1", {"loss_type": ["robust"], "label_smoothing": 0.1}),
    ("robust_label_smoothing_0.1_beta1", {"loss_type": ["robust"], "label_smoothing": 0.1, "beta": 1.0}),
    ("exo_pair_label_smoothing_0.1_beta1", {"loss_type": ["exo_pair"], "label_smoothing": 0.1, "beta": 1.0}),
    ("aot_label_smoothing_0.1", {"loss_type": ["aot"], "label_smoothing": 0.1}),
    ("aot_unpaired_label_smoothing_0.1", {"loss_type": ["aot_unpaired"], "label_smoothing": 0.1}),
    # WPO weighting, LD-DPO
    ("sigmoid_use_weighting", {"use_weighting": True}),
    ("ipo_use_weighting", {"loss_type": ["ipo"], "use_weighting": True}),
    ("sigmoid_ld_alpha_0.5", {"ld_alpha": 0.5}),
    ("sigmoid_ld_alpha_0.0_beta1", {"ld_alpha": 0.0, "beta": 1.0}),
    # multi-loss
    ("sigmoid+sft", {"loss_type": ["sigmoid", "sft"]}),
    ("sigmoid+sft_weights_1_0.5", {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}),
    ("mpo_sigmoid+bco_pair+sft", {"loss_type": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]}),
    ("ipo+sigmoid_norm_use_weighting_ld_alpha",
     {"loss_type": ["ipo", "sigmoid_norm"], "loss_weights": [1.0, 0.1], "use_weighting": True, "ld_alpha": 0.5}),
    ("sigmoid+sft_ld_alpha_0.5", {"loss_type": ["sigmoid", "sft"], "ld_alpha": 0.5}),
]


def _synthetic_inputs():
    """Fixed synthetic batch (fp32).  Values come from a seeded generator and are stored exactly."""
    import torch

    B, T = 4, 10
    pad_id = 381
    prompt_lens = [2, 3, 4, 0]  # pair 3: empty prompt
    chosen_lens = [5, 4, 6, 4]
    rejected_lens = [3, 6, 2, 8]
    g = torch.Generator().manual_seed(1234)
    rows_p = prompt_lens + prompt_lens
    rows_c = chosen_lens + rejected_lens
    input_ids = torch.full((2 * B, T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((2 * B, T), dtype=torch.long)
    completion_mask = torch.zeros((2 * B, T), dtype=torch.long)
    for i in range(2 * B):
        n = rows_p[i] + rows_c[i]
        assert n <= T
        input_ids[i, :n] = torch.randint(10, 370, (n,), generator=g)
        attention_mask[i, :n] = 1
        completion_mask[i, rows_p[i]:n] = 1
    shift = completion_mask[:, 1:].bool()

    def field(lo, hi):
        x = lo + (hi - lo) * torch.rand((2 * B, T - 1), generator=g)
        return torch.where(shift, x, torch.zeros_like(x))

    policy_lp = -field(0.05, 2.5)
    ref_lp = -field(0.05, 2.5)
    # make pair 1 clearly prefer the rejected answer under the policy (reward accuracy < 1)
    policy_lp[1] = policy_lp[1] * 1.6
    policy_lp[B + 1] = policy_lp[B + 1] * 0.5
    policy_lp = torch.where(shift, policy_lp, torch.zeros_like(policy_lp))
    entropy = field(0.5, 5.5)
    mean_logits = torch.where(shift, torch.randn((2 * B, T - 1), generator=g), torch.zeros(2 * B, T - 1))
    is_top1 = (torch.rand((2 * B, T - 1), generator=g) < 0.4) & shift
    # log(sum_v p_v^2) lies in [log p_max^2, 0]; any value <= 0 is fine for the formula
    log_sum_sq_probs = -field(0.2, 2.0)
    return dict(
        B=B, T=T, pad_id=pad_id, input_ids=input_ids, attention_mask=attention_mask,
        completion_mask=completion_mask, policy_lp=policy_lp.float(), ref_lp=ref_lp.float(),
        entropy=entropy.float(), mean_logits=mean_logits.float(), is_top1=is_top1,
        log_sum_sq_probs=log_sum_sq_probs.float(),
    )


def _fake_fused_model(log_probs, entropy=None, mean_logits=None, is_top1=None, log_sum_sq_probs=None):
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    class FakeFusedLM(torch.nn.Module):
        """Stands in for a model patched by ``add_fused_lm_head`` and called with ``fused_lm_head=True``."""

        def __init__(self):
            super().__init__()
            self.lp = torch.nn.Parameter(log_probs.clone())

        def forward(self, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, **kwargs):
            assert fused_lm_head and labels is not None
            mask = labels[:, 1:] != -100
            assert torch.equal(mask, log_probs.ne(0) | mask), "label mask must cover the crafted log-probs"

            def z(x):
                if x is None:
                    return None
                return torch.where(mask, x, torch.zeros_like(x))

            lp = torch.where(mask, self.lp, torch.zeros_like(self.lp))  # zero (and zero grad) where masked
            return FusedCausalLMOutput(
                loss=-lp.sum() / mask.sum().clamp(min=1),
                log_probs=lp,
                entropy=z(entropy),
                log_sum_sq_probs=z(log_sum_sq_probs),
                mean_logits=z(mean_logits),
                is_top1=None if is_top1 is None else is_top1 & mask,
                label_mask=mask,
            )

    return FakeFusedLM()


def run_losses() -> dict:
    import datasets
    from trl import DPOConfig, DPOTrainer
    from transformers import AutoTokenizer

    common.deterministic_torch()

    x = _synthetic_inputs()
    B = x["B"]
    dataset = datasets.Dataset.from_list(common.load_rows("datasets/preference.jsonl")[:4])
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))

    inputs = {
        "input_ids": x["input_ids"],
        "attention_mask": x["attention_mask"],
        "completion_mask": x["completion_mask"],
    }
    cm = x["completion_mask"]
    scm = cm[:, 1:]
    p_sum = x["policy_lp"].sum(1)
    r_sum = x["ref_lp"].sum(1)
    derived = {
        "chosen_logps": p_sum[:B], "rejected_logps": p_sum[B:],
        "ref_chosen_logps": r_sum[:B], "ref_rejected_logps": r_sum[B:],
        "chosen_logratios": p_sum[:B] - r_sum[:B], "rejected_logratios": p_sum[B:] - r_sum[B:],
        "chosen_completion_tokens": cm.sum(1)[:B], "rejected_completion_tokens": cm.sum(1)[B:],
        "chosen_shift_completion_tokens": scm.sum(1)[:B], "rejected_shift_completion_tokens": scm.sum(1)[B:],
    }

    result = {
        "description": "TRL 1.16 DPOTrainer._compute_loss on one fixed synthetic batch (B=4 pairs, T=10) with fake "
        "fused-LM-head outputs; see the docstring of reference/dpo_reference.py for the schema",
        "versions": common.versions(),
        "inputs": {
            "batch_pairs": B,
            "seq_len": x["T"],
            "pad_token_id": x["pad_id"],
            "layout": "rows 0..B-1 are the chosen sequences of pairs 0..B-1, rows B..2B-1 the rejected ones",
            "input_ids": to_list(x["input_ids"]),
            "attention_mask": to_list(x["attention_mask"]),
            "completion_mask": to_list(cm),
            "shift_completion_mask": to_list(scm),
            "policy": {
                "log_probs": to_list(x["policy_lp"]),
                "entropy": to_list(x["entropy"]),
                "mean_logits": to_list(x["mean_logits"]),
                "is_top1": to_list(x["is_top1"]),
                "log_sum_sq_probs": to_list(x["log_sum_sq_probs"]),
            },
            "reference": {"log_probs": to_list(x["ref_lp"])},
            "derived": {k: to_list(v) for k, v in derived.items()},
        },
        "cases": [],
    }

    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in LOSS_CASES:
            config = DPOConfig(
                output_dir=tmp, use_cpu=True, bf16=False, report_to="none", save_strategy="no", disable_tqdm=True,
                model_init_kwargs={"dtype": "float32", "attn_implementation": "eager"}, **cfg,
            )
            trainer = DPOTrainer(model=str(MODEL_DIR), args=config, train_dataset=dataset, processing_class=tokenizer)
            trainer.model.train()  # `mode` in _compute_loss is read from self.model.training
            policy = _fake_fused_model(
                x["policy_lp"], entropy=x["entropy"], mean_logits=x["mean_logits"], is_top1=x["is_top1"],
                log_sum_sq_probs=x["log_sum_sq_probs"],
            )
            trainer.ref_model = _fake_fused_model(x["ref_lp"])
            record: dict = {}
            before = common.metric_lengths(trainer)
            with _loss_probe(record):
                loss = trainer._compute_loss(policy, dict(inputs), return_outputs=False)
            loss.backward()
            metrics = common.appended_metrics(trainer, before, all_new=True)
            case = {
                "name": name,
                "config": jsonable(cfg),
                "resolved": {
                    "beta": trainer.beta,
                    "loss_type": list(trainer.loss_types),
                    "loss_weights": list(trainer.loss_weights),
                    "f_divergence_type": trainer.f_divergence_type,
                    "f_alpha_divergence_coef": trainer.f_alpha_divergence_coef,
                    "label_smoothing": trainer.label_smoothing,
                    "use_weighting": trainer.use_weighting,
                    "ld_alpha": trainer.ld_alpha,
                    "discopop_tau": trainer.args.discopop_tau,
                },
            }
            for k in ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
                      "chosen_scores", "rejected_scores"):
                case[k] = to_list(record[k])
            case["per_loss"] = [
                {
                    "loss_type": e["loss_type"],
                    "weight": e["weight"],
                    "per_sequence_loss_unweighted": to_list(e["per_sequence_loss_unweighted"]),
                    "per_sequence_loss": to_list(e["per_sequence_loss"]),
                    "wpo_weights": to_list(e["wpo_weights"]),
                    "mean": to_list(e["mean"]),
                }
                for e in record["per_loss"]
            ]
            case["loss"] = float(loss.detach())
            case["grad_policy_log_probs"] = to_list(policy.lp.grad)
            case["metrics"] = metrics
            result["cases"].append(case)
            print(f"losses: {name}: loss={case['loss']:.6f}")
    return result


# Configurations that TRL rejects at init, or that crash in _compute_loss (documented in the notes). (documented in the notes; checked here so the claim stays true).
def check_rejections() -> list:
    import datasets
    from trl import DPOConfig, DPOTrainer
    from transformers import AutoTokenizer

    dataset = datasets.Dataset.from_list(common.load_rows("datasets/preference.jsonl")[:2])
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
    out = []
    bad = [
        {"loss_type": ["exo_pair"]},
        {"loss_type": ["bco_pair"], "f_divergence_type": "forward_kl"},
        {"loss_type": ["aot"], "use_weighting": True},
        {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0]},
    ]
    crash = [
        {"loss_type": ["sft"], "use_weighting": True},
        {"loss_type": ["sigmoid", "sft"], "use_weighting": True},
    ]
    x = _synthetic_inputs()
    inputs = {k: x[k] for k in ("input_ids", "attention_mask", "completion_mask")}
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in bad + crash:
            stage = "init"
            try:
                config = DPOConfig(output_dir=tmp, use_cpu=True, bf16=False, report_to="none", **cfg)
                trainer = DPOTrainer(
                    model=str(MODEL_DIR), args=config, train_dataset=dataset, processing_class=tokenizer
                )
                stage = "compute_loss"
                trainer.model.train()
                trainer.ref_model = _fake_fused_model(x["ref_lp"])
                policy = _fake_fused_model(
                    x["policy_lp"], entropy=x["entropy"], mean_logits=x["mean_logits"], is_top1=x["is_top1"],
                    log_sum_sq_probs=x["log_sum_sq_probs"],
                )
                trainer._compute_loss(policy, dict(inputs), return_outputs=False)
                out.append({"config": cfg, "stage": None, "error": None})
            except Exception as e:  # noqa: BLE001
                out.append({"config": cfg, "stage": stage, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"})
    return out


# ------------------------------------------------------------------------------------
# Part 2: training runs
# ------------------------------------------------------------------------------------


def _source_rows(original, prepared, eos):
    """Index in the jsonl of every row of the prepared dataset (prepared rows keep their order)."""

    def key_of(prompt, chosen):
        if isinstance(chosen, str):
            full = prompt + chosen
            return full[: -len(eos)] if full.endswith(eos) else full
        return json.dumps(prompt + chosen, sort_keys=True)

    orig_keys = []
    for r in original:
        if "prompt" in r:
            orig_keys.append(key_of(r["prompt"], r["chosen"]))
        else:
            orig_keys.append(key_of("" if isinstance(r["chosen"], str) else [], r["chosen"]))
    out, j = [], 0
    for p, c in zip(prepared["prompt"], prepared["chosen"]):
        k = key_of(p, c)
        while orig_keys[j] != k:
            j += 1
        out.append(j)
        j += 1
    return out


def run_case(name: str, spec: dict) -> dict:
    import datasets
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    common.deterministic_torch()
    rows = common.load_rows(spec["dataset"], spec.get("dataset_rows"))
    train_dataset = datasets.Dataset.from_list(rows)
    kwargs = {**BASE_ARGS, **spec["args"]}
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))

    micro_batches: list[dict] = []
    first_batch: dict = {}
    first_forward: dict = {}

    class RecordingDPOTrainer(DPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            common.record_first_batch(first_batch, inputs)
            cm = inputs["completion_mask"]
            entry = {
                "global_step": self.state.global_step,
                "shape": list(inputs["input_ids"].shape),
                "completion_tokens": int(cm.sum()),
                "shift_completion_tokens": int(cm[:, 1:].sum()),
                "attention_tokens": int(inputs["attention_mask"].sum()),
            }
            record: dict = {}
            before = common.metric_lengths(self)
            with _loss_probe(record):
                loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            for k in ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps"):
                entry[k] = to_list(record[k])
            entry["per_loss"] = [
                {"loss_type": e["loss_type"], "weight": e["weight"],
                 "per_sequence_loss": to_list(e["per_sequence_loss"])}
                for e in record["per_loss"]
            ]
            entry["loss"] = float(loss.detach())
            entry["metrics"] = common.appended_metrics(self, before, all_new=True)
            if not first_forward:
                first_forward["policy_log_probs"] = to_list(record["per_token_logps"])
                first_forward["policy_entropy"] = to_list(record["entropy"])
                first_forward["policy_mean_logits"] = to_list(record["mean_logits"])
                first_forward["policy_is_top1"] = to_list(record["is_top1"])
                if record["ref_per_token_logps"] is not None:
                    first_forward["reference_log_probs"] = to_list(record["ref_per_token_logps"])
                for k in ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps"):
                    first_forward[k] = to_list(record[k])
            micro_batches.append(entry)
            return loss

    with tempfile.TemporaryDirectory() as tmp:
        config = DPOConfig(output_dir=tmp, **kwargs)
        trainer = RecordingDPOTrainer(
            model=str(MODEL_DIR), args=config, train_dataset=train_dataset, processing_class=tokenizer,
        )

        optimizer_groups = common.optimizer_groups(trainer, config)

        ds = trainer.train_dataset
        prepared = {
            "num_rows": len(ds),
            "columns": list(ds.column_names),
            "source_rows": _source_rows(rows, ds, tokenizer.eos_token),
            "prompt_lengths": [len(v) for v in ds["prompt_ids"]],
            "chosen_lengths": [len(v) for v in ds["chosen_ids"]],
            "rejected_lengths": [len(v) for v in ds["rejected_ids"]],
            "first_rows": [
                {k: ds[i][k] for k in ("prompt", "chosen", "rejected", "prompt_ids", "chosen_ids", "rejected_ids")}
                for i in range(min(FIRST_ROWS, len(ds)))
            ],
        }
        if "ref_chosen_logps" in ds.column_names:
            prepared["ref_chosen_logps"] = list(ds["ref_chosen_logps"])
            prepared["ref_rejected_logps"] = list(ds["ref_rejected_logps"])

        len_dataloader, num_update_steps_per_epoch = common.dataloader_steps(trainer, config)
        initial = common.initial_params(trainer.model)
        train_output = trainer.train()

        resolved = {k: jsonable(getattr(config, k)) for k in RESOLVED_KEYS}
        opt = common.unwrapped_optimizer(trainer)
        result = {
            "case": name,
            "description": spec["description"],
            "dataset": spec["dataset"],
            **({"dataset_rows": spec["dataset_rows"]} if "dataset_rows" in spec else {}),
            "versions": common.versions(),
            "dpo_config": jsonable(kwargs),
            "resolved_config": resolved,
            "trainer_info": {
                "model": "fixtures/models/tiny-qwen2",
                "pad_token_id": tokenizer.pad_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "eos_token": tokenizer.eos_token,
                "reference": "none (precomputed)" if trainer.ref_model is None else "separate copy loaded from the model path",
                "loss_types": list(trainer.loss_types),
                "loss_weights": list(trainer.loss_weights),
                "loss_is_scaled_for_ga": trainer.loss_is_scaled_for_ga,
                "num_parameters": trainer.model.num_parameters(),
                "num_parameters_exclude_embeddings": trainer.model.num_parameters(exclude_embeddings=True),
                "optimizer_class": type(opt).__name__,
                "optimizer_groups": optimizer_groups,
                "len_dataloader": len_dataloader,
                "num_update_steps_per_epoch": num_update_steps_per_epoch,
            },
            "prepared_dataset": prepared,
            "first_batch": first_batch,
            "first_batch_forward": first_forward,
            "micro_batches": micro_batches,
            "log_history": common.log_history(trainer),
            "trainer_state": common.trainer_state(trainer.state),
            "param_update_norms": common.param_update_norms(trainer.model, initial),
        }
        result["train_output"] = common.train_output(train_output)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses-only", action="store_true", help="only write losses.json")
    parser.add_argument("--no-losses", action="store_true", help="do not write losses.json")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these training cases")
    parser.add_argument("--out-dir", default=str(OUT_DIR), help="where to write the json files")
    args = parser.parse_args()

    common.init_libraries(warn_pins=True, transformers_progress_bar=False)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_losses:
        losses = run_losses()
        losses["rejected_configs"] = check_rejections()
        (out_dir / "losses.json").write_text(common.dump(losses), encoding="utf-8")
    if args.losses_only:
        return
    common.write_cases(out_dir, args.case or list(CASES), lambda name: run_case(name, CASES[name]))


if __name__ == "__main__":
    main()
