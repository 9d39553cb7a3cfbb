#!/usr/bin/env python3
"""Reference numbers for trl-rs's built-in GRPO/RLOO reward functions (``crates/trl-grpo/src/rewards``),
produced by calling TRL 1.16's own ``trl.rewards`` functions.

    .venv-reference/bin/python reference/rewards_reference.py     # writes fixtures/expected/grpo_rewards.json

Pinned environment: torch 2.15 (CPU), transformers 5.23.0, trl 1.16.0 plus ``math-verify[antlr4_13_2]==0.9.0``
(TRL's ``math-verify`` extra, which ``accuracy_reward`` and ``reasoning_accuracy_reward`` need); see
requirements.txt.  No training: the functions are called directly on a table of completions, in the main thread (so math_verify's
signal-based timeouts are on, as in a single-process ``trl grpo`` run), and the fixture reward model scores a
few prompt + completion pairs as GRPOTrainer scores them.

Output schema (``fixtures/expected/grpo_rewards.json``)
-------------------------------------------------------
    generated_by, versions   this script; trl / math_verify / latex2sympy2_extended / sympy versions
    text_cases               [{completion, solution, accuracy_reward, reasoning_accuracy_reward,
                               think_format_reward}]: each function called with the completion as a
                              conversational completion ``[{"role": "assistant", "content": completion}]``
                              (what TRL's built-ins read: ``completion[0]["content"]``); ``null`` is TRL's
                              ``None`` ("no reward")
    grid_cases               [[completion, solution, accuracy_reward]]: a fixed sample of GRID_ANSWERS x
                              GRID_TEMPLATES x GRID_GOLDS, each answer also with a gold of the same value
                              (same conversational call)
    length_cases             [{completion_ids, soft_overlong_punishment, repetition_penalty}]:
                              ``soft_overlong_punishment`` holds one value per entry of ``soft_overlong_params``,
                              ``repetition_penalty`` one per entry of ``repetition_params``
    soft_overlong_params     [{max_completion_len, soft_punish_cache}] given to ``get_soft_overlong_punishment``
    repetition_params        [{ngram_size, max_penalty}] given to ``get_repetition_penalty_reward``
    cosine_params            {max_len} given to ``get_cosine_scaled_reward`` (other arguments at their defaults)
    cosine_cases             [{completion, solution, length, cosine_scaled_reward}]: completion ids are
                              ``length`` ones
    reward_model             a reward model as a reward function (``fixtures/models/tiny-qwen2-rm``, fp32,
                              eager), scored the way ``GRPOTrainer._calculate_rewards`` scores an ``nn.Module``
                              (grpo_trainer.py:1605-1620): ``{model, standard: [...], conversational: [...]}``,
                              each entry ``{prompt, completion, text, input_ids, score}``; ``text`` is
                              ``prompt + completion`` (standard) or ``trl.data_utils.apply_chat_template``
                              of ``{"messages": prompt + completion}`` (conversational); each list is one
                              right-padded batch tokenized without special tokens; ``score`` is ``logits[:, 0]``
"""

from __future__ import annotations

import json

from common import EXPECTED_DIR, ROOT, dump, init_libraries

OUT = EXPECTED_DIR / "grpo_rewards.json"

# (completion, solution): plain numbers, fractions, \boxed, \frac/\dfrac, percentages, negative numbers,
# missing answers, unparseable gold answers, think tags right and wrong.
TEXT_CASES = [
    (r"The answer is \boxed{42}", "42"),
    (r"\boxed{41}", "42"),
    (r"So x = \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\boxed{0.5}", r"\frac{1}{2}"),
    (r"\boxed{\dfrac{1}{2}}", "1/2"),
    (r"\boxed{-3}", "-3"),
    (r"\boxed{3}", "-3"),
    (r"The answer is $\frac{3}{4}$.", "0.75"),
    (r"The final answer is $12$. I hope it is correct.", "12"),
    ("I think it's 42", "42"),
    ("answer: 42", "42"),
    (r"\boxed{50\%}", "50%"),
    (r"\boxed{50}", r"50\%"),
    (r"\boxed{0.5}", "50%"),
    (r"\boxed{1,000}", "1000"),
    (r"\boxed{1000}", "1,000"),
    ("no boxed answer here", "7"),
    (r"\boxed{7}", "seven"),
    (r"\boxed{7}", ""),
    (r"\boxed{\sqrt{2}}", r"$\sqrt{2}$"),
    (r"\boxed{\sqrt{2}}", r"\sqrt{2}"),
    (r"<think>2+2</think> The answer is \boxed{4}", "4"),
    (r"<think>2+2 is \boxed{4} but I never close", "4"),
    (r"<think>a</think><think>b</think> \boxed{4}", "4"),
    (r"First \boxed{3} then \boxed{5}", "5"),
    (r"\boxed{2+3}", "5"),
    (r"\boxed{x = 5}", "5"),
    (r"\boxed{5 \text{ apples}}", "5"),
    (r"\boxed{3.14159}", "3.14159"),
    (r"\boxed{0.333333}", r"\frac{1}{3}"),
    (r"\boxed{\frac{2}{4}}", r"\frac{1}{2}"),
    ("<think>\nreasoning\n</think>\nanswer", "1"),
    ("<think>a<think>b</think>", "1"),
    (" <think>a</think>", "1"),
    (r"The answer is \(\frac{1}{3}\)", r"\frac13"),
    (r"\boxed{-\frac{1}{2}}", "-0.5"),
    (r"$\boxed{12}$ and more", "12"),
    (r"\boxed{2^{3}}", "8"),
    (r"\boxed{3 \cdot 4}", "12"),
    (r"\boxed{10}", r"\boxed{10}"),
    (r"The answer is $-7$", r"$-7$"),
    (r"\boxed{\frac{-1}{2}}", r"-\frac{1}{2}"),
    (r"\boxed{1.5}", "3/2"),
    (r"\boxed{\tfrac{3}{2}}", "1.5"),
    (r"\boxed{12}", "The answer is 12."),
    (r"\boxed{2}", "1/2"),
    (r"The final answer is $\boxed{3}$", "3"),
    (r"\boxed{\pi}", r"$\pi$"),
    (r"\boxed{2\pi}", r"$\pi$"),
    (r"\boxed{1/2}", "0.5"),
    (r"\boxed{12.0}", "12"),
    (r"\boxed{10^{3}}", "1000"),
    (r"\boxed{\$5}", "5"),
    (r"\boxed{\left(\frac{1}{2}\right)}", "1/2"),
    (r"**Answer:** $7$", "7"),
    (r"\boxed{7 \text{ cm}}", "7"),
    (r"\boxed{3.5\%}", "0.035"),
    (r"\boxed{0.035}", "3.5%"),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"$\frac{\sqrt{3}}{2}$"),
    (r"\boxed{x^2}", r"$x^2$"),
    (r"\boxed{1,2,3}", "$3,2,1$"),
    (r"The answer is \boxed{5} or \boxed{6}", "6"),
    ("First, 5.\n\nFinal answer: \\boxed{8}", "8"),
    (r"\boxed{0.1 + 0.2}", "0.3"),
    (r"\boxed{2/3}", r"\frac{2}{3}"),
    (r"\boxed{0.6667}", r"\frac{2}{3}"),
    (r"\boxed{\dfrac{6}{4}}", "1.5"),
    (r"\boxed{-\dfrac{3}{4}}", "-0.75"),
    (r"The answer: $\frac{1}{2}$ and more text", r"\frac{1}{2}"),
    (r"answer is \frac{5}{2}", "2.5"),
    (r"\boxed{5}", "$5$ apples"),
    (r"\boxed{\text{(B)}}", "B"),
    (r"\boxed{2, 3}", "2"),
    (r"<think>\boxed{1}</think>\boxed{2}", "2"),
    (r"<think>\boxed{1}</think> no answer", "1"),
    (r"\boxed{\frac{1}{2}} \text{ of } \boxed{8}", "4"),
    (r"\boxed{007}", "7"),
    (r"\boxed{1\,000}", "1000"),
    (r"Final answer: $3:4$", "3/4"),
    (r"The answer is \boxed{(1, 2)}", "$1,2$"),
    (r"The answer is \boxed{\{1,2\}}", "$(1,2)$"),
    (r"answer: \[\textbf{5}\]", "5"),
    (r"The final answer is $5^\circ$. I hope it is correct.", "5"),
    (r"\boxed{[0, 1)}", "[0,1)"),
    (r"\boxed{(0, 1]}", "[0,1)"),
]

# A grid of answer forms x completion templates x gold forms (a fixed sample of it): breadth
# beyond the hand-picked cases above. Bare words (`two` vs `\text{two}`) are left out: sympy
# compares such symbols, trl-rs compares their strings (see rewards/math/mod.rs).
GRID_ANSWERS = [  # (answer as written, a gold answer of the same value written differently)
    ("42", "42"), ("-3", "$-3$"), ("0.5", "1/2"), (r"\frac{1}{2}", "0.5"), (r"\dfrac{3}{4}", "0.75"),
    ("50\\%", "50%"), ("1,000", "1000"), ("3.14", "3.140"), (r"\sqrt{2}", r"$\sqrt{2}$"),
    (r"2\sqrt{2}", r"$\sqrt{8}$"), ("x = 7", "7"), ("7", r"\boxed{7}"), (r"\frac{7}{1}", "7"),
    ("0.75", "3/4"), ("1/2", r"\frac{1}{2}"), (r"10^{2}", "100"), ("(1, 2)", "$1,2$"), ("1, 2", "$2, 1$"),
    (r"\pi", r"$\pi$"), (r"\infty", r"$\infty$"), ("-0.5", r"-\frac{1}{2}"), ("12.50", "12.5"),
    (r"\text{(C)}", "C"), ("C", "C"), (r"7\text{ cm}", "7"), (r"\$7", "7"), ("7.0", "7"),
    (r"\frac{-3}{4}", "-0.75"), (r"-\frac{3}{4}", r"\frac{-3}{4}"), ("3:4", "0.75"), (r"x^2+1", r"$x^2+1$"),
    ("2+2", "4"), (r"\{1,2\}", "$(1,2)$"), ("[1, 2]", "$[1,2]$"), ("0.333", r"\frac{1}{3}"),
    (r"\frac{1}{3}", "1/3"), ("5%", "0.05"), ("0.05", "5%"), (r"\frac{5}{100}", "0.05"),
    (r"3 \times 4", "12"), ("[0, 1)", "$[0,1)$"), (r"\dfrac{10}{4}", "2.5"), (r"\mathbf{5}", "5"),
    (r"90^{\circ}", "90"), ("-.5", "-0.5"), ("005", "5"),
]
GRID_TEMPLATES = [
    r"The answer is \boxed{%s}", r"So we get $%s$.", r"Final answer: $%s$",
    r"The final answer is $%s$. I hope it is correct.", r"Thus \(%s\) is the answer", "The answer is %s",
    r"$$%s$$", r"answer: \[%s\]", r"\boxed{%s} or \boxed{9}", r"<think>hmm</think>\boxed{%s}",
]
GRID_GOLDS = [
    "42", "-3", "0.5", r"\frac{1}{2}", "3/4", "50%", "1000", "3.14", r"$\sqrt{2}$", "7", "$7$",
    r"\boxed{7}", "0.75", r"$\frac{1}{3}$", "100", "$(1,2)$", "$1,2$", r"$\pi$", "-0.5", "12.5", "C",
    r"$x^2+1$", "4", "1/3", r"\frac{-3}{4}", "answer: 7", "seven", "", "0.05", "5", "2.5", "12",
    "[0,1)", "90", ".5",
]

LENGTHS = [0, 1, 2, 3, 5, 8, 10, 12, 16, 20]
SOFT_OVERLONG_PARAMS = [
    {"max_completion_len": 10, "soft_punish_cache": 4},
    {"max_completion_len": 16, "soft_punish_cache": 0},
    {"max_completion_len": 1280, "soft_punish_cache": 256},
]
REPETITION_PARAMS = [{"ngram_size": 3, "max_penalty": -1.0}, {"ngram_size": 2, "max_penalty": -0.5}]
ID_CASES = [
    [],
    [7],
    [1, 2],
    [1, 2, 3],
    [5, 5, 5, 5, 5],
    [1, 2, 3, 4, 5, 6, 7, 8],
    [1, 2, 1, 2, 1, 2, 1, 2, 1, 2],
    [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8],
    [9] * 16,
    list(range(20)),
]
COSINE_PARAMS = {"max_len": 10}
COSINE_CASES = [
    (r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 0),
    (r"\boxed{\frac{1}{3}}", r"\frac{1}{3}", 5),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", 5),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{3}", 3),
    (r"\boxed{4}", "4", 14),
    (r"\boxed{4}", "seven", 5),
]


REWARD_MODEL = "fixtures/models/tiny-qwen2-rm"
STANDARD_PAIRS = [
    ("Q: 2+2?\nA:", " 4"),
    ("Q: 2+2?\nA:", " five, I think, or maybe more"),
    ("Tell me a story.", " Once upon a time there was a tiny model."),
]
CONVERSATIONAL_PAIRS = [
    ([{"role": "user", "content": "What is 2+2?"}], [{"role": "assistant", "content": "4"}]),
    ([{"role": "user", "content": "What is 2+2?"}], [{"role": "assistant", "content": "It is five."}]),
    (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a color."}],
        [{"role": "assistant", "content": "Blue, like the sky on a clear day."}],
    ),
]


def reward_model_cases() -> dict:
    """What ``_calculate_rewards`` computes for a reward model, step by step (its code, with the
    trainer's attributes replaced by the values a fresh GRPOTrainer would hold)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.data_utils import apply_chat_template

    torch.set_num_threads(1)
    path = ROOT / REWARD_MODEL
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:  # GRPOTrainer.__init__
        tokenizer.pad_token = tokenizer.eos_token
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id

    def score(pairs, conversational):
        prompts = [p for p, _ in pairs]
        completions = [c for _, c in pairs]
        if conversational:
            texts = [apply_chat_template({"messages": p + c}, tokenizer)["text"] for p, c in pairs]
        else:
            texts = [p + c for p, c in pairs]
        inputs = tokenizer(text=texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
        with torch.inference_mode():
            scores = model(**inputs).logits[:, 0].tolist()
        ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        return [
            {"prompt": p, "completion": c, "text": t, "input_ids": i, "score": s}
            for p, c, t, i, s in zip(prompts, completions, texts, ids, scores, strict=True)
        ]

    return {
        "model": REWARD_MODEL,
        "standard": score(STANDARD_PAIRS, conversational=False),
        "conversational": score(CONVERSATIONAL_PAIRS, conversational=True),
    }


def grid_cases(accuracy_reward) -> list[list]:
    """[completion, solution, accuracy_reward] for 4 templates x (its same-value gold + 5 others) of
    every answer form."""
    import random

    rng = random.Random(0)
    rows = []
    for answer, same in GRID_ANSWERS:
        for template in rng.sample(GRID_TEMPLATES, 4):
            for gold in [same, *rng.sample(GRID_GOLDS, 5)]:
                completion = template % answer
                reward = accuracy_reward([conversational(completion)], [gold])[0]
                rows.append([completion, gold, reward])
    return rows


def conversational(completion: str) -> list[dict]:
    return [{"role": "assistant", "content": completion}]


def main() -> None:
    init_libraries(transformers_progress_bar=False)
    from importlib.metadata import version

    from trl.rewards import (
        accuracy_reward,
        get_cosine_scaled_reward,
        get_repetition_penalty_reward,
        get_soft_overlong_punishment,
        reasoning_accuracy_reward,
        think_format_reward,
    )

    text_cases = []
    for completion, solution in TEXT_CASES:
        completions, solutions = [conversational(completion)], [solution]
        text_cases.append(
            {
                "completion": completion,
                "solution": solution,
                "accuracy_reward": accuracy_reward(completions, solutions)[0],
                "reasoning_accuracy_reward": reasoning_accuracy_reward(completions, solutions)[0],
                "think_format_reward": think_format_reward(completions)[0],
            }
        )

    soft = [get_soft_overlong_punishment(**p) for p in SOFT_OVERLONG_PARAMS]
    repetition = [get_repetition_penalty_reward(**p) for p in REPETITION_PARAMS]
    length_cases = [
        {
            "completion_ids": ids,
            "soft_overlong_punishment": [f([ids])[0] for f in soft],
            "repetition_penalty": [f([ids])[0] for f in repetition],
        }
        for ids in ID_CASES
    ]
    # Lengths alone matter to the soft overlong punishment: every length of LENGTHS as ones.
    length_cases += [
        {
            "completion_ids": [1] * n,
            "soft_overlong_punishment": [f([[1] * n])[0] for f in soft],
            "repetition_penalty": [f([[1] * n])[0] for f in repetition],
        }
        for n in LENGTHS
    ]

    cosine = get_cosine_scaled_reward(**COSINE_PARAMS)
    cosine_cases = [
        {
            "completion": completion,
            "solution": solution,
            "length": length,
            "cosine_scaled_reward": cosine([conversational(completion)], [solution], [[1] * length])[0],
        }
        for completion, solution, length in COSINE_CASES
    ]

    fixture = {
        "generated_by": "reference/rewards_reference.py",
        "versions": {
            name: version(name) for name in ("trl", "math-verify", "latex2sympy2_extended", "sympy")
        },
        "text_cases": text_cases,
        "grid_cases": grid_cases(accuracy_reward),
        "soft_overlong_params": SOFT_OVERLONG_PARAMS,
        "repetition_params": REPETITION_PARAMS,
        "length_cases": length_cases,
        "cosine_params": COSINE_PARAMS,
        "cosine_cases": cosine_cases,
        "reward_model": reward_model_cases(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dump(fixture), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    json.loads(OUT.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
