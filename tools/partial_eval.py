"""Diagnostic: does a model trained with a core-token memory classify old-task images when they
are presented the way the memory stored them (k kept patches, `drop` fill), but not as full
images? Then it learned the replay distribution (a shortcut), not the classes.

Usage: /usr/bin/python3 tools/partial_eval.py RUN_DIR METHOD K [N_PER_TASK]
  METHOD: random | rollout | chefer-generic (token choice on the test images, with the run's
  final model), K kept tokens. Prints class-IL accuracy per task: full images vs partial.
Reads Fashion-MNIST from /usr/share/datasets/fashion-mnist (the quickstart data).
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import attribution_reference as ref  # noqa: E402
import st  # noqa: E402
import vit_reference  # noqa: E402
from swap_test import idx  # noqa: E402  (the idx reader of tools/, raw or gzip)


def main():
    run, method, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    torch.manual_seed(0)
    arrays, meta = st.load(os.path.join(run, "model.safetensors"))
    w = {a: torch.from_numpy(v).float() for a, v in arrays.items()}
    order = [int(c) for c in meta["cts.class_order"].split(",")]
    head_of = {c: i for i, c in enumerate(order)}
    root = "/usr/share/datasets/fashion-mnist"
    x_all = idx(f"{root}/t10k-images-idx3-ubyte.gz")
    y_all = idx(f"{root}/t10k-labels-idx1-ubyte.gz")
    model = ref.ViT(w, meta)
    T = (28 // 4) ** 2
    for task in range(5):
        classes = order[2 * task: 2 * task + 2]
        sel = np.where(np.isin(y_all, classes))[0][:n]
        x = (torch.from_numpy(x_all[sel]).float() / 255.0 - 0.5) / 0.5
        x = x[:, None]
        y = torch.tensor([head_of[int(c)] for c in y_all[sel]])
        with torch.no_grad():
            full = (model.forward(x).argmax(1) == y).float().mean().item()
        if method == "random":
            rel = torch.rand(len(sel), T)
        elif method == "rollout":
            rel = ref.rollout(ref.maps_and_grads(model, x, y)[0])
        else:
            maps, grads, _, _ = ref.maps_and_grads(model, x, y)
            rel = ref.chefer_generic(maps, grads)
        pos = torch.sort(rel.topk(k, 1).indices, 1).values
        with torch.no_grad():
            part = (vit_reference.forward(w, meta, x, pos, "drop").argmax(1) == y).float().mean().item()
        print(f"task {task}: full images {100 * full:5.1f} %   {k} {method} tokens (drop) {100 * part:5.1f} %")


if __name__ == "__main__":
    main()
