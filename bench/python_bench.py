"""The Python side of cts's CPU benchmarks (Debian python3-torch, same machine, same threads).

1. Training step of the identical small ViT (vit_nano_patch4_28: 28 px, patch 4, D 64, 4 blocks,
   4 heads, 10 classes), batch 128, AdamW, written as a timm-style nn.Module; and the eval forward
   at batch 512. Compare with `cts_bench --benchmark_filter='BM_TrainStep/0/0|BM_EvalForward'`.
2. Attribution at batch 1, the way the reference implementations run (Chefer's
   Transformer-Explainability, AtMan): rollout, gradcam, chefer-generic, gradlrp (Chefer-style
   relprop through autograd) and atman (one perturbed forward per token), using the plain
   PyTorch reference code of tests/python/attribution_reference.py in float32.
   Compare with `cts_bench --benchmark_filter=BM_Attribution`.

Usage: /usr/bin/python3 bench/python_bench.py [--threads N] [--seconds S]
Prints a JSON object with ms/step and images/s.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as cts does: torch's own threads only

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import attribution_reference as ref  # noqa: E402


class Attention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        B, N, D = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1) * (D // self.h) ** -0.5).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, h)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, img=28, p=4, c=1, d=64, depth=4, h=4, classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(c, d, p, p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, (img // p) ** 2 + 1, d) * 0.02)
        self.blocks = nn.Sequential(*[Block(d, h) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), t], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(t))[:, 0])


def timed(fn, seconds):
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "threads": args.threads}

    model = ViT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    x = torch.randn(128, 1, 28, 28)
    y = torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    out["train_step_ms"] = 1e3 * timed(step, args.seconds)
    model.eval()
    xe = torch.randn(512, 1, 28, 28)
    with torch.no_grad():
        out["eval_forward_512_ms"] = 1e3 * timed(lambda: model(xe), args.seconds)

    # Attribution at batch 1 with the reference code (functional float32 ViT from the same weights).
    w = {k: v.detach().clone() for k, v in {
        "patch_embed.proj.weight": model.patch_embed.weight, "patch_embed.proj.bias": model.patch_embed.bias,
        "cls_token": model.cls_token, "pos_embed": model.pos_embed, "norm.weight": model.norm.weight,
        "norm.bias": model.norm.bias, "head.weight": model.head.weight, "head.bias": model.head.bias}.items()}
    for i, b in enumerate(model.blocks):
        pre = f"blocks.{i}."
        for name, t in [("norm1.weight", b.norm1.weight), ("norm1.bias", b.norm1.bias), ("attn.qkv.weight", b.attn.qkv.weight),
                        ("attn.qkv.bias", b.attn.qkv.bias), ("attn.proj.weight", b.attn.proj.weight), ("attn.proj.bias", b.attn.proj.bias),
                        ("norm2.weight", b.norm2.weight), ("norm2.bias", b.norm2.bias), ("mlp.fc1.weight", b.mlp[0].weight),
                        ("mlp.fc1.bias", b.mlp[0].bias), ("mlp.fc2.weight", b.mlp[2].weight), ("mlp.fc2.bias", b.mlp[2].bias)]:
            w[pre + name] = t.detach().clone()
    meta = {"cts.embed_dim": "64", "cts.num_heads": "4", "cts.depth": "4", "cts.patch_size": "4"}
    fv = ref.ViT(w, meta)
    x1 = torch.randn(1, 1, 28, 28)
    t1 = torch.tensor([3])
    # The reference helpers build identity matrices etc. with the default dtype: keep float32.
    methods = {
        "rollout": lambda: ref.rollout(ref.maps_and_grads(fv, x1, t1)[0]),
        "gradcam": lambda: ref.gradcam(*ref.maps_and_grads(fv, x1, t1)[:2]),
        "chefer-generic": lambda: ref.chefer_generic(*ref.maps_and_grads(fv, x1, t1)[:2]),
        "gradlrp": lambda: ref.gradlrp(fv, x1, t1),
        "atman": lambda: ref.atman(fv, x1, t1, 0.1, 0.7, False),
    }
    out["attribution_batch1_img_per_s"] = {}
    for name, fn in methods.items():
        out["attribution_batch1_img_per_s"][name] = 1.0 / timed(fn, args.seconds)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
