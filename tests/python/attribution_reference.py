"""Independent attribution references in plain PyTorch (Debian python3-torch, float64),
written from the method descriptions in method-notes.md, to check cts's token selectors.

Usage: attribution_reference.py MODEL.safetensors CASE.safetensors
CASE holds: images (normalised float [B,C,H,W]), targets [B] int64, atman_factor,
atman_kappa (1-element tensors) and cts's relevance per method: rel_rollout, rel_gradcam,
rel_chefer_generic, rel_gradlrp, rel_atman, rel_atman_similarity ([B, T] each).
gradlrp is re-derived here the way Chefer et al.'s code does it: every rule is applied
through autograd (gradient x input of the layer's function), not by closed formulas.
Exits 1 if any method differs by more than 1e-4 (relative to the score scale).
"""
import sys

import torch
import torch.nn.functional as F

import st


class ViT:
    def __init__(self, w, meta):
        self.w = w
        self.D = int(meta["cts.embed_dim"])
        self.H = int(meta["cts.num_heads"])
        self.depth = int(meta["cts.depth"])
        self.p = int(meta["cts.patch_size"])

    def forward(self, x, key_scale=None, keep=False, head=True):
        """Returns logits (head=False: the final-norm tokens [B, N, D]); with keep=True also the
        per-block activations (A requires grad)."""
        w, D, H, p = self.w, self.D, self.H, self.p
        B = x.shape[0]
        tok = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=p).flatten(2).transpose(1, 2)
        h = torch.cat([w["cls_token"].expand(B, 1, D), tok], 1) + w["pos_embed"]
        dh = D // H
        acts = []
        for i in range(self.depth):
            pre = f"blocks.{i}."
            a = {"xin": h}
            a["n1"] = F.layer_norm(h, (D,), w[pre + "norm1.weight"], w[pre + "norm1.bias"], eps=1e-6)
            N = h.shape[1]
            qkv = F.linear(a["n1"], w[pre + "attn.qkv.weight"], w[pre + "attn.qkv.bias"])
            q, k, v = qkv.reshape(B, N, 3, H, dh).permute(2, 0, 3, 1, 4)
            s = q @ k.transpose(-1, -2) / dh**0.5
            if key_scale is not None:
                s = (s - s.min(-1, keepdim=True).values) * key_scale[:, None, None, :]
            att = s.softmax(-1)
            if keep:
                att.retain_grad()
            a.update(q=q, k=k, v=v, attn=att)
            a["om"] = (att @ v).transpose(1, 2).reshape(B, N, D)
            a["a"] = F.linear(a["om"], w[pre + "attn.proj.weight"], w[pre + "attn.proj.bias"])
            a["h"] = h + a["a"]
            a["n2"] = F.layer_norm(a["h"], (D,), w[pre + "norm2.weight"], w[pre + "norm2.bias"], eps=1e-6)
            a["g1"] = F.gelu(F.linear(a["n2"], w[pre + "mlp.fc1.weight"], w[pre + "mlp.fc1.bias"]))
            a["f2"] = F.linear(a["g1"], w[pre + "mlp.fc2.weight"], w[pre + "mlp.fc2.bias"])
            h = a["h"] + a["f2"]
            acts.append(a)
        hn = F.layer_norm(h, (D,), w["norm.weight"], w["norm.bias"], eps=1e-6)
        self.cls = hn[:, 0]
        out = F.linear(self.cls, w["head.weight"], w["head.bias"]) if head else hn
        return (out, acts) if keep else out


def maps_and_grads(model, x, targets):
    x = x.clone().requires_grad_(True)
    logits, acts = model.forward(x, keep=True)
    logits.gather(1, targets[:, None]).sum().backward()
    return [a["attn"].detach() for a in acts], [a["attn"].grad.detach() for a in acts], logits, acts


def rollout(maps):
    B, _, N, _ = maps[0].shape
    joint = None
    for a in maps:
        m = a.mean(1) + torch.eye(N)
        m = m / m.sum(-1, keepdim=True)
        joint = m if joint is None else m @ joint
    return joint[:, 0, 1:]


def gradcam(maps, grads):
    a, g = maps[-1][:, :, 0, 1:], grads[-1][:, :, 0, 1:]
    w = g.mean(-1, keepdim=True)
    return (a * w).mean(1).clamp(min=0)


def chefer_generic(maps, grads):
    B, _, N, _ = maps[0].shape
    r = torch.eye(N).repeat(B, 1, 1)
    for a, g in zip(maps, grads):
        r = r + (g * a).clamp(min=0).mean(1) @ r
    return r[:, 0, 1:]


def atman(model, x, targets, f, kappa, similarity_rank, loss=None):
    """One perturbed forward per (sample, token), sequentially: no batching tricks. `loss(b,
    key_scale)` replaces the classifier's cross-entropy of sample b (vl_reference.py)."""
    if loss is None:
        def loss(b, key_scale):
            return F.cross_entropy(model.forward(x[b : b + 1], key_scale=key_scale), targets[b : b + 1])
    B = x.shape[0]
    w = model.w
    with torch.no_grad():
        emb = F.conv2d(x, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=model.p).flatten(2).transpose(1, 2)
        T = emb.shape[1]
        out = torch.zeros(B, T)
        for b in range(B):
            e = emb[b] / emb[b].norm(dim=-1, keepdim=True)
            cos = e @ e.T
            clean = loss(b, torch.ones(1, T + 1))
            for t in range(T):
                scale = torch.ones(T + 1)
                for j in range(T):
                    if j == t:
                        scale[1 + j] = f
                    elif cos[t, j] >= kappa:
                        scale[1 + j] = (1 - f) * (1 - cos[t, j]) + f
                out[b, t] = loss(b, scale[None]) - clean
            if similarity_rank:
                out[b] = cos[out[b].argmax()]
    return out


# ---- LRP, Chefer-style: each rule through autograd (gradient x input)
def safe_div(a, b):
    den = torch.where(b == 0, torch.ones_like(b), b)
    return torch.where(b == 0, torch.zeros_like(a), a / den)


def gradprop(z, x, s):
    return torch.autograd.grad(z, x, s, retain_graph=True)[0]


def lrp_linear(x, weight, r):
    x = x.detach()
    x1 = x.clamp(min=0).requires_grad_(True)
    x2 = x.clamp(max=0).requires_grad_(True)
    w1, w2 = weight.clamp(min=0), weight.clamp(max=0)
    z1, z2 = F.linear(x1, w1), F.linear(x2, w2)
    s = safe_div(r, z1 + z2)
    return x1.detach() * gradprop(z1, x1, s) + x2.detach() * gradprop(z2, x2, s)


def lrp_einsum(eq, a, b, r):
    a = a.detach().requires_grad_(True)
    b = b.detach().requires_grad_(True)
    z = torch.einsum(eq, a, b)
    s = safe_div(r, z)
    ga, gb = torch.autograd.grad(z, [a, b], s)
    return a.detach() * ga / 2, b.detach() * gb / 2


def lrp_add(a, b, r):
    a = a.detach().requires_grad_(True)
    b = b.detach().requires_grad_(True)
    z = a + b
    s = safe_div(r, z)
    ga, gb = torch.autograd.grad(z, [a, b], s)
    ra, rb = a.detach() * ga, b.detach() * gb
    dims = tuple(range(1, ra.dim()))
    sa, sb, tot = ra.sum(dims), rb.sum(dims), r.sum(dims)
    fa = safe_div(sa.abs(), sa.abs() + sb.abs()) * tot
    fb = safe_div(sb.abs(), sa.abs() + sb.abs()) * tot
    shape = (-1,) + (1,) * (ra.dim() - 1)
    return ra * safe_div(fa, sa).view(shape), rb * safe_div(fb, sb).view(shape)


def gradlrp(model, x, targets):
    maps, grads, logits, acts = maps_and_grads(model, x, targets)
    w, D = model.w, model.D
    B, N = x.shape[0], maps[0].shape[-1]
    r = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
    r_cls = lrp_linear(model.cls, w["head.weight"], r)
    R = torch.zeros(B, N, D)
    R[:, 0] = r_cls
    return lrp_walk(model, acts, grads, R)


def lrp_walk(model, acts, grads, R):
    """Relevance R [B, N, D] of the last block's output through every block, then the
    gradient-weighted relevance maps combined as in chefer_generic."""
    w, D, H = model.w, model.D, model.H
    B, N = R.shape[0], R.shape[1]
    dh = D // H
    cams = [None] * model.depth
    for i in reversed(range(model.depth)):
        a, pre = acts[i], f"blocks.{i}."
        r_h, r_f2 = lrp_add(a["h"], a["f2"], R)
        r_g1 = lrp_linear(a["g1"], w[pre + "mlp.fc2.weight"], r_f2)
        r_n2 = lrp_linear(a["n2"], w[pre + "mlp.fc1.weight"], r_g1)
        R = r_h + r_n2
        r_x, r_a = lrp_add(a["xin"], a["a"], R)
        r_om = lrp_linear(a["om"], w[pre + "attn.proj.weight"], r_a)
        r_o = r_om.reshape(B, N, H, dh).transpose(1, 2)
        r_attn, r_v = lrp_einsum("bhij,bhjd->bhid", a["attn"], a["v"], r_o)
        cams[i] = r_attn
        r_q, r_k = lrp_einsum("bhid,bhjd->bhij", a["q"], a["k"], r_attn)
        r_qkv = torch.stack([r_q, r_k, r_v]).permute(1, 3, 0, 2, 4).reshape(B, N, 3 * D)
        R = r_x + lrp_linear(a["n1"], w[pre + "attn.qkv.weight"], r_qkv)
    joint = None
    for cam, g in zip(cams, grads):
        m = (g * cam).clamp(min=0).mean(1) + torch.eye(N)
        joint = m if joint is None else m @ joint
    return joint[:, 0, 1:]


def main():
    torch.set_default_dtype(torch.float64)
    arrays, meta = st.load(sys.argv[1])
    w = {k: torch.from_numpy(v).double() for k, v in arrays.items()}
    case, _ = st.load(sys.argv[2])
    x = torch.from_numpy(case["images"]).double()
    targets = torch.from_numpy(case["targets"]).long()
    f = float(case["atman_factor"][0])
    kappa = float(case["atman_kappa"][0])
    model = ViT(w, meta)
    maps, grads, _, _ = maps_and_grads(model, x, targets)
    refs = {
        "rollout": rollout(maps),
        "gradcam": gradcam(maps, grads),
        "chefer_generic": chefer_generic(maps, grads),
        "gradlrp": gradlrp(model, x, targets),
        "atman": atman(model, x, targets, f, kappa, False),
        "atman_similarity": atman(model, x, targets, f, kappa, True),
    }
    compare(refs, {name: case["rel_" + name] for name in refs}, "attribution reference ok")


def compare(refs, ours, ok_message):
    """Prints each reference's largest difference to cts's array of the same name, relative to
    the reference's scale (at least 1e-3); exits 1 if any is above 1e-4."""
    worst = 0.0
    for name, ref in refs.items():
        mine = torch.from_numpy(ours[name]).double().reshape(ref.shape)
        scale = max(1e-3, ref.abs().max().item())
        diff = (ref - mine).abs().max().item() / scale
        print(f"{name:17s} max |cts - reference| / scale = {diff:.3e}   (scale {scale:.3g})")
        worst = max(worst, diff)
    if worst > 1e-4:
        print("FAIL: difference above 1e-4")
        sys.exit(1)
    print(ok_message)


if __name__ == "__main__":
    main()
