#!/usr/bin/env bash
# Data-parallel scaling over MPI (BENCHMARKS.md, "Data-parallel scaling"): SFT steps/s of
# 1 process (batch 8, every core) against `mpiexec -n 2` (batch 4 per rank, one thread per
# rank), the same global batch of 8 rows x 256 tokens, on the benchmark model of
# `cargo xtask bench` (4.2M parameters: a 16.8 MB gradient buffer per step); and the share of
# the step the gradient all-reduce took (`allreduce_time` of the log, rank 0's, which includes
# waiting for the slower rank).
#
#     cargo build --release --features mpi && bash benches/mpi_scaling.sh [STEPS]
#     TRL=target/debug/trl bash benches/mpi_scaling.sh    # another build of trl
#
# Needs mpiexec and the reference venv (for `reference/bench_trl.py make-model`, once).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-23}
warmup=3
trl=${TRL:-target/release/trl}
model=target/bench/model
data=target/bench/mpi_text.jsonl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x "$trl" ] || { echo "build first: cargo build --release --features mpi" >&2; exit 1; }
"$trl" env | grep -q "mpi: compiled in" || { echo "$trl has no mpi feature" >&2; exit 1; }
[ -f "$model/config.json" ] || .venv-reference/bin/python reference/bench_trl.py make-model --out "$model"
# 64 rows of corpus text, each longer than 256 tokens (truncated to max_length 256).
python3 - "$data" <<'PY'
import json, sys
text = open("reference/corpus.txt").read().replace("\n", " ")
with open(sys.argv[1], "w") as out:
    for i in range(64):
        out.write(json.dumps({"text": (text[i * 37:] + text)[:2400]}) + "\n")
PY
common=(sft --model_name_or_path "$model" --dataset_name "$data" --max_length 256
        --gradient_accumulation_steps 1 --learning_rate 1e-4 --logging_steps 1
        --save_strategy no --max_steps "$steps")
export TRL_RS_CACHE="$work/cache"
"$trl" "${common[@]}" --per_device_train_batch_size 8 --output_dir "$work/one" 2>/dev/null
RAYON_NUM_THREADS=1 mpiexec --allow-run-as-root --oversubscribe --bind-to none -n 2 \
    "$trl" "${common[@]}" --per_device_train_batch_size 4 --output_dir "$work/two" 2>/dev/null
python3 - "$work" "$warmup" <<'PY'
import json, statistics, sys
work, warmup = sys.argv[1], int(sys.argv[2])
def steps(run):
    log = json.load(open(f"{work}/{run}/trainer_state.json"))["log_history"]
    return [e for e in log if "step_time" in e][warmup:]
one, two = steps("one"), steps("two")
t1 = statistics.median(e["step_time"] for e in one)
t2 = statistics.median(e["step_time"] for e in two)
ar = statistics.median(e["allreduce_time"] for e in two)
print(f"measured steps: {len(one)} (after {warmup} warm-up)")
print(f"1 process  x batch 8 : {t1:.3f} s/step, {1 / t1:.2f} steps/s")
print(f"2 processes x batch 4: {t2:.3f} s/step, {1 / t2:.2f} steps/s ({t1 / t2:.2f}x)")
print(f"all-reduce of the gradients: {ar * 1000:.1f} ms/step = {100 * ar / t2:.1f}% of the 2-process step")
PY
