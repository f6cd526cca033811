"""Diagnostic (issue 19, 4a): what do a memory's keep-masks alone give away?

A core-tokenset memory stores, per sample, which patches it kept. If the *pattern* of kept
positions predicts the label, a model can learn the label from where the tokens are instead of
what they show; if it tells replayed samples from new ones (new data drops tokens at random,
train.token_drop_policy: random), the model can learn "this is replay" from the pattern. Both
are shortcuts a model can take. This probe measures them with a linear classifier on the
binary keep-masks (T = grid tokens, one 0/1 feature per token), trained on a seeded 70 % of
the samples and scored on the other 30 %:

  (1) mask -> label: held-out accuracy vs the majority class share (chance);
  (2) mask -> replayed vs new: the buffer's masks against masks drawn like new data's token
      dropping (a uniformly random set of the same size per sample, so the count tells
      nothing), balanced, chance 50 %.

A probe at chance says the masks carry no linear signal; above chance, they do (for random
tokens both must be at chance: the control). Logistic regression by full-batch L-BFGS with a
small L2 penalty (torch from Debian's python3-torch).

Usage: /usr/bin/python3 tools/mask_probe.py BUFFER.safetensors [BUFFER ...] [--seed S]
Prints one line per buffer: samples, tokens per sample, both probes with their chance levels.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import st  # noqa: E402


def keep_masks(path):
    """[n, T] 0/1 masks, labels [n], T. Buffer format v1 (every token's position) or v2 (only
    the positions of samples keeping fewer than T tokens)."""
    a, meta = st.load(path)
    T = int(meta["num_tokens"])
    counts = a["counts"].astype(np.int64)
    positions = a["positions"].astype(np.int64)
    every = positions.size == counts.sum()
    masks = np.zeros((counts.size, T), np.float32)
    o = 0
    for i, c in enumerate(counts):
        if c == T and not every:
            masks[i] = 1.0
            continue
        masks[i, positions[o:o + c]] = 1.0
        o += c
    return masks, a["labels"].astype(np.int64), T


def fit_and_score(x, y, classes, seed):
    """Held-out accuracy of multinomial logistic regression (70/30 seeded split)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    cut = int(0.7 * len(y))
    tr, te = perm[:cut], perm[cut:]
    x = torch.from_numpy(x)
    y = torch.from_numpy(y)
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[tr] @ w + b, y[tr]) + 1e-3 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        acc = ((x[te] @ w + b).argmax(1) == y[te]).float().mean().item()
    majority = np.bincount(y[te].numpy(), minlength=classes).max() / len(te)
    return acc, majority


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("buffers", nargs="+")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for path in args.buffers:
        masks, labels, T = keep_masks(path)
        uniq, y = np.unique(labels, return_inverse=True)
        label_acc, label_chance = fit_and_score(masks, y, len(uniq), args.seed)
        # New data's masks: the same number of tokens per sample, positions uniformly random.
        rng = np.random.default_rng(args.seed)
        new = np.zeros_like(masks)
        for i, c in enumerate(masks.sum(1).astype(np.int64)):
            new[i, rng.choice(T, size=c, replace=False)] = 1.0
        x = np.concatenate([masks, new])
        z = np.concatenate([np.ones(len(masks), np.int64), np.zeros(len(new), np.int64)])
        replay_acc, replay_chance = fit_and_score(x, z, 2, args.seed)
        k = masks.sum(1)
        print(f"{path}: {len(labels)} samples, {k.mean():.1f} of {T} tokens each; "
              f"mask->label {100 * label_acc:.1f} % (chance {100 * label_chance:.1f} %); "
              f"mask->replayed-vs-new {100 * replay_acc:.1f} % (chance {100 * replay_chance:.1f} %)")


if __name__ == "__main__":
    main()
