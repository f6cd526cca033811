#!/bin/sh
# Sequential VQA and captioning on Sort-of-CLEVR (issue 20; docs/results.md, "Vision-language").
# VQA (3 tasks, configs/vqa-sort-of-clevr.yaml): finetune, cumulative, and coreset / core tokens /
# core tokenset at 1 % and 10 % (core tokens at 1 % cannot run: 1 % of 36 tokens is 0 tokens);
# the same core tokenset with half of every new-data batch shown whole (train.full_image_share).
# Captioning (5 tasks, configs/caption-sort-of-clevr.yaml): finetune, core tokenset and coreset
# at 1 %, and the core tokenset with half of every new-data batch whole. Seed 0 (1 % cells: 0-2), one thread per run, JOBS at a time. Finished runs are archived in
# docs/results-data/vl/ (SAVE=1) and restored first, so a call only runs what is missing.
set -e
CTS=${CTS:-build/cts}
PY=${PY:-/usr/bin/python3}
ARCHIVE=${ARCHIVE:-docs/results-data/vl}
RUNS=${RUNS:-runs/vl}
JOBS=${JOBS:-2}
c="--seeds ${SEEDS:-0} --jobs $JOBS --set threads=1"
for d in vqa-memory vqa-bounds vqa-guard caption caption-guard; do [ ! -d "$ARCHIVE/$d" ] || $PY tools/results_archive.py restore "$ARCHIVE/$d" "$RUNS/$d"; done
$CTS sweep configs/vqa-sort-of-clevr.yaml --out $RUNS/vqa-memory $c --grid memory.strategy=core-tokenset,coreset,core-tokens --grid memory.retention=0.01,0.1 || true
$CTS sweep configs/vqa-sort-of-clevr.yaml --out $RUNS/vqa-bounds $c --grid memory.strategy=none,cumulative
$CTS sweep configs/vqa-sort-of-clevr.yaml --out $RUNS/vqa-guard $c --grid train.full_image_share=0.5 --grid memory.retention=0.01
$CTS sweep configs/caption-sort-of-clevr.yaml --out $RUNS/caption $c --grid memory.strategy=none,core-tokenset,coreset
$CTS sweep configs/caption-sort-of-clevr.yaml --out $RUNS/caption-guard $c --grid train.full_image_share=0.5
# Seeds 1 and 2 of the 1 % cells.
s="--seeds 1,2 --jobs $JOBS --set threads=1"
$CTS sweep configs/vqa-sort-of-clevr.yaml --out $RUNS/vqa-memory $s --grid memory.strategy=core-tokenset,coreset --grid memory.retention=0.01
$CTS sweep configs/caption-sort-of-clevr.yaml --out $RUNS/caption $s --grid memory.strategy=core-tokenset,coreset
if [ -n "$SAVE" ]; then
  for d in vqa-memory vqa-bounds vqa-guard caption caption-guard; do $PY tools/results_archive.py save "$RUNS/$d" "$ARCHIVE/$d"; done
fi
