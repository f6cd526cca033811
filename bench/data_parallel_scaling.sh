#!/usr/bin/env bash
# Data-parallel scaling of the quickstart on this machine (issue 22), one run after the other:
# one process on all cores, one process on one thread, and N processes of one thread each
# launched with torchrun (Gloo over loopback). Prints each run's wall time (process start to
# exit), train and evaluation seconds, final class-IL / task-IL accuracy, and whether the
# memory buffers are byte-identical. docs/performance.md has the numbers measured here.
# Usage: bench/data_parallel_scaling.sh [PROCESSES]   (default 2; BUILD=build by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${1:-2}
CTS=$(realpath "$BUILD/cts")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() {  # name, command...
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@" > "$out/$name.log" 2>&1
  echo "$name $t0 $(date +%s.%N)" >> "$out/walls"
}
run one-all-cores "$CTS" run configs/quickstart.yaml --out "$out/one-all-cores" --progress none
run one-thread "$CTS" run configs/quickstart.yaml --set threads=1 --out "$out/one-thread" --progress none
# Debian's torchrun 1.13 under Python 3.11 needs --redirects/--tee other than its default 0.
run "torchrun-$N" torchrun --nproc_per_node "$N" --master_port "${MASTER_PORT:-29765}" --redirects 2 --tee 2 --no_python \
  "$CTS" run configs/quickstart.yaml --set threads=1 --out "$out/torchrun-$N" --progress none
/usr/bin/python3 - "$out" <<'PY'
import filecmp, json, sys
out = sys.argv[1]
for line in open(f"{out}/walls"):
    name, t0, t1 = line.split()
    m = json.load(open(f"{out}/{name}/metrics.json"))
    t = m["timing"]
    print(json.dumps({"run": name, "wall_s": round(float(t1) - float(t0), 1), "train_s": round(t["train_seconds"], 1),
                      "eval_s": round(t["initial_eval_seconds"] + t["eval_seconds"], 1),
                      "class_il": m["final_average_accuracy"], "task_il": m["task_il"]["final_average_accuracy"],
                      "same_buffer_as_one_all_cores": filecmp.cmp(f"{out}/one-all-cores/buffer.safetensors", f"{out}/{name}/buffer.safetensors", shallow=False)}))
PY
