"""Hooks that record what TRL's ``GRPOTrainer`` / ``RLOOTrainer`` generated and computed, for ``grpo_reference.py``.

``recording_trainer(cls, recorder)`` subclasses a trainer class; the subclass calls TRL's own methods and copies
their inputs / outputs into ``recorder`` (nothing is recomputed here).  TRL's ``shuffle_sequence_dict`` (used by
``_prepare_inputs`` to shuffle a generation batch before splitting it into ``steps_per_generation`` slices) is
wrapped to learn its permutation; the wrapper draws the same single ``torch.randperm``.

Schema of one case in ``fixtures/expected/grpo/replay.json`` (``cases.<name>``)
------------------------------------------------------------------------------------------------------
trainer            "GRPOTrainer" | "RLOOTrainer"
dataset            jsonl path (repository-relative); the first ``dataset_rows`` rows were the train dataset
reward_funcs       reward function names (TRL's ``reward_func_names``: the functions' ``__name__``), in order
args               GRPOConfig / RLOOConfig keyword arguments given (everything else is TRL's default)
resolved_config    config values after ``__post_init__`` (generation_batch_size, steps_per_generation, epsilon...)
eos_token_ids      TRL's ``eos_token_ids``: generation stops at any of them; a completion whose last id is one of
                   them or ``pad_token_id`` counts as terminated, any other as truncated
pad_token_id       pad id: prompts are left-padded with it, completions right-padded
reference_model    whether a frozen reference model was loaded (beta != 0)
generations        one entry per call of ``_generate_and_score_completions``, i.e. per generation batch of
                   B = generation_batch_size rows, in TRL's (RepeatSampler) order: rows 4g..4g+3 share a prompt
  prompt_indices   [B]  row of the train dataset (0-based) each row's prompt came from
  prompt_text      [B]  the prompt as TRL tokenized it: the dataset text as is (standard), or
                        ``apply_chat_template(messages, add_generation_prompt=True, tokenize=False)``
                        (conversational); tokenizing it without special tokens gives ``prompt_ids``
  prompt_ids       [B][P_i]  prompt ids, no padding
  completion_ids   [B][C_i]  ids TRL generated, up to and including the first EOS id (when there is one), no
                        padding; C_i <= max_completion_length.  A pad id can appear inside (a sampled token).
  completion_text  [B]  TRL's decoding (skip_special_tokens), what string reward functions see
  is_truncated     [B]  last completion id not in eos_token_ids + [pad_token_id]
  completion_mask_sums [B]  sum of TRL's completion_mask per row (C_i, or 0 for a truncated row when
                        mask_truncated_completions)
  completion_width  padded completion width of the batch (max C_i); every per-token tensor TRL built was this wide
  rewards_per_func [B][n_funcs]  each reward function's raw output (float32)
  advantages       [B]  TRL's advantages (float32)
  num_items_in_batch   GRPO only: sum of completion_mask over the generation batch
  old_per_token_logps  [B][C_i]  present when TRL computed them at generation time (GRPO: when
                        gradient_accumulation_steps % (steps_per_generation * num_iterations) != 0; RLOO: always)
  ref_per_token_logps  [B][C_i]  reference model's per-token log-probs (beta != 0)
  old_logps        [B]  RLOO only: old_per_token_logps * completion_mask summed per row (what its loss uses)
steps              one entry per optimizer step (gradient_accumulation_steps is 1: one micro-batch per step)
  global_step      0-based index of the step
  generation       index into ``generations`` of the batch this step's rows come from
  rows             [per_device_train_batch_size] row indices into that generation batch, in micro-batch order
                   (TRL shuffles a generation batch, then cuts it into steps_per_generation slices)
  loss             the value ``compute_loss`` returned (before backward)
  per_token_logps  [rows][C_row]  policy log-probs of the training forward (with grad), per-token, trimmed to C
  entropy          [rows][C_row]  per-token entropies of the same forward
log_history        ``trainer.state.log_history``; wall-clock keys null; metrics logged at a step are the mean of
                   the values appended since the previous log (generation metrics only on generation steps)
param_norms_initial / param_norms_final / param_update_norms   per parameter name: L2 norm of the initial
                   weights, of the final weights, and of (final - initial), fp64 from the fp32 values
"""

from __future__ import annotations

import json

_LAST_PERM: list = []


def f32(t) -> list | float:
    """A float32 tensor as nested lists of the shortest float32 round-trip decimal strings' values."""
    import numpy as np

    arr = t.detach().float().cpu().numpy()
    flat = [float(str(x)) for x in arr.ravel()]
    out = np.empty(arr.shape, dtype=object)
    out.ravel()[:] = flat
    return out.tolist()


def _patch_shuffle() -> None:
    """Wraps ``shuffle_sequence_dict`` in TRL's trainer modules so that its permutation lands in ``_LAST_PERM``."""
    import torch
    import trl.trainer.grpo_trainer as grpo
    import trl.trainer.rloo_trainer as rloo

    for module in (grpo, rloo):
        original = module.shuffle_sequence_dict
        if getattr(original, "_recording", False):
            continue

        def recording(seq_dict, _original=original):
            n = len(next(v for v in seq_dict.values() if v is not None))
            shuffled = _original({**seq_dict, "__row": torch.arange(n)})
            _LAST_PERM[:] = shuffled.pop("__row").tolist()
            return shuffled

        recording._recording = True
        module.shuffle_sequence_dict = recording


class Recorder:
    """What the hooks collected during one training run."""

    def __init__(self, rows: list[dict]):
        self.index = {json.dumps(r["prompt"], sort_keys=True): i for i, r in enumerate(rows)}
        assert len(self.index) == len(rows), "prompts must be unique to map them back to dataset rows"
        self.generations: list[dict] = []
        self.steps: list[dict] = []
        self.perm: list[int] = []

    def result(self) -> dict:
        return {"generations": self.generations, "steps": self.steps}

    def trim(self, t, lengths) -> list:
        """Per-token tensor [N, width] -> per-row lists cut to ``lengths``."""
        return [row[:n] for row, n in zip(f32(t), lengths, strict=True)]


def _prompt_text(tokenizer, prompt, prompt_ids) -> str:
    if isinstance(prompt, str):
        text = prompt
    else:
        text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == list(prompt_ids), "prompt text does not round-trip"
    return text


def recording_trainer(base, recorder: Recorder):
    """A subclass of ``base`` (GRPOTrainer or RLOOTrainer) that fills ``recorder``."""
    _patch_shuffle()

    class Recording(base):
        def _generate(self, prompts):
            out = super()._generate(prompts)
            prompt_ids, completion_ids = out[0], out[1]
            completions = out[3] if len(out) > 3 else out[2]
            gen = recorder.generations[-1]
            gen["prompt_text"] = [_prompt_text(self._tokenizer, p, i) for p, i in zip(prompts, prompt_ids, strict=True)]
            gen["prompt_ids"] = [list(map(int, i)) for i in prompt_ids]
            gen["completion_ids"] = [list(map(int, c)) for c in completion_ids]
            gen["completion_text"] = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
            ends = [*self.eos_token_ids, self._tokenizer.pad_token_id]
            gen["is_truncated"] = [c[-1] not in ends for c in gen["completion_ids"]]
            return out

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            out = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            recorder.generations[-1]["rewards_per_func"] = f32(out)
            return out

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, **kwargs):
            out = super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, **kwargs)
            logps, entropies = out[0], out[1]
            gen = recorder.generations[-1]
            if compute_entropy:  # the training forward of _compute_loss
                step = recorder.steps[-1]
                lengths = [len(gen["completion_ids"][r]) for r in step["rows"]]
                step["per_token_logps"] = recorder.trim(logps, lengths)
                step["entropy"] = recorder.trim(entropies, lengths)
            else:
                lengths = [len(c) for c in gen["completion_ids"]]
                key = "ref_per_token_logps" if model is self.ref_model else "old_per_token_logps"
                assert key not in gen, f"{key} computed twice"
                gen[key] = recorder.trim(logps, lengths)
            return out

        def _generate_and_score_completions(self, inputs):
            recorder.generations.append(
                {"prompt_indices": [recorder.index[json.dumps(x["prompt"], sort_keys=True)] for x in inputs]})
            out = super()._generate_and_score_completions(inputs)
            gen = recorder.generations[-1]
            gen["completion_mask_sums"] = [int(v) for v in out["completion_mask"].sum(1)]
            gen["completion_width"] = int(out["completion_ids"].size(1))
            gen["advantages"] = f32(out["advantages"])
            if "num_items_in_batch" in out:
                gen["num_items_in_batch"] = int(out["num_items_in_batch"])
            if "old_logps" in out:
                gen["old_logps"] = f32(out["old_logps"])
            return out

        def _prepare_inputs(self, generation_batch):
            count = len(recorder.generations)
            out = super()._prepare_inputs(generation_batch)
            if len(recorder.generations) != count:  # a new generation batch was shuffled and split
                recorder.perm = list(_LAST_PERM)
            size = self.args.per_device_train_batch_size
            k = self._step % self.args.steps_per_generation
            rows = recorder.perm[k * size:(k + 1) * size]
            recorder.steps.append(
                {"global_step": self.state.global_step, "generation": len(recorder.generations) - 1, "rows": rows})
            return out

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            step = recorder.steps[-1]
            gen = recorder.generations[step["generation"]]
            got = inputs["completion_ids"].cpu().tolist()
            for ids, r in zip(got, step["rows"], strict=True):
                want = gen["completion_ids"][r]
                assert ids[: len(want)] == want, f"step {step['global_step']}: row {r} is not the batch's row"
            step["loss"] = float(loss.detach())
            return loss

    return Recording
