// atman: relevance_t = CE(target | key column t (and its cosine-similar tokens) suppressed in
// every block and head) − CE(target | clean). Perturbed copies run in batches.
#include "cts/attribution/atman.hpp"

#include "cts/attribution/attention_record.hpp"
#include "cts/core/error.hpp"

namespace cts {

AtmanTokenSelector::AtmanTokenSelector(const TokenSelectorOptions& o)
    : factor_(o.atman_factor), kappa_(o.atman_kappa), similarity_rank_(o.atman_similarity_rank), chunk_(o.atman_chunk) {
  if (!(factor_ >= 0.0 && factor_ < 1.0)) throw_input("memory.atman_factor = {}; accepted: 0 <= f < 1 (0.1 suppresses to 10 %)", factor_);
  if (!(kappa_ >= 0.0 && kappa_ <= 1.0)) throw_input("memory.atman_kappa = {}; accepted: 0 <= kappa <= 1", kappa_);
  if (chunk_ < 1) throw_input("memory.atman_chunk = {}; accepted: >= 1", chunk_);
}

torch::Tensor AtmanTokenSelector::score_tokens(ExplainedModel& explained, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) {
  check_relevance_images(explained, images_u8, name());
  auto& model = require_encoder(explained, name());
  EvalModeGuard guard(model, /*grad=*/true);  // attribution runs inside no-grad phases
  torch::NoGradGuard no_grad;
  const int64_t B = images_u8.size(0), T = model->config().num_patches(), N = T + 1;
  if (B == 0) return torch::zeros({0, T});
  auto x = model->normalize(images_u8);

  // Suppression factors [B, T (suppressed token t), N (key column)].
  auto emb = model->patch_embed->proj(x).flatten(2).transpose(1, 2);  // [B, T, D]
  auto unit = emb / emb.norm(2, -1, true).clamp_min(1e-12);
  auto cos = torch::matmul(unit, unit.transpose(1, 2));  // [B, T, T]
  auto eye = torch::eye(T, cos.options()).to(torch::kBool).unsqueeze(0);
  auto similar = ((1.0 - factor_) * (1.0 - cos) + factor_).clamp(factor_, 1.0);
  auto f = torch::where(cos >= kappa_, similar, torch::ones_like(cos));
  f = torch::where(eye, torch::full_like(cos, factor_), f);
  auto scale = torch::cat({torch::ones({B, T, 1}, f.options()), f}, 2).reshape({B * T, N});

  // Per-row loss of the explained target (rows: the sample each copy belongs to).
  auto run = [&](const torch::Tensor& xs, const torch::Tensor& ks, const torch::Tensor& rows) {
    AttentionProbe probe;
    probe.key_scale = ks;
    ForwardOptions opt;
    opt.probe = &probe;
    return explained.loss(model->forward_features(xs, opt), rows);
  };
  const auto ce_clean = run(x, torch::ones({B, N}, x.options()), torch::arange(B, torch::TensorOptions().dtype(torch::kInt64).device(x.device())));  // [B]

  auto rel = torch::empty({B * T}, x.options());
  auto owner = torch::arange(B, torch::TensorOptions().dtype(torch::kInt64).device(x.device())).repeat_interleave(T);  // copy -> sample
  for (int64_t i = 0; i < B * T; i += chunk_) {
    const int64_t c = std::min(chunk_, B * T - i);
    auto own = owner.narrow(0, i, c);
    auto ce = run(x.index_select(0, own), scale.narrow(0, i, c), own);
    rel.narrow(0, i, c).copy_(ce - ce_clean.index_select(0, own));
  }
  rel = rel.view({B, T});
  if (similarity_rank_) {
    auto best = rel.argmax(1);  // [B]
    rel = cos.gather(1, best.view({B, 1, 1}).expand({B, 1, T})).squeeze(1);
  }
  return rel.to(torch::kCPU, torch::kFloat32).contiguous();
}

}  // namespace cts
