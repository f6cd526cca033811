#!/bin/sh
# Table 1 of the paper on Split-FashionMNIST (5 tasks, the quickstart model), as sweeps:
# rows = selection methods, columns = retention, 3 seeds each. Results: runs/table1-*/sweep.md,
# plots with `cts report runs/table1-<part>`. CPU time on 2 cores: roughly 5-7 min per run on one
# core (atman core tokens ~1 h: it scores every sample with 49 perturbed forward passes).
#
# The grid is built up over several sessions: runs measured before are kept (without their
# checkpoints) in docs/results-data/table1-*/ and restored first, so the sweeps skip them;
# `SAVE=1` archives what finished (also after an interrupted call: run it again with
# ONLY_SAVE=1). `PARTIAL=1` writes the tables of what has finished so far and runs nothing.
set -e
CTS=${CTS:-build/cts}
PY=${PY:-/usr/bin/python3}
ARCHIVE=${ARCHIVE:-docs/results-data}
RUNS=${RUNS:-runs}
R=0.8,0.6,0.4,0.2,0.1,0.01
# Core tokens keep every sample, so retention = token fraction: 1 % of 49 tokens is 0 tokens
# (cts stops with "impossible budget"); the smallest core-tokens memory here is 1/49 = 2.04 %.
R_TOKENS=0.8,0.6,0.4,0.2,0.1
S=${SEEDS:-0,1,2}
JOBS=${JOBS:-2}
PARTS="coreset tokens tokenset finetune cumulative"

save() { for d in $PARTS; do [ ! -d "$RUNS/table1-$d" ] || $PY tools/results_archive.py save "$RUNS/table1-$d" "$ARCHIVE/table1-$d"; done; }
if [ -n "$ONLY_SAVE" ]; then save; exit 0; fi
for d in $PARTS; do [ ! -d "$ARCHIVE/table1-$d" ] || $PY tools/results_archive.py restore "$ARCHIVE/table1-$d" "$RUNS/table1-$d"; done

MODE="--jobs $JOBS"
[ -z "$PARTIAL" ] || MODE="--summarize-only"
$CTS sweep configs/quickstart.yaml --out $RUNS/table1-coreset  --seeds $S $MODE --grid memory.strategy=coreset \
  --grid memory.coreset=random,craig,gradmatch --grid memory.retention=$R
$CTS sweep configs/quickstart.yaml --out $RUNS/table1-tokens   --seeds $S $MODE --grid memory.strategy=core-tokens \
  --grid memory.tokens=random,gradcam,rollout,gradlrp,atman --grid memory.retention=$R_TOKENS
$CTS sweep configs/quickstart.yaml --out $RUNS/table1-tokenset --seeds $S $MODE --grid memory.strategy=core-tokenset \
  --grid memory.coreset=random,gradmatch --grid memory.tokens=random,gradlrp --grid memory.retention=$R
$CTS sweep configs/baselines/finetune.yaml   --out $RUNS/table1-finetune   --seeds $S $MODE
$CTS sweep configs/baselines/cumulative.yaml --out $RUNS/table1-cumulative --seeds $S $MODE
[ -z "$SAVE" ] || save
for d in $PARTS; do $CTS report $RUNS/table1-$d; done
$CTS report $RUNS/table1-coreset $RUNS/table1-tokens $RUNS/table1-tokenset $RUNS/table1-finetune $RUNS/table1-cumulative \
  --out $RUNS/table1
