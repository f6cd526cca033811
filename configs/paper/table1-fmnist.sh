#!/bin/sh
# Table 1 of the paper on Split-FashionMNIST (5 tasks, the quickstart model), as sweeps:
# rows = selection methods, columns = retention, 3 seeds each. Results: runs/table1-*/sweep.md,
# plots with `cts report runs/table1-<part>`. CPU time on 2 cores: roughly 2-10 min per run.
set -e
CTS=${CTS:-build/cts}
R=0.8,0.6,0.4,0.2,0.1,0.01
S=0,1,2
$CTS sweep configs/quickstart.yaml --out runs/table1-coreset  --seeds $S --grid memory.strategy=coreset \
  --grid memory.coreset=random,craig,gradmatch --grid memory.retention=$R
$CTS sweep configs/quickstart.yaml --out runs/table1-tokens   --seeds $S --grid memory.strategy=core-tokens \
  --grid memory.tokens=random,gradcam,rollout,gradlrp,atman --grid memory.retention=$R
$CTS sweep configs/quickstart.yaml --out runs/table1-tokenset --seeds $S --grid memory.strategy=core-tokenset \
  --grid memory.coreset=gradmatch --grid memory.tokens=random,gradlrp --grid memory.retention=$R
$CTS sweep configs/baselines/finetune.yaml   --out runs/table1-finetune   --seeds $S
$CTS sweep configs/baselines/cumulative.yaml --out runs/table1-cumulative --seeds $S
for d in coreset tokens tokenset finetune cumulative; do $CTS report runs/table1-$d; done
