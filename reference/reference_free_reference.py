#!/usr/bin/env python3
"""Reference numbers for trl-rs's reference-free objectives (SimPO, ORPO), from TRL's own code.

    /work/pyref/bin/python reference/reference_free_reference.py

Writes ``fixtures/expected/dpo/reference_free_losses.json``; checked by
``crates/trl-dpo/src/reference_free_tests.rs``.

TRL 1.16 keeps both objectives outside ``DPOTrainer``:

* SimPO (Meng et al. 2024, arXiv:2405.14734) is ``trl.experimental.cpo.CPOTrainer`` with
  ``loss_type="simpo"``: ``get_batch_logps(..., average_log_prob=True)`` gives the per-token mean
  log-prob of each completion, ``cpo_loss`` subtracts ``simpo_gamma / beta`` from the difference
  and applies the label-smoothed sigmoid loss, and ``get_batch_loss_metrics`` returns
  ``losses.mean() + cpo_alpha * nll_loss`` where ``nll_loss`` is the token-mean cross-entropy over
  the *completion* tokens of the chosen rows (labels with the prompt at -100). Pure SimPO is
  ``cpo_alpha=0`` (what ``loss_type="alphapo"`` sets); CPOConfig's default is ``cpo_alpha=1``.
* ORPO (Hong et al. 2024, arXiv:2403.07691) is ``trl.experimental.orpo.ORPOTrainer``:
  ``odds_ratio_loss`` on the per-token mean log-probs returns ``beta * log sigmoid(log_odds)``
  (note the sign: a *reward*, not a loss) and ``get_batch_loss_metrics`` returns
  ``nll - losses.mean()``, where ``nll`` is the token-mean cross-entropy over *every non-padding
  token of the chosen rows, prompt included* (labels = input_ids where attention_mask == 1;
  "orpo chosen nll loss is computed over the full prompt and response").

Nothing is re-implemented here: a trainer object is made with ``__new__`` (no model, no
dataset), given exactly the attributes its ``__init__`` would set from a real ``CPOConfig`` /
``ORPOConfig``, and TRL's ``concatenated_forward`` / ``cpo_loss`` / ``odds_ratio_loss`` /
``get_batch_loss_metrics`` run on it with a fake causal LM that returns fixed logits.

Batch: B = 4 pairs, decoder-only, T = 12 (every row already padded to T, right padding with
pad id 0), vocabulary V = 11, logits ~ N(0, 1.5^2) from ``torch.Generator().manual_seed(0)``.
Pair 2's chosen completion is made likely (+6 on the label token's logit) so its mean log-prob
is above -ln 2 and ORPO's ``log1mexp`` takes its ``log(-expm1(x))`` branch.

Schema of the JSON:
  description, versions
  inputs:
    batch_pairs B, seq_len T, vocab_size V, pad_token_id
    prompt_lengths, chosen_completion_lengths, rejected_completion_lengths [B]
    input_ids, attention_mask, labels [2B][T]
        rows 0..B-1 chosen, B..2B-1 rejected (TRL's concatenated layout); labels = input_ids
        with the prompt and the padding at -100
    shift_completion_mask [2B][T-1]  labels[:, 1:] != -100  (what get_batch_logps masks with)
    shift_attention_mask  [2B][T-1]  attention_mask[:, 1:]  (ORPO's NLL positions)
    token_logps [2B][T-1]  log p(input_ids[:, t+1] | ...) from log_softmax(logits[:, t]) at every
        position with shift_attention_mask == 1, else 0 (so prompt tokens are included)
    derived:
      chosen_sum_logps, rejected_sum_logps [B]   sum of token_logps over shift_completion_mask
      chosen_tokens, rejected_tokens [B]         shift_completion_mask.sum(1)
      chosen_avg_logps, rejected_avg_logps [B]   TRL's get_batch_logps(average_log_prob=True)
      completion_nll  [scalar]  CPOTrainer's nll_loss (cpo_alpha != 0): CE over the chosen rows'
                                completion tokens, token mean over the batch
                                = -sum(token_logps * shift_completion_mask)[chosen] / count
      orpo_nll        [scalar]  ORPOTrainer's chosen NLL: CE over every attended token of the
                                chosen rows (prompt included), token mean over the batch
                                = -sum(token_logps * shift_attention_mask)[chosen] / count
  simpo_cases: [ {name, config (CPOConfig kwargs), beta, simpo_gamma, label_smoothing,
                  chosen_avg_logps, rejected_avg_logps [B] (as concatenated_forward returned them),
                  logits [B] (avg_c - avg_r - gamma/beta, as cpo_loss forms them),
                  per_pair_loss [B] (cpo_loss's losses),
                  loss (= mean(per_pair_loss): get_batch_loss_metrics with cpo_alpha=0),
                  loss_cpo_alpha_1 (get_batch_loss_metrics with cpo_alpha=1, CPOConfig's default:
                                    loss + completion_nll),
                  nll_loss_cpo_alpha_1 (the nll_loss that run used), metrics (cpo_alpha=0 run)} ]
  orpo_cases: [ {name, config (ORPOConfig kwargs), beta,
                 chosen_avg_logps, rejected_avg_logps [B],
                 log_odds [B], log_sigmoid_log_odds [B],
                 odds_ratio_term [B] (odds_ratio_loss's `losses` = beta * log sigmoid(log_odds)),
                 nll (the chosen NLL concatenated_forward returned = inputs.derived.orpo_nll),
                 per_pair_loss [B] = nll - odds_ratio_term (so mean(per_pair_loss) == loss),
                 loss (get_batch_loss_metrics: nll - mean(odds_ratio_term)), metrics} ]
"""

from __future__ import annotations

import math
import sys
import tempfile

import torch

from common import EXPECTED_DIR, ROOT, dump, versions

OUT = EXPECTED_DIR / "dpo" / "reference_free_losses.json"

B, T, V, PAD = 4, 12, 11, 0
# (prompt length, chosen completion length, rejected completion length)
PAIRS = [(3, 5, 8), (4, 7, 2), (2, 3, 9), (5, 7, 4)]
BOOSTED_CHOSEN_PAIR = 2

SIMPO_CASES = [
    # name, beta, simpo_gamma, label_smoothing
    ("simpo_cpo_defaults", 0.1, 0.5, 0.0),
    ("simpo_paper", 2.0, 0.5, 0.0),
    ("simpo_beta2.5_gamma1.375", 2.5, 1.375, 0.0),
    ("simpo_gamma0", 2.0, 0.0, 0.0),
    ("simpo_ls0.1", 2.0, 0.5, 0.1),
    ("simpo_beta10_gamma3_ls0.3", 10.0, 3.0, 0.3),
]
ORPO_BETAS = [0.1, 0.05, 0.5, 1.0, 2.0]


def _floats(t: torch.Tensor):
    return [float(x) for x in t.detach().reshape(-1).tolist()] if t.dim() <= 1 else [
        _floats(r) for r in t.detach()
    ]


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather_for_metrics(x):
        return x


class _FakeLM(torch.nn.Module):
    """Returns the fixed logits whatever the input (checks that TRL passes the batch we built)."""

    def __init__(self, logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        super().__init__()
        self.logits, self.input_ids, self.attention_mask = logits, input_ids, attention_mask

    def forward(self, input_ids, attention_mask=None, use_cache=None, **kwargs):
        assert not kwargs, kwargs
        assert torch.equal(input_ids, self.input_ids) and torch.equal(attention_mask, self.attention_mask)

        class Out:
            pass

        out = Out()
        out.logits = self.logits.clone()
        return out


def build_batch():
    g = torch.Generator().manual_seed(0)
    input_ids = torch.full((2 * B, T), PAD, dtype=torch.long)
    attention_mask = torch.zeros((2 * B, T), dtype=torch.long)
    labels = torch.full((2 * B, T), -100, dtype=torch.long)
    for i, (p, c, r) in enumerate(PAIRS):
        prompt = torch.randint(1, V, (p,), generator=g)
        for row, n in ((i, c), (B + i, r)):
            completion = torch.randint(1, V, (n,), generator=g)
            assert p + n <= T
            input_ids[row, : p + n] = torch.cat([prompt, completion])
            attention_mask[row, : p + n] = 1
            labels[row, p : p + n] = completion
    logits = torch.randn((2 * B, T, V), generator=g) * 1.5
    # make pair 2's chosen completion likely: its mean log-prob ends above -ln 2
    p, c, _ = PAIRS[BOOSTED_CHOSEN_PAIR]
    for t in range(p - 1, p + c - 1):
        logits[BOOSTED_CHOSEN_PAIR, t, input_ids[BOOSTED_CHOSEN_PAIR, t + 1]] += 6.0
    batch = {
        "chosen_input_ids": input_ids[:B].clone(),
        "chosen_attention_mask": attention_mask[:B].clone(),
        "chosen_labels": labels[:B].clone(),
        "rejected_input_ids": input_ids[B:].clone(),
        "rejected_attention_mask": attention_mask[B:].clone(),
        "rejected_labels": labels[B:].clone(),
    }
    return input_ids, attention_mask, labels, logits, batch


def cpo_trainer(config):
    from trl.experimental.cpo import CPOTrainer

    self = CPOTrainer.__new__(CPOTrainer)
    # exactly what CPOTrainer.__init__ sets from args (cpo_trainer.py, "self.beta = args.beta" ...)
    self.is_encoder_decoder = False
    self.pad_token_id = PAD
    self.beta = config.beta
    self.label_smoothing = config.label_smoothing
    self.loss_type = config.loss_type
    self.cpo_alpha = config.cpo_alpha
    self.aux_loss_enabled = False
    self.aux_loss_coef = 0.0
    if config.loss_type == "simpo":
        self.simpo_gamma = config.simpo_gamma
    self.alpha = config.alpha
    self.accelerator = _Accelerator()
    return self


def orpo_trainer(config):
    from trl.experimental.orpo import ORPOTrainer

    self = ORPOTrainer.__new__(ORPOTrainer)
    self.is_encoder_decoder = False
    self.padding_value = config.padding_value if config.padding_value is not None else PAD
    self.beta = config.beta
    self.aux_loss_enabled = False
    self.aux_loss_coef = 0.0
    self.accelerator = _Accelerator()
    return self


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    from trl.trainer.utils import selective_log_softmax

    input_ids, attention_mask, labels, logits, batch = build_batch()
    model = _FakeLM(logits, input_ids, attention_mask)

    # per-token log-probs at every attended shifted position (prompt included)
    shift_attn = attention_mask[:, 1:]
    shift_comp = (labels[:, 1:] != -100).long()
    token_logps = selective_log_softmax(logits[:, :-1, :], input_ids[:, 1:]) * shift_attn
    comp_sum = (token_logps * shift_comp).sum(-1)
    tokens = shift_comp.sum(-1)
    chosen = slice(0, B)
    completion_nll = -(token_logps * shift_comp)[chosen].sum() / shift_comp[chosen].sum()
    full_nll = -(token_logps * shift_attn)[chosen].sum() / shift_attn[chosen].sum()

    with tempfile.TemporaryDirectory() as tmp:
        _run(dict(output_dir=tmp, report_to="none", bf16=False), model, batch, input_ids, attention_mask,
             labels, logits, token_logps, shift_comp, shift_attn, comp_sum, tokens, completion_nll, full_nll)


def _run(common, model, batch, input_ids, attention_mask, labels, logits, token_logps, shift_comp, shift_attn,
         comp_sum, tokens, completion_nll, full_nll):
    """Runs the TRL trainers' methods and writes the fixture (`common`: config kwargs shared by all cases)."""
    from trl.experimental.cpo import CPOConfig
    from trl.experimental.orpo import ORPOConfig
    from trl.experimental.orpo.orpo_trainer import log1mexp

    simpo_cases = []
    avg_ref = None
    cpo_nll = None
    for name, beta, gamma, ls in SIMPO_CASES:
        kwargs = dict(loss_type="simpo", beta=beta, simpo_gamma=gamma, label_smoothing=ls, cpo_alpha=0.0)
        trainer = cpo_trainer(CPOConfig(**common, **kwargs))
        with torch.no_grad():
            c_avg, r_avg, _, _, nll0 = trainer.concatenated_forward(model, batch)
            losses, _, _ = trainer.cpo_loss(c_avg, r_avg)
            loss, metrics = trainer.get_batch_loss_metrics(model, batch)
            trainer1 = cpo_trainer(CPOConfig(**common, **{**kwargs, "cpo_alpha": 1.0}))
            *_, nll1 = trainer1.concatenated_forward(model, batch)
            loss1, _ = trainer1.get_batch_loss_metrics(model, batch)
        assert float(nll0) == 0.0
        assert torch.equal(loss, losses.mean())
        if avg_ref is None:
            avg_ref, cpo_nll = (c_avg.clone(), r_avg.clone()), float(nll1)
        simpo_cases.append(
            {
                "name": name,
                "config": kwargs,
                "beta": beta,
                "simpo_gamma": gamma,
                "label_smoothing": ls,
                "chosen_avg_logps": _floats(c_avg),
                "rejected_avg_logps": _floats(r_avg),
                "logits": _floats(c_avg - r_avg - gamma / beta),
                "per_pair_loss": _floats(losses),
                "loss": float(loss),
                "loss_cpo_alpha_1": float(loss1),
                "nll_loss_cpo_alpha_1": float(nll1),
                "metrics": metrics,
            }
        )

    orpo_cases = []
    orpo_nll = None
    for beta in ORPO_BETAS:
        kwargs = dict(beta=beta)
        trainer = orpo_trainer(ORPOConfig(**common, **kwargs))
        with torch.no_grad():
            c_avg, r_avg, _, _, nll = trainer.concatenated_forward(model, batch)
            terms, _, _, _, _ = trainer.odds_ratio_loss(c_avg, r_avg)
            loss, metrics = trainer.get_batch_loss_metrics(model, batch)
        log_odds = (c_avg - r_avg) - (log1mexp(c_avg) - log1mexp(r_avg))
        assert torch.equal(terms, beta * torch.nn.functional.logsigmoid(log_odds))
        assert torch.equal(c_avg, avg_ref[0]) and torch.equal(r_avg, avg_ref[1])
        orpo_nll = float(nll)
        orpo_cases.append(
            {
                "name": f"orpo_beta{beta}",
                "config": kwargs,
                "beta": beta,
                "chosen_avg_logps": _floats(c_avg),
                "rejected_avg_logps": _floats(r_avg),
                "log_odds": _floats(log_odds),
                "log_sigmoid_log_odds": _floats(torch.nn.functional.logsigmoid(log_odds)),
                "odds_ratio_term": _floats(terms),
                "nll": float(nll),
                "per_pair_loss": _floats(nll - terms),
                "loss": float(loss),
                "metrics": {k: float(v) for k, v in metrics.items()},
            }
        )

    # the derived values agree with what TRL's trainers computed
    assert torch.allclose(comp_sum / tokens, torch.cat(avg_ref), rtol=1e-6, atol=0)
    assert math.isclose(float(completion_nll), cpo_nll, rel_tol=1e-6), (float(completion_nll), cpo_nll)
    assert math.isclose(float(full_nll), orpo_nll, rel_tol=1e-6), (float(full_nll), orpo_nll)
    assert float(avg_ref[0][BOOSTED_CHOSEN_PAIR]) > -math.log(2.0)

    fixture = {
        "description": "TRL 1.16 reference-free objectives on one fixed batch (B=4 pairs, T=12, V=11, fake LM "
        "logits): SimPO via trl.experimental.cpo.CPOTrainer(loss_type='simpo'), ORPO via "
        "trl.experimental.orpo.ORPOTrainer; see the docstring of reference/reference_free_reference.py "
        "for the schema",
        "versions": versions(with_datasets=False),
        "inputs": {
            "batch_pairs": B,
            "seq_len": T,
            "vocab_size": V,
            "pad_token_id": PAD,
            "prompt_lengths": [p for p, _, _ in PAIRS],
            "chosen_completion_lengths": [c for _, c, _ in PAIRS],
            "rejected_completion_lengths": [r for _, _, r in PAIRS],
            "input_ids": input_ids.tolist(),
            "attention_mask": attention_mask.tolist(),
            "labels": labels.tolist(),
            "shift_completion_mask": shift_comp.tolist(),
            "shift_attention_mask": shift_attn.tolist(),
            "token_logps": _floats(token_logps),
            "derived": {
                "chosen_sum_logps": _floats(comp_sum[:B]),
                "rejected_sum_logps": _floats(comp_sum[B:]),
                "chosen_tokens": tokens[:B].tolist(),
                "rejected_tokens": tokens[B:].tolist(),
                "chosen_avg_logps": _floats(avg_ref[0]),
                "rejected_avg_logps": _floats(avg_ref[1]),
                "completion_nll": cpo_nll,
                "orpo_nll": orpo_nll,
            },
        },
        "simpo_cases": simpo_cases,
        "orpo_cases": orpo_cases,
    }
    OUT.write_text(dump(fixture))
    print(f"wrote {OUT.relative_to(ROOT)}: {len(simpo_cases)} simpo, {len(orpo_cases)} orpo cases", file=sys.stderr)


if __name__ == "__main__":
    main()
