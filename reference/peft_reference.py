#!/usr/bin/env python3
"""Reference LoRA adapters and logits from peft for trl-rs's ``trl_core::lora``.

    .venv-reference/bin/python reference/peft_reference.py

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, peft 0.21.2 (``requirements.txt``).

Output
------
``fixtures/adapters/<case>/``: ``adapter_model.safetensors`` + ``adapter_config.json`` written by
``PeftModel.save_pretrained`` for a LoRA over a fixture model. peft initialises ``lora_B`` to
zeros (the adapter is then the identity); these adapters are built with
``init_lora_weights=False`` (B random too) so that the adapter changes every logit.

``fixtures/expected/lora/<case>.json``: the logits of base + adapter
(``PeftModel.from_pretrained(base, adapter_dir)``, fp32, eager attention) on the same two padded
batches as ``fixtures/expected/logits`` (``make_fixtures.logits_batches``), and the logits of
``merge_and_unload()`` on them, which must agree.

Cases: ``llama-qv`` (tiny-llama, peft's default targets q_proj/v_proj, r 4, alpha 8),
``qwen3-all-linear-rslora`` (tiny-qwen3, ``all-linear``, r 4, alpha 16, rsLoRA),
``mistral-mlp-lm-head`` (tiny-mistral, MLP projections + ``lm_head`` in ``modules_to_save``).

``fixtures/adapters/sft-init/`` + ``fixtures/expected/lora/sft.json``: a fresh peft adapter
(default init: ``lora_B`` zeros; ``all-linear``, r 8, alpha 16, dropout 0) over tiny-qwen2, and the
per-step ``log_history`` of TRL's ``SFTTrainer`` training it (``PeftModel.from_pretrained(...,
is_trainable=True)``) on ``datasets/text.jsonl`` with ``SFT_ARGS`` (``common.base_args``). trl-rs
runs ``trl sft --model_name_or_path fixtures/adapters/sft-init`` with the same keys.

``fixtures/expected/lora/dpo.json``: the same for TRL's ``DPOTrainer`` on
``datasets/preference.jsonl``, starting from ``sft-init``: the policy is the adapter, the
reference TRL's frozen "ref" copy of it (here equal to the base, as ``lora_B`` starts at zero).
"""

from __future__ import annotations

import shutil

from common import EXPECTED_DIR, ROOT, dump, init_libraries, versions

init_libraries()

import peft  # noqa: E402
import torch  # noqa: E402
from make_fixtures import f32_list, logits_batches  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

MODELS = ROOT / "fixtures" / "models"
ADAPTERS = ROOT / "fixtures" / "adapters"
OUT = EXPECTED_DIR / "lora"

CASES = {
    "llama-qv": dict(model="tiny-llama", r=4, lora_alpha=8, target_modules=None),
    "qwen3-all-linear-rslora": dict(
        model="tiny-qwen3", r=4, lora_alpha=16, target_modules="all-linear", use_rslora=True
    ),
    "mistral-mlp-lm-head": dict(
        model="tiny-mistral",
        r=2,
        lora_alpha=4,
        target_modules=["gate_proj", "up_proj", "down_proj"],
        modules_to_save=["lm_head"],
    ),
}


def load_base(name: str):
    return AutoModelForCausalLM.from_pretrained(
        MODELS / name, dtype=torch.float32, attn_implementation="eager"
    ).eval()


def make_adapter(case: str, spec: dict) -> None:
    torch.manual_seed(0)
    base = load_base(spec["model"])
    config = LoraConfig(
        r=spec["r"],
        lora_alpha=spec["lora_alpha"],
        lora_dropout=0.0,
        target_modules=spec["target_modules"],
        modules_to_save=spec.get("modules_to_save"),
        use_rslora=spec.get("use_rslora", False),
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    if spec.get("modules_to_save"):
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "modules_to_save" in name:
                    param.add_(torch.randn_like(param) * 0.05)
    out = ADAPTERS / case
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    # The base is named relative to the repository root; trl-rs resolves it from there too.
    cfg_path = out / "adapter_config.json"
    text = cfg_path.read_text()
    text = text.replace(str(MODELS / spec["model"]), f"fixtures/models/{spec['model']}")
    cfg_path.write_text(text)


SFT_MODEL = "tiny-qwen2"


def sft_run() -> None:
    """TRL SFT of a fresh LoRA adapter: per-step losses for trl-rs to match."""
    import tempfile

    import common
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    config = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    out = ADAPTERS / "sft-init"
    shutil.rmtree(out, ignore_errors=True)
    get_peft_model(load_base(SFT_MODEL), config).save_pretrained(out)
    cfg_path = out / "adapter_config.json"
    cfg_path.write_text(cfg_path.read_text().replace(str(MODELS / SFT_MODEL), f"fixtures/models/{SFT_MODEL}"))
    args = common.base_args()
    args.pop("model_init_kwargs")
    model = PeftModel.from_pretrained(load_base(SFT_MODEL), out, is_trainable=True)
    tok = AutoTokenizer.from_pretrained(MODELS / SFT_MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(output_dir=tmp, **args),
            train_dataset=common.load_dataset("datasets/text.jsonl"),
            processing_class=tok,
        )
        trainer.train()
    cli_args = {k: v for k, v in args.items() if k not in ("use_cpu", "bf16", "disable_tqdm", "dataloader_num_workers", "report_to", "save_strategy")}
    record = {
        "model": SFT_MODEL,
        "adapter_dir": "fixtures/adapters/sft-init",
        "dataset": "datasets/text.jsonl",
        "args": cli_args,
        "versions": {**versions(), "peft": peft.__version__},
        "log_history": common.log_history(trainer),
    }
    (OUT / "sft.json").write_text(dump(record))
    print(f"wrote {OUT / 'sft.json'}")


def dpo_run() -> None:
    """TRL DPO of the ``sft-init`` adapter: per-step losses for trl-rs to match."""
    import tempfile

    import common
    from trl import DPOConfig, DPOTrainer

    args = common.base_args()
    args.pop("model_init_kwargs")
    model = PeftModel.from_pretrained(load_base(SFT_MODEL), ADAPTERS / "sft-init", is_trainable=True)
    tok = AutoTokenizer.from_pretrained(MODELS / SFT_MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(output_dir=tmp, **args),
            train_dataset=common.load_dataset("datasets/preference.jsonl"),
            processing_class=tok,
        )
        trainer.train()
    cli_args = {k: v for k, v in args.items() if k not in ("use_cpu", "bf16", "disable_tqdm", "dataloader_num_workers", "report_to", "save_strategy")}
    record = {
        "model": SFT_MODEL,
        "adapter_dir": "fixtures/adapters/sft-init",
        "dataset": "datasets/preference.jsonl",
        "args": cli_args,
        "versions": {**versions(), "peft": peft.__version__},
        "log_history": common.log_history(trainer),
    }
    (OUT / "dpo.json").write_text(dump(record))
    print(f"wrote {OUT / 'dpo.json'}")


def logits_of(model, tok) -> dict:
    cases = {}
    for case, (input_ids, attention_mask, position_ids) in logits_batches(tok).items():
        with torch.no_grad():
            res = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        cases[case] = {
            "input_ids": input_ids.tolist(),
            "attention_mask": attention_mask.tolist(),
            "position_ids": position_ids.tolist(),
            "logits": f32_list(res.logits),  # [batch, seq, vocab]
        }
    return cases


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for case, spec in CASES.items():
        make_adapter(case, spec)
        tok = AutoTokenizer.from_pretrained(MODELS / spec["model"])
        model = PeftModel.from_pretrained(load_base(spec["model"]), ADAPTERS / case).eval()
        adapted = logits_of(model, tok)
        merged = logits_of(model.merge_and_unload(), tok)
        for name in adapted:
            a = torch.tensor(adapted[name]["logits"])
            m = torch.tensor(merged[name]["logits"])
            mask = torch.tensor(adapted[name]["attention_mask"]).bool()
            assert (a[mask] - m[mask]).abs().max() < 1e-4, case
        out = {
            "case": case,
            "model": spec["model"],
            "adapter_dir": f"fixtures/adapters/{case}",
            "note": "PeftModel.from_pretrained(base fp32 eager, adapter_dir)(input_ids, attention_mask, "
            "position_ids); compare positions with attention_mask == 1",
            "versions": {**versions(with_datasets=False), "peft": peft.__version__},
            "cases": adapted,
        }
        (OUT / f"{case}.json").write_text(dump(out))
        print(f"wrote {OUT / case}.json")
    sft_run()
    dpo_run()


if __name__ == "__main__":
    main()
