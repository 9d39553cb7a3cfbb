#!/usr/bin/env python3
"""Reference numbers for trl-ppo's pure functions (``crates/trl-ppo/src/``) from TRL 1.12's PPO.

    .venv-ppo/bin/python reference/ppo_reference.py      # writes fixtures/expected/ppo/math.json

Environment: TRL removed PPO after 1.12, so this script needs ``trl==1.12.*`` in its own venv
(``reference/requirements-ppo.txt``); ``cargo xtask reference`` runs it with ``.venv-ppo`` when
that venv exists.

What is recorded
----------------
Where TRL 1.12 has a function, it is called directly:

- ``trl/experimental/ppo/ppo_trainer.py``: ``masked_mean`` (l.237), ``masked_var`` (l.245),
  ``masked_whiten`` (l.264), ``truncate_response`` (l.168);
- ``trl/experimental/utils.py``: ``first_true_indices`` (l.723).

Code that lives inline in ``PPOTrainer.train()`` is reproduced op for op, each block pointing at
its lines in ``ppo_trainer.py`` 1.12.0:

- ``rollout``: missing-EOS penalty (l.757-760), padding masks and INVALID_LOGPROB (l.763-769),
  the KL estimators and the per-token KL penalty with the score at the last real token
  (l.771-779), reward whitening (l.781-784), GAE advantages, returns and advantage whitening
  (l.786-798), and the rollout metrics (l.882-905);
- ``loss``: the clipped value loss and clipped policy loss over masked means and their statistics
  (l.820-868).

Inputs are drawn from ``torch.Generator().manual_seed(...)`` and stored with the outputs, so the
Rust tests never need torch.

Output schema (``fixtures/expected/ppo/math.json``)
---------------------------------------------------
    generated_by, versions
    masked      [{values, mask, mean, var_unbiased, var_biased, whiten, whiten_no_shift}]
    first_true  [{bools, indices}]
    truncate    [{stop_token_id, pad_token_id, responses, truncated}]
    rollout     [{settings, inputs, outputs}]   (settings: kl_coef, kl_estimator, gamma, lam,
                 whiten_rewards, missing_eos_penalty, stop_token_id, pad_token_id, eos_token_id)
    loss        [{settings, inputs, outputs}]   (settings: cliprange, cliprange_value, vf_coef)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REF = Path(__file__).resolve().parent
sys.path.insert(0, str(REF))

from common import EXPECTED_DIR, deterministic_torch, setup_env  # noqa: E402

INVALID_LOGPROB = 1.0


def tl(x):
    return x.detach().tolist()


def masked_cases(torch, ppo):
    g = torch.Generator().manual_seed(1)
    cases = []
    for rows, cols in [(3, 5), (4, 7), (2, 9)]:
        values = torch.randn(rows, cols, generator=g) * 2.0 + 0.5
        mask = torch.rand(rows, cols, generator=g) > 0.3
        mask[0, 0] = True
        mask[0, 1] = True
        cases.append(
            dict(
                values=tl(values),
                mask=tl(mask),
                mean=ppo.masked_mean(values, mask).item(),
                var_unbiased=ppo.masked_var(values, mask).item(),
                var_biased=ppo.masked_var(values, mask, unbiased=False).item(),
                whiten=tl(ppo.masked_whiten(values, mask)),
                whiten_no_shift=tl(ppo.masked_whiten(values, mask, shift_mean=False)),
            )
        )
    return cases


def first_true_cases(torch, utils):
    g = torch.Generator().manual_seed(2)
    bools = torch.rand(6, 8, generator=g) > 0.8
    bools[0] = False
    return [dict(bools=tl(bools), indices=tl(utils.first_true_indices(bools)))]


def random_responses(torch, g, rows, cols, stop, pad):
    responses = torch.randint(3, 12, (rows, cols), generator=g)
    # one row stops early, one stops at the last position, one never stops, one has two stops
    responses[0, 2] = stop
    responses[1, cols - 1] = stop
    responses[3, 1] = stop
    responses[3, 4] = stop
    if rows > 4:
        responses[4, 0] = stop
    return responses


def truncate_cases(torch, ppo):
    g = torch.Generator().manual_seed(3)
    out = []
    for stop, pad in [(2, 0), (1, 1)]:
        responses = random_responses(torch, g, 5, 7, stop, pad)
        out.append(
            dict(
                stop_token_id=stop,
                pad_token_id=pad,
                responses=tl(responses),
                truncated=tl(ppo.truncate_response(stop, pad, responses)),
            )
        )
    return out


def rollout(torch, ppo, utils, s, responses, logprobs, ref_logprobs, scores, values):
    """PPOTrainer.train() 1.12.0, l.739-798 and l.882-905, on recorded tensors."""
    pad, eos, stop = s["pad_token_id"], s["eos_token_id"], s["stop_token_id"]
    postprocessed = ppo.truncate_response(stop, pad, responses) if stop is not None else responses
    sequence_lengths = utils.first_true_indices(postprocessed == pad) - 1  # l.745
    scores = scores.clone()
    contain_eos_token = torch.any(postprocessed == eos, dim=-1)  # l.757
    if s["missing_eos_penalty"] is not None:
        scores[~contain_eos_token] -= s["missing_eos_penalty"]
    response_idxs = torch.arange(responses.shape[1]).repeat(responses.shape[0], 1)  # l.763
    padding_mask = response_idxs > sequence_lengths.unsqueeze(1)
    logprobs = torch.masked_fill(logprobs, padding_mask, INVALID_LOGPROB)
    ref_logprobs = torch.masked_fill(ref_logprobs, padding_mask, INVALID_LOGPROB)
    sequence_lengths_p1 = sequence_lengths + 1
    padding_mask_p1 = response_idxs > (sequence_lengths_p1.unsqueeze(1))
    values = torch.masked_fill(values, padding_mask_p1, 0)
    logr = ref_logprobs - logprobs  # l.772
    kl = -logr if s["kl_estimator"] == "k1" else (logr.exp() - 1) - logr
    non_score_reward = -s["kl_coef"] * kl
    rewards = non_score_reward.clone()
    actual_start = torch.arange(rewards.size(0))
    actual_end = torch.where(sequence_lengths_p1 < rewards.size(1), sequence_lengths_p1, sequence_lengths)
    rewards[actual_start, actual_end] += scores
    if s["whiten_rewards"]:  # l.782
        rewards = ppo.masked_whiten(rewards, mask=~padding_mask_p1, shift_mean=False)
        rewards = torch.masked_fill(rewards, padding_mask_p1, 0)
    lastgaelam = 0  # l.787
    advantages_reversed = []
    gen_length = responses.shape[1]
    for t in reversed(range(gen_length)):
        nextvalues = values[:, t + 1] if t < gen_length - 1 else 0.0
        delta = rewards[:, t] + s["gamma"] * nextvalues - values[:, t]
        lastgaelam = delta + s["gamma"] * s["lam"] * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], axis=1)
    returns = advantages + values
    advantages = ppo.masked_whiten(advantages, ~padding_mask)
    advantages = torch.masked_fill(advantages, padding_mask, 0)
    mean_kl = kl.sum(1).mean()  # l.882
    mean_entropy = ((-logprobs) * (~padding_mask).float()).sum(1).mean()
    mean_non_score_reward = non_score_reward.sum(1).mean()
    return dict(
        postprocessed_responses=tl(postprocessed),
        sequence_lengths=tl(sequence_lengths),
        scores=tl(scores),
        padding_mask=tl(padding_mask),
        padding_mask_p1=tl(padding_mask_p1),
        logprobs=tl(logprobs),
        values=tl(values),
        kl=tl(kl),
        non_score_reward=tl(non_score_reward),
        rewards=tl(rewards),
        advantages=tl(advantages),
        returns=tl(returns),
        objective_kl=mean_kl.item(),
        objective_entropy=mean_entropy.item(),
        objective_non_score_reward=mean_non_score_reward.item(),
        objective_rlhf_reward=(mean_non_score_reward + scores.mean()).item(),
        objective_scores=scores.mean().item(),
        num_eos_tokens=(responses == eos).sum().item(),
    )


def rollout_cases(torch, ppo, utils):
    g = torch.Generator().manual_seed(4)
    cases = []
    settings = [
        dict(kl_coef=0.05, kl_estimator="k1", gamma=1.0, lam=0.95, whiten_rewards=False,
             missing_eos_penalty=None, stop_token_id=2, pad_token_id=0, eos_token_id=2),
        dict(kl_coef=0.1, kl_estimator="k3", gamma=0.9, lam=0.8, whiten_rewards=True,
             missing_eos_penalty=1.5, stop_token_id=2, pad_token_id=0, eos_token_id=2),
        dict(kl_coef=0.05, kl_estimator="k1", gamma=1.0, lam=0.95, whiten_rewards=False,
             missing_eos_penalty=1.0, stop_token_id=None, pad_token_id=0, eos_token_id=2),
    ]
    for s in settings:
        rows, cols = 6, 8
        responses = random_responses(torch, g, rows, cols, 2, 0)
        logprobs = -torch.rand(rows, cols, generator=g) * 3.0
        ref_logprobs = logprobs + torch.randn(rows, cols, generator=g) * 0.3
        scores = torch.randn(rows, generator=g)
        values = torch.randn(rows, cols, generator=g)
        inputs = dict(responses=tl(responses), logprobs=tl(logprobs), ref_logprobs=tl(ref_logprobs),
                      scores=tl(scores), values=tl(values))
        outputs = rollout(torch, ppo, utils, s, responses, logprobs, ref_logprobs, scores, values)
        cases.append(dict(settings=s, inputs=inputs, outputs=outputs))
    return cases


def loss(torch, ppo, s, new_logprobs, vpred, mb_logprobs, mb_values, mb_return, mb_advantage,
         padding_mask, padding_mask_p1):
    """PPOTrainer.train() 1.12.0, l.824-868 (one micro-batch)."""
    new_logprobs = torch.masked_fill(new_logprobs, padding_mask, INVALID_LOGPROB)
    vpred = torch.masked_fill(vpred, padding_mask_p1, 0)
    vpredclipped = torch.clamp(vpred, mb_values - s["cliprange_value"], mb_values + s["cliprange_value"])
    vf_losses1 = torch.square(vpred - mb_return)
    vf_losses2 = torch.square(vpredclipped - mb_return)
    vf_loss_max = torch.max(vf_losses1, vf_losses2)
    vf_loss = 0.5 * ppo.masked_mean(vf_loss_max, ~padding_mask_p1)
    vf_clipfrac = ppo.masked_mean((vf_losses2 > vf_losses1).float(), ~padding_mask_p1)
    logprobs_diff = new_logprobs - mb_logprobs
    ratio = torch.exp(logprobs_diff)
    pg_losses = -mb_advantage * ratio
    pg_losses2 = -mb_advantage * torch.clamp(ratio, 1.0 - s["cliprange"], 1.0 + s["cliprange"])
    pg_loss_max = torch.max(pg_losses, pg_losses2)
    pg_loss = ppo.masked_mean(pg_loss_max, ~padding_mask)
    total = pg_loss + s["vf_coef"] * vf_loss
    pg_clipfrac = ppo.masked_mean((pg_losses2 > pg_losses).float(), ~padding_mask)
    approxkl = 0.5 * (logprobs_diff**2).mean()
    return dict(
        loss=total.item(), pg_loss=pg_loss.item(), vf_loss=vf_loss.item(), vf_clipfrac=vf_clipfrac.item(),
        pg_clipfrac=pg_clipfrac.item(), approxkl=approxkl.item(), ratio_mean=ratio.mean().item(),
    )


def loss_cases(torch, ppo, utils):
    g = torch.Generator().manual_seed(5)
    cases = []
    for s in [dict(cliprange=0.2, cliprange_value=0.2, vf_coef=0.1),
              dict(cliprange=0.05, cliprange_value=0.05, vf_coef=0.5)]:
        rows, cols = 4, 6
        responses = random_responses(torch, g, rows, cols, 2, 0)
        seq = utils.first_true_indices(ppo.truncate_response(2, 0, responses) == 0) - 1
        idx = torch.arange(cols).repeat(rows, 1)
        padding_mask = idx > seq.unsqueeze(1)
        padding_mask_p1 = idx > (seq + 1).unsqueeze(1)
        mb_logprobs = torch.masked_fill(-torch.rand(rows, cols, generator=g) * 2.0, padding_mask, INVALID_LOGPROB)
        new_logprobs = mb_logprobs + torch.randn(rows, cols, generator=g) * 0.4
        mb_values = torch.masked_fill(torch.randn(rows, cols, generator=g), padding_mask_p1, 0)
        vpred = mb_values + torch.randn(rows, cols, generator=g) * 0.5
        mb_return = torch.randn(rows, cols, generator=g)
        mb_advantage = torch.masked_fill(torch.randn(rows, cols, generator=g), padding_mask, 0)
        inputs = dict(new_logprobs=tl(new_logprobs), vpred=tl(vpred), mb_logprobs=tl(mb_logprobs),
                      mb_values=tl(mb_values), mb_return=tl(mb_return), mb_advantage=tl(mb_advantage),
                      padding_mask=tl(padding_mask), padding_mask_p1=tl(padding_mask_p1))
        outputs = loss(torch, ppo, s, new_logprobs, vpred, mb_logprobs, mb_values, mb_return, mb_advantage,
                       padding_mask, padding_mask_p1)
        cases.append(dict(settings=s, inputs=inputs, outputs=outputs))
    return cases


# Two replays: one micro-batch per rollout batch, and mini-batches of micro-batches (where
# accelerate groups `gradient_accumulation_steps` micro-batches into one update across
# mini-batch boundaries, and the statistics tensors hold unfilled zero slots).
REPLAY_CASES = {
    "one_micro_batch": dict(
        num_prompts=4,
        config=dict(
            per_device_train_batch_size=4, gradient_accumulation_steps=1, num_ppo_epochs=2,
            num_mini_batches=1, total_episodes=12, response_length=8, stop_token="eos",
            missing_eos_penalty=1.0, kl_coef=0.05, kl_estimator="k1", gamma=1.0, lam=0.95,
            learning_rate=3e-4, temperature=2.0, seed=42,
        ),
    ),
    # 24 prompts, 8 per rollout batch: neither replayed batch is a dataloader pass's last, where
    # accelerate would sync gradients on every micro-batch.
    "mini_batches": dict(
        num_prompts=24,
        config=dict(
            per_device_train_batch_size=2, gradient_accumulation_steps=4, num_ppo_epochs=2,
            num_mini_batches=2, total_episodes=16, response_length=6, stop_token="eos",
            missing_eos_penalty=1.0, kl_coef=0.1, kl_estimator="k3", gamma=0.9, lam=0.9,
            learning_rate=3e-4, temperature=1.5, seed=7,
        ),
    ),
    # 8 prompts, 8 per rollout batch: every batch is the last of a dataloader pass, where
    # accelerate's `end_of_dataloader` syncs (and steps AdamW) on every micro-batch.
    "end_of_pass": dict(
        num_prompts=8,
        config=dict(
            per_device_train_batch_size=2, gradient_accumulation_steps=4, num_ppo_epochs=2,
            num_mini_batches=1, total_episodes=16, response_length=6, stop_token="eos",
            missing_eos_penalty=1.0, kl_coef=0.05, kl_estimator="k1", gamma=1.0, lam=0.95,
            learning_rate=3e-4, temperature=2.0, seed=3,
        ),
    ),
}


def replay_case(torch, num_prompts, config):
    """A real ``PPOTrainer.train()`` on the fixture models (policy tiny-qwen2, reward and value
    tiny-qwen2-rm) with its rollouts recorded: every ``batch_generation`` call's queries and
    responses, every mini-batch permutation (``np.random.permutation``), and the
    ``log_history``."""
    import tempfile

    import datasets
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as ppo

    from common import MODEL_DIR, load_rows

    rm_dir = MODEL_DIR.parent / "tiny-qwen2-rm"
    prompts = [row["prompt"] for row in load_rows("datasets/prompt_only.jsonl", num_prompts)]
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR, padding_side="left")
    dataset = datasets.Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in prompts]})
    load = dict(dtype=torch.float32, attn_implementation="eager")
    policy = AutoModelForCausalLM.from_pretrained(MODEL_DIR, **load)
    ref = AutoModelForCausalLM.from_pretrained(MODEL_DIR, **load)
    reward = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1, **load)
    value = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1, **load)
    recorded = []
    original, permutation = ppo.batch_generation, np.random.permutation

    def recording(model, queries, *args, **kwargs):
        query_responses, logits = original(model, queries, *args, **kwargs)
        context = queries.shape[1]
        recorded.append(
            dict(
                queries=[[t for t in q if t != tokenizer.pad_token_id] for q in queries.tolist()],
                responses=query_responses[:, context:].tolist(),
                permutations=[],
            )
        )
        return query_responses, logits

    def recording_permutation(n):
        perm = permutation(n)
        recorded[-1]["permutations"].append(perm.tolist())
        return perm

    ppo.batch_generation, np.random.permutation = recording, recording_permutation
    # TRL never seeds numpy's global RNG: seeded here so that a rerun writes the same file.
    np.random.seed(42)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out:
        args = PPOConfig(
            output_dir=out, report_to="none", bf16=False, use_cpu=True, logging_steps=1,
            save_strategy="no", num_sample_generations=0, disable_tqdm=True, **config,
        )
        trainer = PPOTrainer(
            args=args, processing_class=tokenizer, model=policy, ref_model=ref, reward_model=reward,
            train_dataset=dataset, value_model=value, eval_dataset=dataset,
        )
        trainer.train()
    ppo.batch_generation, np.random.permutation = original, permutation
    history = [{k: v for k, v in entry.items() if k != "eps"} for entry in trainer.state.log_history]
    return dict(config=config, prompts=prompts, rollouts=recorded, log_history=history)


def main() -> None:
    setup_env()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    import transformers
    import trl
    from trl.experimental import utils
    from trl.experimental.ppo import ppo_trainer as ppo

    if not trl.__version__.startswith("1.12."):
        sys.exit(f"ppo_reference.py needs trl 1.12 (PPO was removed after it), found {trl.__version__}")
    deterministic_torch()
    out = dict(
        generated_by="reference/ppo_reference.py",
        versions=dict(torch=torch.__version__.split("+")[0], transformers=transformers.__version__,
                      trl=trl.__version__),
        masked=masked_cases(torch, ppo),
        first_true=first_true_cases(torch, utils),
        truncate=truncate_cases(torch, ppo),
        rollout=rollout_cases(torch, ppo, utils),
        loss=loss_cases(torch, ppo, utils),
    )
    replays = {name: replay_case(torch, **case) for name, case in REPLAY_CASES.items()}
    path = EXPECTED_DIR / "ppo" / "math.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    replay_path = EXPECTED_DIR / "ppo" / "replay.json"
    replay_path.write_text(json.dumps(dict(generated_by=out["generated_by"], versions=out["versions"], cases=replays),
                                      indent=1) + "\n", encoding="utf-8")
    print(f"wrote {replay_path}")


if __name__ == "__main__":
    main()
