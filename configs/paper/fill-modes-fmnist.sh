#!/bin/sh
# Fill modes (zero-embedding, zero-pixel, drop) x the 1/(1-p) rescaling, quickstart setting.
set -e
CTS=${CTS:-build/cts}
$CTS sweep configs/quickstart.yaml --out runs/fill-modes --seeds ${SEEDS:-0,1,2} \
  --grid memory.fill=zero-embedding,zero-pixel,drop --grid train.token_drop_rescale=false,true
$CTS report runs/fill-modes
