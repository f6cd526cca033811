"""The quickstart pipeline (configs/quickstart.yaml) in plain PyTorch, for the end-to-end
comparison with `cts run` (bench/quickstart_vs_pytorch.sh runs both, one after the other).

The same work as cts does: Split-FashionMNIST (5 tasks of 2 classes, 12 000 training and
2 000 test images each), vit_nano_patch4_28 (28 px, patch 4, 49 tokens, D 64, 4 blocks, 4
heads) with a class-incremental head grown per task, 2 epochs per task at batch 128, AdamW
(lr 1e-3, weight decay 0.05 on matrices, warmup 50 steps then cosine per task), new data with
5 of 49 tokens kept at random (token drop 0.9, kept tokens only: cts's fill `drop`), a replay
batch of 128 each step from a core tokenset memory (10 % of each class's samples at random, 5
random tokens each, stored as uint8 patches with their positions, the buffer cycled), and
evaluation after each task of the tasks trained and the next one (class-IL and task-IL), and
of tasks 1..4 at the start (FWT's b_j). It is written the way a PyTorch user writes it: one
loss, one backward per step, torch's intra-op threads; OpenBLAS on one thread as in cts.

Usage: /usr/bin/python3 bench/quickstart_pytorch.py [--threads N] [--root DIR] [--eval-batch B]
Prints one JSON line: seconds (total, train, eval, load), final class-IL accuracy.
"""
import argparse
import gzip
import json
import math
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

T, P, D, DEPTH, HEADS = 49, 4, 64, 4, 4


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(root, prefix):
    def find(name):
        for n in (name + ".gz", name):
            if os.path.exists(os.path.join(root, n)):
                return os.path.join(root, n)
        raise FileNotFoundError(os.path.join(root, name))
    x = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    y = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)

    def forward(self, x):
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1) * (D // HEADS) ** -0.5).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=1e-6)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.patch = nn.Linear(P * P, D)  # the patch conv as a linear map of flattened patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.randn(1, T + 1, D) * 0.02)
        self.blocks = nn.Sequential(*[Block() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, classes)
        for m in self.modules():  # timm's init, as cts: trunc-normal(.02) weights, zero biases
            if isinstance(m, nn.Linear) and m is not self.patch:
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, patches, positions=None):
        """patches: float [B, K, P*P] (normalised); positions: long [B, K] or None (all T)."""
        B = patches.shape[0]
        t = self.patch(patches)
        pos = self.pos_embed[:, 1:].expand(B, -1, -1)
        if positions is not None:
            pos = pos.gather(1, positions.unsqueeze(-1).expand(-1, -1, D))
        t = torch.cat([self.cls_token.expand(B, -1, -1) + self.pos_embed[:, :1], t + pos], 1)
        return self.head(self.norm(self.blocks(t))[:, 0])

    def grow(self, classes):
        old = self.head
        self.head = nn.Linear(D, classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight[: old.out_features] = old.weight
            self.head.bias[: old.out_features] = old.bias


def patchify(images_u8):
    """uint8 [B, 1, 28, 28] -> normalised float [B, 49, 16]."""
    x = images_u8.float().div(255.0).sub(0.5).div(0.5)
    return x.reshape(-1, 1, 7, P, 7, P).permute(0, 2, 4, 1, 3, 5).reshape(-1, T, P * P)


def optimizer_for(model, lr):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos_embed" not in n and "cls_token" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos_embed" not in n and "cls_token" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], lr=lr)


def evaluate(model, x_test, y_test, order, tasks, trained, eval_batch):
    """Class-IL and task-IL accuracy on the listed tasks (one logits matrix per batch)."""
    model.eval()
    res = {}
    with torch.inference_mode():
        for j in tasks:
            classes = order[2 * j: 2 * j + 2]
            idx = torch.nonzero((y_test == classes[0]) | (y_test == classes[1])).flatten()
            target = torch.tensor([order.index(int(c)) for c in y_test[idx]])
            logits = torch.cat([model(patchify(x_test[idx[i: i + eval_batch]])) for i in range(0, len(idx), eval_batch)])
            til = (logits[:, 2 * j: 2 * j + 2].argmax(1) + 2 * j == target).float().mean().item() if logits.shape[1] >= 2 * j + 2 else None
            cil = (logits[:, : 2 * trained].argmax(1) == target).float().mean().item() if j < trained else None
            res[j] = (cil, til)
    model.train()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--eval-batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    x_train, y_train = load(args.root, "train")
    x_test, y_test = load(args.root, "t10k")
    order = [int(c) for c in torch.randperm(10)]
    t_load = time.perf_counter() - t_start

    model = ViT(classes=10)  # the head grows from 2; the initial evaluation scores tasks with 10 rows
    eval_seconds = train_seconds = 0.0
    t0 = time.perf_counter()
    evaluate(model, x_test, y_test, order, [1, 2, 3, 4], 0, args.eval_batch)
    eval_seconds += time.perf_counter() - t0
    model.head = nn.Linear(D, 0)
    model.grow(2)
    buffer_patches, buffer_pos, buffer_y = [], [], []  # uint8 [n, 5, 16], long [n, 5], long [n]
    final = None
    for task in range(5):
        if task:
            model.grow(2 * (task + 1))
        classes = order[2 * task: 2 * task + 2]
        idx = torch.nonzero((y_train == classes[0]) | (y_train == classes[1])).flatten()
        target = torch.tensor([order.index(int(c)) for c in y_train[idx]])
        opt = optimizer_for(model, 1e-3)
        steps_per_epoch = math.ceil(len(idx) / 128)
        total = 2 * steps_per_epoch
        mem_p = torch.cat(buffer_patches) if buffer_patches else None
        mem_pos = torch.cat(buffer_pos) if buffer_pos else None
        mem_y = torch.cat(buffer_y) if buffer_y else None
        t0 = time.perf_counter()
        step = 0
        for epoch in range(2):
            perm = torch.randperm(len(idx))
            for s in range(steps_per_epoch):
                lr = 1e-3 * (step + 1) / 50 if step < 50 else 1e-3 * 0.5 * (1 + math.cos(math.pi * (step - 50) / max(1, total - 50)))
                for g in opt.param_groups:
                    g["lr"] = lr
                b = perm[s * 128: (s + 1) * 128]
                patches = patchify(x_train[idx[b]])
                keep = torch.rand(len(b), T).argsort(1)[:, :5].sort(1).values  # 5 of 49 tokens
                loss = F.cross_entropy(model(patches.gather(1, keep.unsqueeze(-1).expand(-1, -1, P * P)), keep), target[b])
                if mem_y is not None:
                    r = torch.randint(len(mem_y), (128,))  # (cts cycles permutations; the same amount of work)
                    rp = mem_p[r].float().div(255.0).sub(0.5).div(0.5)
                    loss = loss + F.cross_entropy(model(rp, mem_pos[r]), mem_y[r])
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
        train_seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        res = evaluate(model, x_test, y_test, order, list(range(min(task + 2, 5))), task + 1, args.eval_batch)
        eval_seconds += time.perf_counter() - t0
        final = sum(res[j][0] for j in range(task + 1)) / (task + 1)
        # Memory: 10 % of each class's samples at random, 5 random tokens each, uint8.
        for c in classes:
            ci = idx[y_train[idx] == c]
            keep_s = ci[torch.randperm(len(ci))[: math.ceil(0.1 * len(ci))]]
            all_p = x_train[keep_s].reshape(-1, 1, 7, P, 7, P).permute(0, 2, 4, 1, 3, 5).reshape(-1, T, P * P)
            pos = torch.rand(len(keep_s), T).argsort(1)[:, :5].sort(1).values
            buffer_patches.append(all_p.gather(1, pos.unsqueeze(-1).expand(-1, -1, P * P)))
            buffer_pos.append(pos)
            buffer_y.append(torch.full((len(keep_s),), order.index(int(c)), dtype=torch.long))
    print(json.dumps({"total_seconds": round(time.perf_counter() - t_start, 2), "train_seconds": round(train_seconds, 2),
                      "eval_seconds": round(eval_seconds, 2), "load_seconds": round(t_load, 2), "threads": args.threads,
                      "final_average_accuracy": round(final, 4)}))


if __name__ == "__main__":
    main()
