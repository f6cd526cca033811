#!/bin/sh
# Where do core tokensets pay off? The quickstart stream (Split-FashionMNIST, 5 tasks, 3 epochs
# per task) on half B of every class, from a backbone pretrained on half A
# (configs/pretrain/fmnist-half-a.yaml, 5 epochs, all 10 classes at once) and, as the control,
# from scratch. Cells:
#   coreset random @ 0.5 / 1 / 2 / 5 %            (pre-coreset, scratch-coreset)
#   core tokenset @ 1 %, random samples x {random, gradlrp, chefer-generic} tokens, drop fill
#                                                  (pre-tokenset, scratch-tokenset)
#   finetune and cumulative                        (pre-bounds, scratch-bounds)
#   coreset 1 % and core tokenset 1 % from a backbone pretrained self-supervised (MAE-style,
#   no labels) on half A: configs/pretrain/fmnist-half-a-mae.yaml  (mae-pre; not in the default PARTS)
# Results: runs/pretrained/*/sweep.md (class-IL and task-IL) and docs/results.md. Finished runs
# are archived in docs/results-data/pretrained/ (SAVE=1) and restored first, so a call only runs
# what is missing. SEEDS (default 0,1,2) and PARTS (default: all six) narrow a call. The 1 %
# cells of seeds 1 and 2 that docs/results.md reports ran as their own sweeps (seeds-pre,
# seeds-scratch: --grid memory.strategy=coreset,core-tokenset --seeds 1,2, with and without the
# weights; archived with the rest); so did seeds 1 and 2 of the attribution cells and of the
# 2 % / 5 % coresets (seeds12-pre-tokens, seeds12-scratch-tokens, seeds12-mae-tokens,
# seeds12-pre-coreset25, seeds12-scratch-coreset25: the same grids with --seeds 1,2), and the
# MAE splits at r = 0.5 % (mae-splits-r005, mae-pre-coreset05); docs/results.md has each command.
set -e
CTS=${CTS:-build/cts}
PY=${PY:-/usr/bin/python3}
ARCHIVE=${ARCHIVE:-docs/results-data/pretrained}
RUNS=${RUNS:-runs/pretrained}
S=${SEEDS:-0,1,2}
JOBS=${JOBS:-2}
PARTS=${PARTS:-"pre-tokenset pre-coreset scratch-tokenset scratch-coreset pre-bounds scratch-bounds"}
W=$RUNS/fmnist-half-a/model.safetensors
C=configs/pretrained-fmnist-half-b.yaml
save() {
  for d in $PARTS seeds-pre seeds-scratch mae-pre seeds12-pre-tokens seeds12-scratch-tokens seeds12-mae-tokens seeds12-pre-coreset25 seeds12-scratch-coreset25 mae-pre-coreset05; do [ ! -d "$RUNS/$d" ] || $PY tools/results_archive.py save "$RUNS/$d" "$ARCHIVE/$d"; done
  # The pretraining run is a run folder, not a sweep: its records only.
  mkdir -p "$ARCHIVE/fmnist-half-a"
  for f in config.yaml metrics.json summary.md; do [ ! -f "$RUNS/fmnist-half-a/$f" ] || cp "$RUNS/fmnist-half-a/$f" "$ARCHIVE/fmnist-half-a/"; done
  mkdir -p "$ARCHIVE/fmnist-half-a-mae"
  for f in config.yaml metrics.json summary.md; do [ ! -f "$RUNS/fmnist-half-a-mae/$f" ] || cp "$RUNS/fmnist-half-a-mae/$f" "$ARCHIVE/fmnist-half-a-mae/"; done
}
if [ -n "$ONLY_SAVE" ]; then save; exit 0; fi
for d in $PARTS; do [ ! -d "$ARCHIVE/$d" ] || $PY tools/results_archive.py restore "$ARCHIVE/$d" "$RUNS/$d"; done
# The pretraining run (seed 0; every continual seed starts from it). Its weights are not
# archived (results_archive keeps records only): a restored archive re-runs it (~3 min).
[ -f "$W" ] || $CTS run configs/pretrain/fmnist-half-a.yaml --out $RUNS/fmnist-half-a --set threads=2
common="--seeds $S --jobs $JOBS --set threads=1"
for p in $PARTS; do
  case $p in
    pre-*) w="--set model.weights=$W" ;;
    mae-*) w="" ;;
    scratch-*) w="--set model.weights=" ;;
  esac
  case $p in
    *-coreset) $CTS sweep $C --out $RUNS/$p $common $w --grid memory.strategy=coreset --grid memory.retention=0.005,0.01,0.02,0.05 ;;
    *-tokenset) $CTS sweep $C --out $RUNS/$p $common $w --grid memory.tokens=random,gradlrp,chefer-generic ;;
    *-bounds) $CTS sweep $C --out $RUNS/$p $common $w --grid memory.strategy=none,cumulative ;;
    mae-pre)
      M=$RUNS/fmnist-half-a-mae/model.safetensors
      [ -f "$M" ] || $CTS run configs/pretrain/fmnist-half-a-mae.yaml --out $RUNS/fmnist-half-a-mae --set threads=2
      $CTS sweep $C --out $RUNS/$p $common --set model.weights=$M --grid memory.strategy=coreset,core-tokenset ;;
  esac
done
[ -z "$SAVE" ] || save
