#!/bin/sh
# DyTox on Split-FashionMNIST (configs/dytox-split-fmnist.yaml, 5 tasks), 3 seeds, as sweeps:
#   dytox-herding   DyTox with its original memory: 600 whole images by herding (534000 bytes)
#   dytox-tokenset  DyTox with a core tokenset of the same bytes: herding samples keeping
#                   10 % of their tokens (5 of 49), new data trained with 90 % token dropping
#   vit-herding     the plain ViT learner (one growing head) with the same herding memory
# Results: runs/dytox-*/sweep.md and docs/results.md. CPU time on this 2-core machine, one
# thread per run: dytox-herding ~8 min, dytox-tokenset ~3 min, vit-herding ~4 min per run.
# Finished runs are archived in docs/results-data/dytox-*/ (SAVE=1) and restored first, so a
# call only runs what is missing; PARTIAL=1 writes the tables of what has finished.
set -e
CTS=${CTS:-build/cts}
PY=${PY:-/usr/bin/python3}
ARCHIVE=${ARCHIVE:-docs/results-data}
RUNS=${RUNS:-runs}
S=${SEEDS:-0,1,2}
JOBS=${JOBS:-2}
PARTS="dytox-tokenset vit-herding dytox-herding"
save() { for d in $PARTS; do [ ! -d "$RUNS/$d" ] || $PY tools/results_archive.py save "$RUNS/$d" "$ARCHIVE/$d"; done; }
if [ -n "$ONLY_SAVE" ]; then save; exit 0; fi
for d in $PARTS; do [ ! -d "$ARCHIVE/$d" ] || $PY tools/results_archive.py restore "$ARCHIVE/$d" "$RUNS/$d"; done
MODE="--jobs $JOBS"
[ -z "$PARTIAL" ] || MODE="--summarize-only"
C=configs/dytox-split-fmnist.yaml
$CTS sweep $C --out $RUNS/dytox-tokenset --seeds $S $MODE --grid memory.strategy=core-tokenset \
  --set memory.samples=0 --set memory.budget_bytes=534000 --set memory.token_fraction=0.1 --set memory.fill=drop
$CTS sweep $C --out $RUNS/vit-herding --seeds $S $MODE --grid model.learner=vit-classifier
$CTS sweep $C --out $RUNS/dytox-herding --seeds $S $MODE --grid memory.strategy=coreset
[ -z "$SAVE" ] || save
