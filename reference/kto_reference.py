#!/usr/bin/env python3
"""Reference numbers for trl-rs's KTO trainer, produced with TRL's own ``KTOTrainer``.

    /work/pyref/bin/python reference/kto_reference.py                 # losses.json + all cases
    /work/pyref/bin/python reference/kto_reference.py --losses-only
    /work/pyref/bin/python reference/kto_reference.py --case unpaired --case unpaired_conversational

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, trl 1.16.0 (see requirements.txt).
Conventions follow ``reference/sft_reference.py`` (fp32, eager attention, seed 42, sequential sampling,
``bf16=False``, ``use_cpu``, ``report_to="none"``, ``save_strategy="no"``, ``logging_steps=1``, wall-clock
fields nulled; two runs give byte-identical files).  Semantics: ``docs/notes/trl-kto-reward-semantics.md``.

``cargo xtask reference`` runs this script with all the others (``--check`` compares a fresh run with the
committed fixtures).

What it writes (``fixtures/expected/kto/``)
-------------------------------------------
``losses.json``: the KTO loss on fixed synthetic per-sequence log-probabilities, computed by calling TRL's
own ``KTOTrainer._compute_loss`` on a stand-in ``self`` whose policy/reference "models" return the given
log-probabilities (one value per sequence, placed on the first completion position; every other position 0,
as TRL's fused LM head does for masked positions).  Schema::

    {"versions": {...},
     "formula": "...",
     "cases": [{"name", "description",
                "inputs": {"loss_type", "beta", "desirable_weight", "undesirable_weight", "label": [bool],
                           "policy_logps", "ref_logps", "policy_KL_logps", "ref_KL_logps": [float] (per sequence),
                           "entropy_per_token", "mean_logits_per_token": float (constant per completion token),
                           "completion_tokens": [int] per sequence, "KL_completion_tokens": [int]},
                "outputs": {"loss": float (what compute_loss returns),
                            "per_example_loss": [float] (weighted, in batch order; recomputed with the formula and
                                                 checked against TRL's mean),
                            "kl": float (detached, clamped >= 0; 0.0 for apo_zero_unpaired),
                            "metrics": {metric name: value appended by TRL for this batch}}}]}

``<case>.json`` (one per entry of ``CASES``): an 8-step training run of ``fixtures/models/tiny-qwen2``::

    case, description, dataset, versions
    kto_config          kwargs given to KTOConfig (TRL names; output_dir omitted)
    resolved_config     resulting KTOConfig values that matter (defaults included)
    trainer_info        calculate_KL, ref_model (separate copy?), pad/eos ids, optimizer groups, num_parameters,
                        len_dataloader, num_update_steps_per_epoch, loss_is_scaled_for_ga
    prepared_dataset    num_rows, columns, label (every row), prompt/completion/KL_completion lengths (every row),
                        first rows' prompt_ids / completion_ids / KL_completion_ids in full
    first_batch         the first collated micro-batch exactly as compute_loss received it (input_ids,
                        attention_mask, completion_mask, KL_input_ids, KL_attention_mask, KL_completion_mask,
                        label; ref_logps / ref_KL_logps when precomputed)
    first_batch_per_token_logps   policy per-token log-probs of the first micro-batch at step 0
                        ({"main": [B, T-1], "KL": [B, T_KL-1]}; 0 at non-completion positions)
    micro_batches       one entry per compute_loss call: global_step, shape, KL_shape, label,
                        policy_logps / ref_logps / policy_KL_logps / ref_KL_logps (per-sequence sums of completion
                        log-probs; ref_* from the batch when precomputed), loss (as returned by compute_loss, before
                        the Trainer's division by gradient_accumulation_steps), metrics (values TRL appended)
    log_history         trainer.state.log_history, wall-clock values set to null
    trainer_state       global_step, max_steps, epoch, num_train_epochs, logging_steps, train_batch_size, total_flos
    param_update_norms  L2 norm of (final - initial) of every named parameter of the policy
    ref_param_norms_unchanged   the reference model's parameters are unchanged by training (bool)
    train_output        {global_step, training_loss}
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import common
from common import FIRST_ROWS, MODEL_DIR, jsonable

OUT_DIR = common.EXPECTED_DIR / "kto"

BASE_ARGS = common.base_args(per_device_train_batch_size=4)

CASES = {
    "unpaired": dict(
        description="unpaired preference, standard (prompt/completion/label); loss_type='kto', beta=0.1; EOS appended",
        dataset="datasets/unpaired_preference.jsonl",
        args={},
    ),
    "unpaired_conversational": dict(
        description="unpaired preference, conversational; max_length=128 (long completions truncated by the collator)",
        dataset="datasets/unpaired_preference_conversational.jsonl",
        args={"max_length": 128},
    ),
    "unpaired_conversational_len64": dict(
        description="conversational with max_length=64: rows whose prompt alone has >= 64 tokens are dropped, "
        "the rest are truncated by the collator",
        dataset="datasets/unpaired_preference_conversational.jsonl",
        args={},
    ),
    "unpaired_apo_zero": dict(
        description="as 'unpaired' with loss_type='apo_zero_unpaired' (no KL term, no KL_* columns)",
        dataset="datasets/unpaired_preference.jsonl",
        args={"loss_type": "apo_zero_unpaired"},
    ),
    "unpaired_weights_beta": dict(
        description="as 'unpaired' with beta=0.5, desirable_weight=1.33, undesirable_weight=0.75",
        dataset="datasets/unpaired_preference.jsonl",
        args={"beta": 0.5, "desirable_weight": 1.33, "undesirable_weight": 0.75},
    ),
    "unpaired_ga2": dict(
        description="as 'unpaired' with per_device_train_batch_size=2, gradient_accumulation_steps=2 "
        "(KL pairs rotate within blocks of 2; loss divided by GA)",
        dataset="datasets/unpaired_preference.jsonl",
        args={"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2},
    ),
    "unpaired_precompute_ref": dict(
        description="as 'unpaired' with precompute_ref_log_probs=True (reference log-probs computed once at init; "
        "same numbers as 'unpaired' up to float noise)",
        dataset="datasets/unpaired_preference.jsonl",
        args={"precompute_ref_log_probs": True},
    ),
    "paired": dict(
        description="paired preference (prompt/chosen/rejected) unpaired by TRL: all chosen rows first, then all "
        "rejected rows, so the first 8 batches contain only desirable examples",
        dataset="datasets/preference.jsonl",
        args={},
    ),
    "paired_implicit": dict(
        description="implicit-prompt paired preference: extract_prompt (character-level common prefix) then unpair",
        dataset="datasets/preference_implicit.jsonl",
        args={},
    ),
}


# ------------------------------------------------------------------------------------
# Part 1: the pure loss on synthetic inputs, through TRL's own _compute_loss
# ------------------------------------------------------------------------------------

LOSS_CASES = [
    dict(
        name="kto_mixed_kl_positive",
        description="beta=0.1, two desirable and two undesirable, positive KL estimate",
        loss_type="kto", beta=0.1, desirable_weight=1.0, undesirable_weight=1.0,
        label=[True, False, True, False],
        policy_logps=[-10.0, -12.5, -7.25, -20.0],
        ref_logps=[-11.0, -12.0, -9.0, -18.5],
        policy_KL_logps=[-14.0, -13.0, -16.0, -15.5],
        ref_KL_logps=[-15.0, -13.5, -16.25, -17.0],
    ),
    dict(
        name="kto_kl_negative_clamped",
        description="the batch KL estimate is negative -> clamped to 0",
        loss_type="kto", beta=0.1, desirable_weight=1.0, undesirable_weight=1.0,
        label=[True, False, False, True],
        policy_logps=[-5.0, -6.0, -7.0, -8.0],
        ref_logps=[-5.5, -5.0, -8.0, -7.0],
        policy_KL_logps=[-20.0, -21.0, -22.0, -23.0],
        ref_KL_logps=[-19.0, -20.5, -21.0, -22.5],
    ),
    dict(
        name="kto_weights_beta",
        description="beta=0.5, desirable_weight=1.33, undesirable_weight=0.75 (weights scale per-example losses; "
        "the mean is a plain mean over the batch, not a weighted mean)",
        loss_type="kto", beta=0.5, desirable_weight=1.33, undesirable_weight=0.75,
        label=[True, True, True, False],
        policy_logps=[-3.0, -4.0, -9.0, -2.0],
        ref_logps=[-4.0, -4.5, -8.0, -3.5],
        policy_KL_logps=[-6.0, -7.0, -8.0, -9.0],
        ref_KL_logps=[-6.5, -7.25, -8.5, -9.0],
    ),
    dict(
        name="kto_all_desirable",
        description="no undesirable example in the batch: rewards/rejected, logps/rejected, logits/rejected and "
        "rewards/margins are not appended",
        loss_type="kto", beta=0.1, desirable_weight=1.0, undesirable_weight=1.0,
        label=[True, True],
        policy_logps=[-10.0, -11.0],
        ref_logps=[-10.5, -10.0],
        policy_KL_logps=[-12.0, -9.0],
        ref_KL_logps=[-12.5, -9.25],
    ),
    dict(
        name="kto_all_undesirable",
        description="no desirable example in the batch",
        loss_type="kto", beta=0.1, desirable_weight=1.0, undesirable_weight=1.0,
        label=[False, False, False],
        policy_logps=[-10.0, -11.0, -30.0],
        ref_logps=[-10.5, -10.0, -25.0],
        policy_KL_logps=[-12.0, -9.0, -4.0],
        ref_KL_logps=[-12.5, -9.25, -4.5],
    ),
    dict(
        name="kto_large_logratios",
        description="large log-ratios saturate the sigmoid",
        loss_type="kto", beta=0.1, desirable_weight=1.0, undesirable_weight=1.0,
        label=[True, False, True, False],
        policy_logps=[-1.0, -300.0, -400.0, -2.0],
        ref_logps=[-200.0, -5.0, -3.0, -250.0],
        policy_KL_logps=[-50.0, -60.0, -70.0, -80.0],
        ref_KL_logps=[-52.0, -61.0, -69.0, -81.0],
    ),
    dict(
        name="apo_zero_unpaired_mixed",
        description="loss_type='apo_zero_unpaired': no KL (reported as 0.0); desirable 1-sigmoid(beta*r), "
        "undesirable sigmoid(beta*r)",
        loss_type="apo_zero_unpaired", beta=0.1, desirable_weight=1.0, undesirable_weight=1.0,
        label=[True, False, True, False],
        policy_logps=[-10.0, -12.5, -7.25, -20.0],
        ref_logps=[-11.0, -12.0, -9.0, -18.5],
        policy_KL_logps=None,
        ref_KL_logps=None,
    ),
    dict(
        name="apo_zero_unpaired_weights",
        description="apo_zero_unpaired with beta=0.3, desirable_weight=2.0, undesirable_weight=0.5",
        loss_type="apo_zero_unpaired", beta=0.3, desirable_weight=2.0, undesirable_weight=0.5,
        label=[False, True, False],
        policy_logps=[-4.0, -6.0, -9.0],
        ref_logps=[-6.0, -5.0, -9.5],
        policy_KL_logps=None,
        ref_KL_logps=None,
    ),
]

ENTROPY_PER_TOKEN = 2.5
MEAN_LOGITS_PER_TOKEN = -0.75


def _kto_formula(case: dict) -> tuple[list[float], float]:
    """The per-example weighted losses (batch order) and the KL, in float64 (for the record / cross-check)."""
    beta = case["beta"]
    if case["loss_type"] == "kto":
        kl = sum(p - r for p, r in zip(case["policy_KL_logps"], case["ref_KL_logps"])) / len(case["label"])
        kl = max(kl, 0.0)
    else:
        kl = 0.0
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    out = []
    for lab, p, r in zip(case["label"], case["policy_logps"], case["ref_logps"]):
        lr = p - r
        if case["loss_type"] == "kto":
            loss = 1 - sig(beta * (lr - kl)) if lab else 1 - sig(beta * (kl - lr))
        else:
            loss = 1 - sig(beta * lr) if lab else sig(beta * lr)
        out.append((case["desirable_weight"] if lab else case["undesirable_weight"]) * loss)
    return out, kl


def compute_loss_cases() -> dict:
    import types
    from collections import defaultdict

    import torch
    from trl.trainer.kto_trainer import KTOTrainer

    class FakeAccelerator:
        device = torch.device("cpu")

        def gather_for_metrics(self, x):
            return x

        def unwrap_model(self, m):
            return m

    class FakeModel:
        """Returns the given per-sequence completion log-probs, put on the first completion position."""

        training = True
        is_gradient_checkpointing = False

        def __init__(self, main_logps, kl_logps):
            self.main_logps = main_logps
            self.kl_logps = kl_logps

        def __call__(self, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, **kwargs):
            assert fused_lm_head
            shifted = labels[:, 1:]
            mask = shifted != -100
            is_kl = self.kl_logps is not None and input_ids is self._kl_input_ids
            values = self.kl_logps if is_kl else self.main_logps
            log_probs = torch.zeros(shifted.shape, dtype=torch.float32)
            for i, v in enumerate(values):
                first = int(mask[i].nonzero()[0])
                log_probs[i, first] = v
            entropy = mask.float() * ENTROPY_PER_TOKEN
            mean_logits = mask.float() * MEAN_LOGITS_PER_TOKEN
            return types.SimpleNamespace(log_probs=log_probs, entropy=entropy, mean_logits=mean_logits)

    def make_batch(case):
        # completion lengths vary per example; prompts 3 tokens; KL completions rotate by +1
        n = len(case["label"])
        comp_lens = [2 + (i % 3) for i in range(n)]
        prompt = [11, 12, 13]
        ids, masks = [], []
        for i in range(n):
            ids.append(prompt + [20 + i] * comp_lens[i])
            masks.append([0] * len(prompt) + [1] * comp_lens[i])
        kl_lens = [comp_lens[-1]] + comp_lens[:-1]
        kl_ids, kl_masks = [], []
        for i in range(n):
            kl_ids.append(prompt + [30 + i] * kl_lens[i])
            kl_masks.append([0] * len(prompt) + [1] * kl_lens[i])

        def padded(rows, value):
            width = max(len(r) for r in rows)
            return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.int64)

        batch = {
            "input_ids": padded(ids, 0),
            "attention_mask": padded([[1] * len(r) for r in ids], 0),
            "completion_mask": padded(masks, 0),
            "label": torch.tensor(case["label"]),
        }
        if case["loss_type"] == "kto":
            batch["KL_input_ids"] = padded(kl_ids, 0)
            batch["KL_attention_mask"] = padded([[1] * len(r) for r in kl_ids], 0)
            batch["KL_completion_mask"] = padded(kl_masks, 0)
        return batch, comp_lens, (kl_lens if case["loss_type"] == "kto" else None)

    results = []
    for case in LOSS_CASES:
        batch, comp_lens, kl_lens = make_batch(case)
        policy = FakeModel(case["policy_logps"], case["policy_KL_logps"])
        ref = FakeModel(case["ref_logps"], case["ref_KL_logps"])
        for m in (policy, ref):
            m._kl_input_ids = batch.get("KL_input_ids")

        fake = types.SimpleNamespace()
        fake.model = policy
        fake.ref_model = ref
        fake.accelerator = FakeAccelerator()
        fake.beta = case["beta"]
        fake.loss_type = case["loss_type"]
        fake.desirable_weight = case["desirable_weight"]
        fake.undesirable_weight = case["undesirable_weight"]
        fake.calculate_KL = case["loss_type"] not in ["apo_zero_unpaired"]
        fake.precompute_ref_logps = False
        fake.aux_loss_enabled = False
        fake.args = types.SimpleNamespace(gradient_checkpointing_kwargs=None)
        fake._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        fake._total_train_tokens = 0
        fake._tp_size = 1
        fake._compute_kl_logps = types.MethodType(KTOTrainer._compute_kl_logps, fake)

        loss = KTOTrainer._compute_loss(fake, policy, batch, False)
        per_example, kl_formula = _kto_formula(case)
        # cross-check TRL against the written-out formula
        assert abs(float(loss) - sum(per_example) / len(per_example)) < 1e-6, (case["name"], float(loss))
        metrics = {k: v[-1] for k, v in fake._metrics["train"].items()}
        assert abs(metrics["kl"] - kl_formula) < 1e-5, (case["name"], metrics["kl"], kl_formula)
        results.append({
            "name": case["name"],
            "description": case["description"],
            "inputs": {
                "loss_type": case["loss_type"],
                "beta": case["beta"],
                "desirable_weight": case["desirable_weight"],
                "undesirable_weight": case["undesirable_weight"],
                "label": case["label"],
                "policy_logps": case["policy_logps"],
                "ref_logps": case["ref_logps"],
                "policy_KL_logps": case["policy_KL_logps"],
                "ref_KL_logps": case["ref_KL_logps"],
                "entropy_per_token": ENTROPY_PER_TOKEN,
                "mean_logits_per_token": MEAN_LOGITS_PER_TOKEN,
                "completion_tokens": comp_lens,
                "KL_completion_tokens": kl_lens,
            },
            "outputs": {
                "loss": float(loss),
                "per_example_loss": per_example,
                "kl": metrics["kl"],
                "metrics": metrics,
            },
        })
    return {
        "versions": common.versions(),
        "formula": (
            "r_i = beta * (policy_logps_i - ref_logps_i); "
            "kto: kl = max(0, mean_over_batch(policy_KL_logps - ref_KL_logps)) (detached); "
            "desirable: w_d * (1 - sigmoid(r_i - beta*kl)); undesirable: w_u * (1 - sigmoid(beta*kl - r_i)); "
            "apo_zero_unpaired: desirable w_d * (1 - sigmoid(r_i)), undesirable w_u * sigmoid(r_i); "
            "loss = nanmean over the batch of the weighted per-example losses"
        ),
        "cases": results,
    }


# ------------------------------------------------------------------------------------
# Part 2: 8-step training runs
# ------------------------------------------------------------------------------------


def run_case(name: str, spec: dict) -> dict:
    from transformers import AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    common.deterministic_torch()
    train_dataset = common.load_dataset(spec["dataset"])

    kwargs = {**BASE_ARGS, **spec["args"]}
    tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))

    micro_batches: list[dict] = []
    first_batch: dict = {}
    first_logps: dict = {}
    calls: list[tuple[str, object, object]] = []  # (which model, input_ids passed, per-token log_probs)

    def wrap_forward(module, which):
        original = module.forward

        def recording_forward(*args, **kw):
            out = original(*args, **kw)
            if kw.get("fused_lm_head"):
                calls.append((which, kw.get("input_ids"), out.log_probs.detach().clone()))
            return out

        module.forward = recording_forward

    class RecordingKTOTrainer(KTOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            common.record_first_batch(first_batch, inputs)
            before = common.metric_lengths(self)
            calls.clear()
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

            kl_ids = inputs.get("KL_input_ids")

            def sums(which, kl):
                for w, ids, lp in calls:
                    if w == which and ((ids is kl_ids) if kl else (ids is inputs["input_ids"])):
                        return lp.sum(-1).tolist(), lp
                return None, None

            policy_logps, policy_tok = sums("policy", False)
            policy_kl, policy_kl_tok = sums("policy", True) if kl_ids is not None else (None, None)
            if self.precompute_ref_logps:
                ref_logps = inputs["ref_logps"].tolist()
                ref_kl = inputs["ref_KL_logps"].tolist() if "ref_KL_logps" in inputs else None
            else:
                ref_logps, _ = sums("ref", False)
                ref_kl = sums("ref", True)[0] if kl_ids is not None else None
            if not first_logps:
                first_logps["main"] = policy_tok.tolist()
                if policy_kl_tok is not None:
                    first_logps["KL"] = policy_kl_tok.tolist()
            metrics = common.appended_metrics(self, before)
            micro_batches.append({
                "global_step": self.state.global_step,
                "shape": list(inputs["input_ids"].shape),
                "KL_shape": list(kl_ids.shape) if kl_ids is not None else None,
                "label": inputs["label"].tolist(),
                "policy_logps": policy_logps,
                "ref_logps": ref_logps,
                "policy_KL_logps": policy_kl,
                "ref_KL_logps": ref_kl,
                "loss": float(loss.detach()),
                "metrics": metrics,
            })
            return loss

    with tempfile.TemporaryDirectory() as tmp:
        config = KTOConfig(output_dir=tmp, **kwargs)
        trainer = RecordingKTOTrainer(
            model=str(MODEL_DIR),
            args=config,
            train_dataset=train_dataset,
            processing_class=tokenizer,
        )
        wrap_forward(trainer.model, "policy")
        if trainer.ref_model is not None:
            wrap_forward(trainer.ref_model, "ref")
        ref_norms_before = common.param_norms(trainer.ref_model) if trainer.ref_model is not None else None
        optimizer_groups = common.optimizer_groups(trainer, config)

        ds = trainer.train_dataset
        prepared = {
            "num_rows": len(ds),
            "columns": list(ds.column_names),
            "label": list(ds["label"]),
            "prompt_lengths": [len(x) for x in ds["prompt_ids"]],
            "completion_lengths": [len(x) for x in ds["completion_ids"]],
        }
        if "KL_completion_ids" in ds.column_names:
            prepared["KL_completion_lengths"] = [len(x) for x in ds["KL_completion_ids"]]
        prepared["prompt"] = [ds[i]["prompt"] for i in range(min(FIRST_ROWS, len(ds)))]
        prepared["completion"] = [ds[i]["completion"] for i in range(min(FIRST_ROWS, len(ds)))]
        prepared["prompt_ids"] = [list(x) for x in ds["prompt_ids"][:FIRST_ROWS]]
        prepared["completion_ids"] = [list(x) for x in ds["completion_ids"][:FIRST_ROWS]]
        if "KL_completion_ids" in ds.column_names:
            prepared["KL_completion_ids"] = [list(x) for x in ds["KL_completion_ids"][:FIRST_ROWS]]
        if "ref_logps" in ds.column_names:
            prepared["ref_logps"] = [float(x) for x in ds["ref_logps"]]
        if "ref_KL_logps" in ds.column_names:
            prepared["ref_KL_logps"] = [float(x) for x in ds["ref_KL_logps"]]

        len_dataloader, num_update_steps_per_epoch = common.dataloader_steps(trainer, config)
        initial = common.initial_params(trainer.model)
        train_output = trainer.train()

        ref_unchanged = None
        if trainer.ref_model is not None:
            ref_unchanged = common.param_norms(trainer.ref_model) == ref_norms_before

        resolved_keys = [
            "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2",
            "adam_epsilon", "max_grad_norm", "optim", "seed", "max_steps", "num_train_epochs",
            "per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps", "save_strategy",
            "train_sampling_strategy", "dataloader_drop_last", "bf16", "fp16", "gradient_checkpointing",
            "remove_unused_columns", "max_length", "pad_to_multiple_of", "precompute_ref_log_probs",
            "precompute_ref_batch_size", "loss_type", "beta", "desirable_weight", "undesirable_weight",
            "disable_dropout", "sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps",
            "router_aux_loss_coef", "activation_offloading",
        ]
        resolved = {k: jsonable(getattr(config, k)) for k in resolved_keys}

        opt = common.unwrapped_optimizer(trainer)
        result = {
            "case": name,
            "description": spec["description"],
            "dataset": spec["dataset"],
            "versions": common.versions(),
            "kto_config": jsonable(kwargs),
            "resolved_config": resolved,
            "trainer_info": {
                "model": "fixtures/models/tiny-qwen2",
                "calculate_KL": bool(trainer.calculate_KL),
                "has_ref_model": trainer.ref_model is not None,
                "ref_model_is_separate_copy": trainer.ref_model is not None and trainer.ref_model is not trainer.model,
                "loss_is_scaled_for_ga": trainer.loss_is_scaled_for_ga,
                "pad_token_id": tokenizer.pad_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "num_parameters": trainer.model.num_parameters(),
                "num_parameters_exclude_embeddings": trainer.model.num_parameters(exclude_embeddings=True),
                "optimizer_class": type(opt).__name__,
                "optimizer_groups": optimizer_groups,
                "len_dataloader": len_dataloader,
                "num_update_steps_per_epoch": num_update_steps_per_epoch,
            },
            "prepared_dataset": prepared,
            "first_batch": first_batch,
            "first_batch_per_token_logps": first_logps,
            "micro_batches": micro_batches,
            "log_history": common.log_history(trainer),
            "trainer_state": common.trainer_state(trainer.state),
            "param_update_norms": common.param_update_norms(trainer.model, initial),
            "ref_param_norms_unchanged": ref_unchanged,
            "train_output": common.train_output(train_output),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses-only", action="store_true", help="only write losses.json")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--out-dir", default=str(OUT_DIR), help="where to write the files")
    args = parser.parse_args()

    common.init_libraries()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.case:
        (out_dir / "losses.json").write_text(common.dump(compute_loss_cases()), encoding="utf-8")
        print("losses.json written")
    if args.losses_only:
        return
    common.write_cases(out_dir, args.case or list(CASES), lambda name: run_case(name, CASES[name]))


if __name__ == "__main__":
    main()
