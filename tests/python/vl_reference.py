"""Independent reference of the vl-decoder's token relevance in plain PyTorch (Debian
python3-torch, float64): the text decoder re-derived from the formulas in
learners/vl_decoder/vl_decoder.hpp, the ViT encoder and the attribution rules from
attribution_reference.py (written from method-notes.md).

Usage: vl_reference.py MODEL.safetensors CASE.safetensors
MODEL: the vl-decoder's weights (encoder in timm names, decoder.*). CASE holds images
(normalised float [B,C,H,W]), input / labels ([B, L] teacher forcing, labels -1 unscored),
cts's log_likelihood [B], atman_factor, atman_kappa, and cts's relevance rel_rollout,
rel_gradcam, rel_chefer_generic, rel_gradlrp, rel_atman ([B, T] each). The explained score is
the sequence log-likelihood of the labels; AtMan's loss its mean negative; gradlrp's relevance
of the encoder's output tokens is gradient x input of the score; rollout and chefer-generic
carry the encoder's relevance through the decoder's self- and cross-attention to the scored
text positions. Exits 1 on a relative difference above 1e-4.
"""
import json
import sys

import torch
import torch.nn.functional as F

import st
from attribution_reference import ViT, atman, compare, gradcam, lrp_walk


class Decoder:
    def __init__(self, w, meta):
        self.w = {k[len("decoder."):]: v for k, v in w.items() if k.startswith("decoder.")}
        d = json.loads(meta["cts.decoder"])
        self.H, self.depth = int(d["heads"]), int(d["depth"])
        self.D = self.w["embed.weight"].shape[1]

    def attention(self, q, k, v, mask, keep=None):
        B, Lq, D = q.shape
        Lk, H = k.shape[1], self.H
        dh = D // H
        q = q.reshape(B, Lq, H, dh).transpose(1, 2)
        k = k.reshape(B, Lk, H, dh).transpose(1, 2)
        v = v.reshape(B, Lk, H, dh).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / dh**0.5
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        p = s.softmax(-1)
        if keep is not None:
            if p.requires_grad:
                p.retain_grad()
            keep.append(p)
        return (p @ v).transpose(1, 2).reshape(B, Lq, D)

    def log_likelihood(self, z, inp, labels, keep=None):
        """z: encoder final-norm tokens [B, N, De]; returns sum_j log p(y_j) per sample.
        keep: a dict {"self": [], "cross": []} that receives each block's attention."""
        w, D = self.w, self.D
        L = inp.shape[1]
        h = w["embed.weight"][inp] + w["pos_embed"][:, :L]
        m = F.linear(z, w["memory_proj.weight"], w["memory_proj.bias"])
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        ln = lambda x, n: F.layer_norm(x, (D,), w[n + ".weight"], w[n + ".bias"], eps=1e-6)
        for i in range(self.depth):
            p = f"blocks.{i}."
            q, k, v = F.linear(ln(h, p + "norm1"), w[p + "self_qkv.weight"], w[p + "self_qkv.bias"]).split(D, -1)
            h = h + F.linear(self.attention(q, k, v, causal, keep and keep["self"]), w[p + "self_proj.weight"], w[p + "self_proj.bias"])
            kk, vv = F.linear(m, w[p + "cross_kv.weight"], w[p + "cross_kv.bias"]).split(D, -1)
            qq = F.linear(ln(h, p + "norm2"), w[p + "cross_q.weight"], w[p + "cross_q.bias"])
            h = h + F.linear(self.attention(qq, kk, vv, None, keep and keep["cross"]), w[p + "cross_proj.weight"], w[p + "cross_proj.bias"])
            f = F.gelu(F.linear(ln(h, p + "norm3"), w[p + "fc1.weight"], w[p + "fc1.bias"]))
            h = h + F.linear(f, w[p + "fc2.weight"], w[p + "fc2.bias"])
        logits = ln(h, "norm") @ w["embed.weight"].T + w["out_bias"]
        lp = logits.log_softmax(-1)
        scored = labels >= 0
        tok = lp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        return (tok * scored).sum(1)


def encoder_joint(maps):
    """Rollout's joint attention [B, N, N]: product of rownorm(mean_h A + I)."""
    N = maps[0].shape[-1]
    joint = None
    for a in maps:
        m = a.mean(1) + torch.eye(N)
        m = m / m.sum(-1, keepdim=True)
        joint = m if joint is None else m @ joint
    return joint


def encoder_generic(maps, grads):
    """Chefer's generic relevance R [B, N, N] after the last encoder block."""
    B, _, N, _ = maps[0].shape
    r = torch.eye(N).repeat(B, 1, 1)
    for a, g in zip(maps, grads):
        r = r + (g * a).clamp(min=0).mean(1) @ r
    return r


def through_decoder(dec, z, inp, labels, r_ii, weighted):
    """R^{ii} carried to the scored text positions by the decoder's attention (rules in
    vl_decoder.hpp), summed over those positions: [B, T]."""
    keep = {"self": [], "cross": []}
    z = z.detach().requires_grad_(True)
    score = dec.log_likelihood(z, inp, labels, keep)
    if weighted:
        score.sum().backward()

        def bar(a):
            g = a.grad if a.grad is not None else torch.zeros_like(a)
            return (g * a).clamp(min=0).mean(1)

        eye = torch.eye(r_ii.shape[1])
        res = r_ii - eye
        rs = res.sum(-1, keepdim=True)
        r_ii = torch.where(rs != 0, res / torch.where(rs != 0, rs, torch.ones_like(rs)), torch.zeros_like(res)) + eye
    else:

        def bar(a):
            return a.detach().mean(1)

    B, L, N = z.shape[0], inp.shape[1], z.shape[1]
    r = torch.zeros(B, L, N)
    for a_self, a_cross in zip(keep["self"], keep["cross"]):
        r = r + bar(a_self) @ r
        r = r + bar(a_cross) @ r_ii
    return (r * (labels >= 0)[..., None]).sum(1)[:, 1:]


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
        "gradlrp": lrp_walk(vit, acts, grads, (z * g).detach()),
        "rollout": through_decoder(dec, hn, inp, labels, encoder_joint(maps), False),
        "chefer_generic": through_decoder(dec, hn, inp, labels, encoder_generic(maps, grads), True),
    }

    def nll(b, key_scale):
        t = vit.forward(x[b : b + 1], key_scale=key_scale, head=False)
        return -dec.log_likelihood(t, inp[b : b + 1], labels[b : b + 1])[0] / counts[b]

    with torch.no_grad():
        refs["atman"] = atman(vit, x, None, f, kappa, False, loss=nll)
    compare(refs, {n: case[n if n == "log_likelihood" else "rel_" + n] for n in refs}, "vl relevance reference ok")


if __name__ == "__main__":
    main()
