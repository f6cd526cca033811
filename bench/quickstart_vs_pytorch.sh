#!/usr/bin/env bash
# The quickstart end to end, side by side: `cts run configs/quickstart.yaml` and the same
# pipeline in plain PyTorch (bench/quickstart_pytorch.py, Debian's python3-torch), one after
# the other on this machine with the same threads. Prints each one's wall time (process start to
# exit), train and evaluation seconds, final class-IL accuracy, and the ratio cts / PyTorch.
# Usage: bench/quickstart_vs_pytorch.sh [THREADS]   (BUILD=build by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${1:-$(nproc)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
t0=$(date +%s.%N)
"$BUILD/cts" run configs/quickstart.yaml --set threads="$THREADS" --out "$out/cts" --progress none > "$out/cts.log" 2>&1
t1=$(date +%s.%N)
/usr/bin/python3 bench/quickstart_pytorch.py --threads "$THREADS" > "$out/py.json"
t2=$(date +%s.%N)
/usr/bin/python3 - "$out" "$t0" "$t1" "$t2" "$THREADS" <<'PY'
import json, sys
out, t0, t1, t2, threads = sys.argv[1], *map(float, sys.argv[2:5]), sys.argv[5]
m = json.load(open(f"{out}/cts/metrics.json"))
t = m["timing"]
py = json.load(open(f"{out}/py.json"))
cts_wall, py_wall = t1 - t0, t2 - t1
print(json.dumps({
    "threads": int(threads),
    "cts": {"wall_seconds": round(cts_wall, 1), "train_seconds": round(t["train_seconds"], 1),
            # evaluation on the run's critical path: the initial model's runs alongside task 0's
            # training where timing says so (its seconds are then inside train_seconds' span)
            "eval_seconds": round(t["eval_seconds"] + (0.0 if t.get("initial_eval_alongside_training") else t.get("initial_eval_seconds", 0.0)), 1),
            "initial_eval_seconds": round(t.get("initial_eval_seconds", 0.0), 1),
            "initial_eval_alongside_training": bool(t.get("initial_eval_alongside_training", False)),
            "final_average_accuracy": round(m["final_average_accuracy"], 4)},
    "pytorch": {"wall_seconds": round(py_wall, 1), "train_seconds": py["train_seconds"], "eval_seconds": py["eval_seconds"],
                "final_average_accuracy": py["final_average_accuracy"]},
    "ratio_cts_over_pytorch": round(cts_wall / py_wall, 3),
}, indent=1))
PY
