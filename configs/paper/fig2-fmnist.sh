#!/bin/sh
# Paper Fig. 2 on Fashion-MNIST (10 classes, the quickstart ViT trained from scratch):
#  (a) train on full data without token dropping, then fine-tune on random core tokens at
#      retention r in {0.8, 0.6, 0.4, 0.3, 0.2, 0.1};
#  (b) train with token-drop rate p in {0, 0.3, 0.5, 0.7, 0.9}, then fine-tune on core tokens
#      at r = 0.3.
# FILL=drop repeats it with missing tokens removed instead of zero embeddings.
# Results: runs/fig2-*/sweep.md (accuracy of each stage on the full test images).
set -e
CTS=${CTS:-build/cts}
OUT=${OUT:-runs}
SEEDS=${SEEDS:-0}
FILL=${FILL:-zero-embedding}
EXTRA=${EXTRA:-}
$CTS sweep configs/paper/fig2-pretrain-fmnist.yaml --out $OUT/fig2-pretrain-$FILL --seeds $SEEDS \
  --set memory.fill=$FILL $EXTRA --grid train.token_drop=0,0.3,0.5,0.7,0.9
for s in $(echo $SEEDS | tr , ' '); do
  w() { echo $OUT/fig2-pretrain-$FILL/token-drop-$1/seed-$s/model.safetensors; }
  # (b): every pretraining drop rate, fine-tuned at r = 0.3
  $CTS sweep configs/paper/fig2-finetune-fmnist.yaml --out $OUT/fig2-b-$FILL --seeds $s \
    --set memory.fill=$FILL $EXTRA --set train.token_drop=0.7 \
    --grid model.weights=$(w 0),$(w 0.3),$(w 0.5),$(w 0.7),$(w 0.9)
  # (a): no drop in pretraining, fine-tuned at several retentions
  $CTS sweep configs/paper/fig2-finetune-fmnist.yaml --out $OUT/fig2-a-$FILL --seeds $s \
    --set memory.fill=$FILL $EXTRA --set model.weights=$(w 0) \
    --grid train.token_drop=0.2,0.4,0.6,0.7,0.8,0.9
done
