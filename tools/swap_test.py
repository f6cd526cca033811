"""Diagnostic (issue 19, 4b): does a model read the content of kept patches or their layout?

For pairs of test images A and B of different classes (both from tasks the run has trained),
the model sees A's pixels at the k positions that the attribution method selects for B (B's
"mask") and nothing else (fill `drop`, as a core tokenset replays). If the prediction follows A,
the kept content decides; if it follows B, the selection pattern alone carries B's class (the
shortcut suspected in docs/results.md). Controls in the same run: A's pixels at A's own
positions (content and pattern agree) and at uniformly random positions (no pattern).

Scores, over the pairs, class-IL (the run's whole head), in %:
  follows A (the content) / follows B (the pattern) / neither
for own, swapped and random positions. With `random` as the method, swapped = random by
construction: the control that a pattern cannot carry a class.

Usage: /usr/bin/python3 tools/swap_test.py RUN_DIR METHOD K [PAIRS] [--root DIR]
  METHOD: random | rollout | chefer-generic | gradlrp (attribution of B for B's label, with the
  run's final model, by the independent reference implementations in tests/python/)
  K: kept tokens (the memory's k, e.g. 5 of 49). PAIRS: pairs scored (default 400).
Reads Fashion-MNIST's test images (default /usr/share/datasets/fashion-mnist).
"""
import argparse
import gzip
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import attribution_reference as ref  # noqa: E402
import st  # noqa: E402
import vit_reference  # noqa: E402


def idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(root, stem):
    for name in (stem + ".gz", stem):
        if os.path.exists(os.path.join(root, name)):
            return os.path.join(root, name)
    sys.exit(f"{root}: {stem}(.gz) not found (set --root to the Fashion-MNIST folder)")


def relevance(model, method, x, y, T, g):
    if method == "random":
        return torch.rand(len(x), T, generator=g)
    if method == "gradlrp":
        return ref.gradlrp(model, x, y)
    maps, grads, _, _ = ref.maps_and_grads(model, x, y)
    if method == "rollout":
        return ref.rollout(maps)
    if method == "chefer-generic":
        return ref.chefer_generic(maps, grads)
    sys.exit(f"method '{method}' is not known; accepted: random, rollout, chefer-generic, gradlrp")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("method")
    p.add_argument("k", type=int)
    p.add_argument("pairs", type=int, nargs="?", default=400)
    p.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    g = torch.Generator().manual_seed(a.seed)
    arrays, meta = st.load(os.path.join(a.run, "model.safetensors"))
    w = {n: torch.from_numpy(v).float() for n, v in arrays.items()}
    order = [int(c) for c in meta["cts.class_order"].split(",")]
    classes = w["head.weight"].shape[0]  # the classes the run has trained
    head_of = {c: i for i, c in enumerate(order[:classes])}
    x_all = idx(find(a.root, "t10k-images-idx3-ubyte"))
    y_all = idx(find(a.root, "t10k-labels-idx1-ubyte"))
    seen = np.where(np.isin(y_all, order[:classes]))[0]
    model = ref.ViT(w, meta)
    T = (28 // 4) ** 2
    # Pairs (A, B) with different classes, seeded.
    rng = np.random.default_rng(a.seed)
    ia, ib = [], []
    while len(ia) < a.pairs:
        i, j = rng.choice(seen, 2, replace=False)
        if y_all[i] != y_all[j]:
            ia.append(i), ib.append(j)
    def prep(ids):
        x = (torch.from_numpy(x_all[ids]).float() / 255.0 - 0.5) / 0.5
        return x[:, None], torch.tensor([head_of[int(c)] for c in y_all[ids]])
    xa, ya = prep(ia)
    xb, yb = prep(ib)
    top = lambda rel: torch.sort(rel.topk(a.k, 1).indices, 1).values  # noqa: E731
    pos = {
        "own": top(relevance(model, a.method, xa, ya, T, g)),
        "swapped": top(relevance(model, a.method, xb, yb, T, g)),
        "random": top(torch.rand(len(ia), T, generator=g)),
    }
    print(f"{a.run}: {a.pairs} pairs, {a.k} of {T} tokens by {a.method}; A's pixels at ... (class-IL, %):")
    for name, p_ in pos.items():
        with torch.no_grad():
            pred = vit_reference.forward(w, meta, xa, p_, "drop").argmax(1)
        fa = (pred == ya).float().mean().item()
        fb = (pred == yb).float().mean().item()
        print(f"  {name:8s} positions: follows A (content) {100 * fa:5.1f}   follows B (pattern) {100 * fb:5.1f}   neither {100 * (1 - fa - fb):5.1f}")


if __name__ == "__main__":
    main()
