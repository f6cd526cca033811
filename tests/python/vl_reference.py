"""Independent reference of the vl-decoder's token relevance in plain PyTorch (Debian
python3-torch, float64): the text decoder re-derived from the formulas in
learners/vl_decoder/vl_decoder.hpp, the ViT encoder and the attribution rules from
attribution_reference.py (written from method-notes.md).

Usage: vl_reference.py MODEL.safetensors CASE.safetensors
MODEL: the vl-decoder's weights (encoder in timm names, decoder.*). CASE holds images
(normalised float [B,C,H,W]), input / labels ([B, L] teacher forcing, labels -1 unscored),
cts's log_likelihood [B], atman_factor, atman_kappa, and cts's relevance rel_gradcam,
rel_chefer_generic, rel_gradlrp, rel_atman ([B, T] each). The explained score is the
sequence log-likelihood of the labels; AtMan's loss its mean negative; gradlrp's relevance of
the encoder's output tokens is gradient x input of the score. Exits 1 on a relative
difference above 1e-4.
"""
import json
import sys

import torch
import torch.nn.functional as F

import st
from attribution_reference import ViT, atman, chefer_generic, gradcam, lrp_walk


class Decoder:
    def __init__(self, w, meta):
        self.w = {k[len("decoder."):]: v for k, v in w.items() if k.startswith("decoder.")}
        d = json.loads(meta["cts.decoder"])
        self.H, self.depth = int(d["heads"]), int(d["depth"])
        self.D = self.w["embed.weight"].shape[1]

    def attention(self, q, k, v, mask):
        B, Lq, D = q.shape
        Lk, H = k.shape[1], self.H
        dh = D // H
        q = q.reshape(B, Lq, H, dh).transpose(1, 2)
        k = k.reshape(B, Lk, H, dh).transpose(1, 2)
        v = v.reshape(B, Lk, H, dh).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / dh**0.5
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        return (s.softmax(-1) @ v).transpose(1, 2).reshape(B, Lq, D)

    def log_likelihood(self, z, inp, labels):
        """z: encoder final-norm tokens [B, N, De]; returns sum_j log p(y_j) per sample."""
        w, D = self.w, self.D
        L = inp.shape[1]
        h = w["embed.weight"][inp] + w["pos_embed"][:, :L]
        m = F.linear(z, w["memory_proj.weight"], w["memory_proj.bias"])
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        ln = lambda x, n: F.layer_norm(x, (D,), w[n + ".weight"], w[n + ".bias"], eps=1e-6)
        for i in range(self.depth):
            p = f"blocks.{i}."
            q, k, v = F.linear(ln(h, p + "norm1"), w[p + "self_qkv.weight"], w[p + "self_qkv.bias"]).split(D, -1)
            h = h + F.linear(self.attention(q, k, v, causal), w[p + "self_proj.weight"], w[p + "self_proj.bias"])
            kk, vv = F.linear(m, w[p + "cross_kv.weight"], w[p + "cross_kv.bias"]).split(D, -1)
            qq = F.linear(ln(h, p + "norm2"), w[p + "cross_q.weight"], w[p + "cross_q.bias"])
            h = h + F.linear(self.attention(qq, kk, vv, None), w[p + "cross_proj.weight"], w[p + "cross_proj.bias"])
            f = F.gelu(F.linear(ln(h, p + "norm3"), w[p + "fc1.weight"], w[p + "fc1.bias"]))
            h = h + F.linear(f, w[p + "fc2.weight"], w[p + "fc2.bias"])
        logits = ln(h, "norm") @ w["embed.weight"].T + w["out_bias"]
        lp = logits.log_softmax(-1)
        scored = labels >= 0
        tok = lp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        return (tok * scored).sum(1)


def main():
    torch.set_default_dtype(torch.float64)
    arrays, meta = st.load(sys.argv[1])
    w = {k: torch.from_numpy(v).double() for k, v in arrays.items()}
    case, _ = st.load(sys.argv[2])
    x = torch.from_numpy(case["images"]).double()
    inp = torch.from_numpy(case["input"]).long()
    labels = torch.from_numpy(case["labels"]).long()
    f = float(case["atman_factor"][0])
    kappa = float(case["atman_kappa"][0])
    vit, dec = ViT(w, meta), Decoder(w, meta)
    counts = (labels >= 0).sum(1).double()

    # The score and the gradients of the encoder's attention maps.
    hn, acts = vit.forward(x.clone().requires_grad_(True), keep=True, head=False)
    score = dec.log_likelihood(hn, inp, labels)
    score.sum().backward()
    maps = [a["attn"].detach() for a in acts]
    grads = [a["attn"].grad.detach() for a in acts]
    # gradlrp: R = z * d score / d z at the encoder's output tokens, then the encoder walk.
    z = hn.detach().requires_grad_(True)
    g = torch.autograd.grad(dec.log_likelihood(z, inp, labels).sum(), z)[0]
    refs = {
        "log_likelihood": score.detach()[:, None],
        "gradcam": gradcam(maps, grads),
        "chefer_generic": chefer_generic(maps, grads),
        "gradlrp": lrp_walk(vit, acts, grads, (z * g).detach()),
    }

    def nll(b, key_scale):
        t = vit.forward(x[b : b + 1], key_scale=key_scale, head=False)
        return -dec.log_likelihood(t, inp[b : b + 1], labels[b : b + 1])[0] / counts[b]

    with torch.no_grad():
        refs["atman"] = atman(vit, x, None, f, kappa, False, loss=nll)
    worst = 0.0
    for name, ref in refs.items():
        ours = torch.from_numpy(case[name if name == "log_likelihood" else "rel_" + name]).double().reshape(ref.shape)
        scale = max(1e-3, ref.abs().max().item())
        diff = (ref - ours).abs().max().item() / scale
        print(f"{name:15s} max |cts - reference| / scale = {diff:.3e}   (scale {scale:.3g})")
        worst = max(worst, diff)
    if worst > 1e-4:
        print("FAIL: difference above 1e-4")
        sys.exit(1)
    print("vl relevance reference ok")


if __name__ == "__main__":
    main()
