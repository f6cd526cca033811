// Layer-wise relevance propagation through the ViT; the rules are listed in lrp.hpp.
#include "cts/attribution/lrp.hpp"

#include "cts/attribution/attention_record.hpp"

namespace cts {
namespace {

// a / b where b != 0, else 0 (so a unit with no contribution passes no relevance).
torch::Tensor safe_div(const torch::Tensor& a, const torch::Tensor& b) {
  auto nz = b != 0;
  return torch::where(nz, a / torch::where(nz, b, torch::ones_like(b)), torch::zeros_like(a));
}

torch::Tensor per_sample_sum(const torch::Tensor& r) { return r.reshape({r.size(0), -1}).sum(1); }

// Linear rule for one sign pattern: Z = x1 w1ᵀ + x2 w2ᵀ, R_x = x1 (S w1) + x2 (S w2).
torch::Tensor linear_part(const torch::Tensor& x1, const torch::Tensor& w1, const torch::Tensor& x2, const torch::Tensor& w2,
                          const torch::Tensor& r) {
  auto z = torch::matmul(x1, w1.t()) + torch::matmul(x2, w2.t());
  auto s = safe_div(r, z);
  return x1 * torch::matmul(s, w1) + x2 * torch::matmul(s, w2);
}

}  // namespace

torch::Tensor lrp_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& r, double alpha) {
  auto xp = x.clamp_min(0), xn = x.clamp_max(0), wp = w.clamp_min(0), wn = w.clamp_max(0);
  auto activator = linear_part(xp, wp, xn, wn, r);
  const double beta = alpha - 1.0;
  if (beta == 0.0) return activator;
  auto inhibitor = linear_part(xp, wn, xn, wp, r);
  return alpha * activator - beta * inhibitor;
}

std::pair<torch::Tensor, torch::Tensor> lrp_matmul(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& r) {
  auto s = safe_div(r, torch::matmul(a, b));
  auto ra = a * torch::matmul(s, b.transpose(-2, -1));
  auto rb = b * torch::matmul(a.transpose(-2, -1), s);
  return {ra * 0.5, rb * 0.5};
}

std::pair<torch::Tensor, torch::Tensor> lrp_add(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& r) {
  auto s = safe_div(r, a + b);
  auto ra = a * s, rb = b * s;
  auto sa = per_sample_sum(ra), sb = per_sample_sum(rb), total = per_sample_sum(r);
  auto fa = safe_div(sa.abs(), sa.abs() + sb.abs()) * total;  // target totals, fa + fb = total
  auto fb = safe_div(sb.abs(), sa.abs() + sb.abs()) * total;
  std::vector<int64_t> shape(static_cast<size_t>(a.dim()), 1);
  shape[0] = a.size(0);
  ra = ra * safe_div(fa, sa).view(shape);
  rb = rb * safe_div(fb, sb).view(shape);
  return {ra, rb};
}

torch::Tensor lrp_zb(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& lo, const torch::Tensor& hi, const torch::Tensor& r) {
  auto wp = w.clamp_min(0), wn = w.clamp_max(0);
  auto l = lo.view({-1, 1, 1}), h = hi.view({-1, 1, 1});
  auto z = torch::matmul(x - l, wp.t()) + torch::matmul(x - h, wn.t());  // >= 0
  auto s = safe_div(r, z);
  return (x - l) * torch::matmul(s, wp) + (x - h) * torch::matmul(s, wn);
}

LrpResult lrp_propagate(VisionTransformer& model, const torch::Tensor& x, const torch::Tensor& targets, const LrpOptions& options) {
  ClassifierExplained explained(model, targets, "lrp");
  return lrp_propagate(explained, x, options);
}

LrpResult lrp_propagate(ExplainedModel& explained, const torch::Tensor& x_in, const LrpOptions& opt) {
  VisionTransformer& model = require_encoder(explained, "gradlrp");
  EvalModeGuard guard(model, /*grad=*/true);  // attribution runs inside no-grad phases
  const auto& cfg = model->config();
  const auto dtype = opt.double_precision ? torch::kFloat64 : torch::kFloat32;
  const int64_t B = x_in.size(0), C = cfg.in_chans, p = cfg.patch_size, g = cfg.grid(), T = cfg.num_patches(), N = T + 1;
  const int64_t D = cfg.embed_dim, H = cfg.num_heads, dh = D / H, P = C * p * p;
  auto P_ = [&](const torch::Tensor& t) { return t.detach().to(dtype); };
  auto x = x_in.detach().to(dtype).requires_grad_(true);

  // ---- explicit forward, keeping what the rules need
  struct BlockActs {
    torch::Tensor xin, n1, q, k, v, attn, om, a, h, n2, g1, f2;
  };
  std::vector<BlockActs> acts;
  auto patches = x.reshape({B, C, g, p, g, p}).permute({0, 2, 4, 1, 3, 5}).reshape({B, T, P});
  auto wc = P_(model->patch_embed->proj->weight).view({D, P});
  auto tok = torch::matmul(patches, wc.t()) + P_(model->patch_embed->proj->bias);
  auto e = torch::cat({P_(model->cls_token).expand({B, 1, D}), tok}, 1);  // [B, N, D]
  auto pos = P_(model->pos_embed).expand({B, N, D});
  auto z = e + pos;
  for (auto& m : model->blocks->children()) {
    auto blk = std::static_pointer_cast<BlockImpl>(m);
    BlockActs s;
    s.xin = z;
    s.n1 = torch::layer_norm(z, {D}, P_(blk->norm1->weight), P_(blk->norm1->bias), cfg.ln_eps);
    auto qkv_b = blk->attn->qkv->bias.defined() ? P_(blk->attn->qkv->bias) : torch::Tensor();
    auto qkv = torch::linear(s.n1, P_(blk->attn->qkv->weight), qkv_b).reshape({B, N, 3, H, dh}).permute({2, 0, 3, 1, 4});
    s.q = qkv[0], s.k = qkv[1], s.v = qkv[2];  // [B, H, N, dh]
    s.attn = torch::softmax(torch::matmul(s.q, s.k.transpose(-2, -1)) * blk->attn->scale, -1);
    s.om = torch::matmul(s.attn, s.v).transpose(1, 2).reshape({B, N, D});
    s.a = torch::linear(s.om, P_(blk->attn->proj->weight), P_(blk->attn->proj->bias));
    s.h = z + s.a;
    s.n2 = torch::layer_norm(s.h, {D}, P_(blk->norm2->weight), P_(blk->norm2->bias), cfg.ln_eps);
    s.g1 = torch::gelu(torch::linear(s.n2, P_(blk->mlp->fc1->weight), P_(blk->mlp->fc1->bias)));
    s.f2 = torch::linear(s.g1, P_(blk->mlp->fc2->weight), P_(blk->mlp->fc2->bias));
    z = s.h + s.f2;
    acts.push_back(s);
  }
  auto nf = torch::layer_norm(z, {D}, P_(model->norm->weight), P_(model->norm->bias), cfg.ln_eps);

  LrpResult res;
  {
    std::vector<torch::Tensor> maps;
    for (auto& s : acts) maps.push_back(s.attn);
    auto score = explained.score(nf, torch::Tensor());  // [B]
    auto grads = torch::autograd::grad({score.sum()}, maps, {}, false, false, /*allow_unused=*/true);
    for (size_t i = 0; i < grads.size(); ++i) res.attn_grad.push_back(grads[i].defined() ? grads[i].detach() : torch::zeros_like(maps[i]));
    res.score = score.detach();
  }

  // ---- relevance propagation (closed form, no autograd)
  torch::NoGradGuard no_grad;
  auto note = [&](const std::string& name, std::initializer_list<torch::Tensor> parts) {
    if (!opt.trace) return;
    torch::Tensor total;
    for (const auto& t : parts) total = total.defined() ? total + per_sample_sum(t) : per_sample_sum(t);
    res.trace.push_back({name, total.to(torch::kCPU, torch::kFloat64)});
  };
  auto R = explained.output_relevance(nf.detach(), opt.alpha);  // [B, N, D]
  note("output", {R});
  res.attn.resize(acts.size());
  res.attn_relevance.resize(acts.size());
  for (int64_t i = static_cast<int64_t>(acts.size()) - 1; i >= 0; --i) {
    const auto& s = acts[static_cast<size_t>(i)];
    auto blk = std::static_pointer_cast<BlockImpl>(model->blocks->ptr(i));
    const std::string pre = "blocks." + std::to_string(i) + ".";
    auto [R_h, R_f2] = lrp_add(s.h.detach(), s.f2.detach(), R);
    note(pre + "add2", {R_h, R_f2});
    auto R_g1 = lrp_linear(s.g1.detach(), P_(blk->mlp->fc2->weight), R_f2, opt.alpha);
    note(pre + "mlp.fc2", {R_h, R_g1});
    auto R_n2 = lrp_linear(s.n2.detach(), P_(blk->mlp->fc1->weight), R_g1, opt.alpha);  // GELU passes through
    note(pre + "mlp.fc1", {R_h, R_n2});
    R = R_h + R_n2;  // norm2 passes through; the branch point sums
    note(pre + "clone2", {R});
    auto [R_xin, R_a] = lrp_add(s.xin.detach(), s.a.detach(), R);
    note(pre + "add1", {R_xin, R_a});
    auto R_om = lrp_linear(s.om.detach(), P_(blk->attn->proj->weight), R_a, opt.alpha);
    note(pre + "attn.proj", {R_xin, R_om});
    auto R_o = R_om.view({B, N, H, dh}).transpose(1, 2);  // [B, H, N, dh]
    auto [R_attn, R_v] = lrp_matmul(s.attn.detach(), s.v.detach(), R_o);
    note(pre + "attn.matmul2", {R_xin, R_attn, R_v});
    res.attn[static_cast<size_t>(i)] = s.attn.detach();
    res.attn_relevance[static_cast<size_t>(i)] = R_attn;
    // softmax passes through; Z = Q Kᵀ (the scale is homogeneous and cancels).
    auto [R_q, R_kt] = lrp_matmul(s.q.detach(), s.k.detach().transpose(-2, -1), R_attn);
    auto R_k = R_kt.transpose(-2, -1);
    note(pre + "attn.matmul1", {R_xin, R_q, R_k, R_v});
    auto R_qkv = torch::stack({R_q, R_k, R_v}).permute({1, 3, 0, 2, 4}).reshape({B, N, 3 * D});
    auto R_n1 = lrp_linear(s.n1.detach(), P_(blk->attn->qkv->weight), R_qkv, opt.alpha);
    note(pre + "attn.qkv", {R_xin, R_n1});
    R = R_xin + R_n1;  // norm1 passes through
    note(pre + "clone1", {R});
  }
  res.token_relevance = R;
  if (opt.input_relevance) {
    auto [R_e, R_pos] = lrp_add(e.detach(), pos.detach(), R);
    note("embed.add_pos", {R_e, R_pos});
    auto R_tok = R_e.narrow(1, 1, T);  // the CLS token's share stays with the cls_token parameter
    note("embed.patch_tokens", {R_tok});
    auto xd = x.detach();
    auto flat = xd.reshape({B, -1});
    auto lo = std::get<0>(flat.min(1)), hi = std::get<0>(flat.max(1));
    auto R_pix = lrp_zb(patches.detach(), wc, lo, hi, R_tok);  // [B, T, P]
    note("patch_embed", {R_pix});
    res.pixel_relevance = R_pix.view({B, g, g, C, p, p}).permute({0, 3, 1, 4, 2, 5}).reshape({B, C, g * p, g * p});
  }
  return res;
}

}  // namespace cts
