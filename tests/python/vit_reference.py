"""Independent ViT forward in plain PyTorch (Debian python3-torch), written from the timm
architecture description, used to check cts's ViT and its partial-input fill modes.

Usage: vit_reference.py MODEL.safetensors CASE.safetensors
CASE holds: images [B,C,H,W] (normalised float), positions [B,K] int64 (-1 padding) and the
logits cts computed: full, zero_embedding, zero_pixel, drop. Exits 1 if any differs by > 1e-4.
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F

import st


def forward(w, meta, x, positions=None, fill=None):
    D = int(meta["cts.embed_dim"])
    H = int(meta["cts.num_heads"])
    depth = int(meta["cts.depth"])
    p = int(meta["cts.patch_size"])
    B = x.shape[0]
    g = x.shape[2] // p
    T = g * g
    keep = None
    if positions is not None:
        keep = torch.zeros(B, T)
        for b in range(B):
            for t in positions[b]:
                if t >= 0:
                    keep[b, t] = 1.0
    if fill == "zero_pixel":
        pix = keep.reshape(B, 1, g, 1, g, 1).expand(B, 1, g, p, g, p).reshape(B, 1, g * p, g * p)
        x = x * pix
    tok = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=p)  # [B, D, g, g]
    tok = tok.flatten(2).transpose(1, 2)  # [B, T, D]
    if fill == "zero_embedding":
        tok = tok * keep.unsqueeze(-1)
    pos = w["pos_embed"]  # [1, 1+T, D]
    cls = w["cls_token"].expand(B, 1, D) + pos[:, :1]
    tok = tok + pos[:, 1:]
    key_valid = None
    if fill == "drop":
        rows = []
        K = positions.shape[1]
        valid = torch.zeros(B, 1 + K, dtype=torch.bool)
        for b in range(B):
            kept = [int(t) for t in positions[b] if t >= 0]
            r = tok[b, kept]
            valid[b, : 1 + len(kept)] = True
            rows.append(torch.cat([r, torch.zeros(K - len(kept), D)]))
        tok = torch.stack(rows)
        key_valid = valid
    h = torch.cat([cls, tok], 1)
    dh = D // H
    for i in range(depth):
        pre = f"blocks.{i}."
        y = F.layer_norm(h, (D,), w[pre + "norm1.weight"], w[pre + "norm1.bias"], eps=1e-6)
        qkv = F.linear(y, w[pre + "attn.qkv.weight"], w[pre + "attn.qkv.bias"])
        N = h.shape[1]
        q, k, v = qkv.reshape(B, N, 3, H, dh).permute(2, 0, 3, 1, 4)
        s = q @ k.transpose(-1, -2) / dh**0.5
        if key_valid is not None:
            s = s.masked_fill(~key_valid[:, None, None, :], float("-inf"))
        a = s.softmax(-1)
        o = (a @ v).transpose(1, 2).reshape(B, N, D)
        h = h + F.linear(o, w[pre + "attn.proj.weight"], w[pre + "attn.proj.bias"])
        y = F.layer_norm(h, (D,), w[pre + "norm2.weight"], w[pre + "norm2.bias"], eps=1e-6)
        y = F.linear(F.gelu(F.linear(y, w[pre + "mlp.fc1.weight"], w[pre + "mlp.fc1.bias"])), w[pre + "mlp.fc2.weight"], w[pre + "mlp.fc2.bias"])
        h = h + y
    h = F.layer_norm(h, (D,), w["norm.weight"], w["norm.bias"], eps=1e-6)
    return F.linear(h[:, 0], w["head.weight"], w["head.bias"])


def main():
    torch.set_default_dtype(torch.float64)  # the reference runs in float64
    arrays, meta = st.load(sys.argv[1])
    w = {k: torch.from_numpy(v).double() for k, v in arrays.items()}
    case, _ = st.load(sys.argv[2])
    x = torch.from_numpy(case["images"]).double()
    positions = case["positions"]
    worst = 0.0
    for name, fill in [("full", None), ("zero_embedding", "zero_embedding"), ("zero_pixel", "zero_pixel"), ("drop", "drop")]:
        ref = forward(w, meta, x, None if fill is None else positions, fill)
        ours = torch.from_numpy(case["logits_" + name]).double()
        diff = (ref - ours).abs().max().item()
        print(f"{name:15s} max |cts - reference| = {diff:.3e}")
        worst = max(worst, diff)
    if worst > 1e-4:
        print("FAIL: difference above 1e-4")
        sys.exit(1)
    print("vit reference ok")


if __name__ == "__main__":
    main()
