// Token selector registry and top-k selection.
#include "cts/attribution/registry.hpp"

#include <torch/torch.h>

#include "cts/attribution/atman.hpp"
#include "cts/attribution/chefer_generic.hpp"
#include "cts/attribution/gradcam.hpp"
#include "cts/attribution/gradlrp.hpp"
#include "cts/attribution/random.hpp"
#include "cts/attribution/rollout.hpp"
#include "cts/core/error.hpp"
#include "cts/core/format.hpp"
#include "cts/core/rng.hpp"

namespace cts {

torch::Tensor TokenSelector::relevance(VisionTransformer& model, const torch::Tensor& images_u8, const torch::Tensor& targets,
                                       const torch::Tensor& sample_ids) {
  if (targets.dim() != 1 || targets.size(0) != images_u8.size(0)) {
    throw_input("{}: need one target per image ([{}]), got {}", name(), images_u8.size(0), shape_str(targets.sizes()));
  }
  ClassifierExplained explained(model, targets, name());
  return score_tokens(explained, images_u8, sample_ids);
}

std::vector<std::string> token_selector_names() { return {"random", "rollout", "gradcam", "gradlrp", "chefer-generic", "atman"}; }

std::unique_ptr<TokenSelector> make_token_selector(const std::string& name, const TokenSelectorOptions& options) {
  if (name == "random") return std::make_unique<RandomTokenSelector>(options.seed);
  if (name == "rollout") return std::make_unique<RolloutTokenSelector>();
  if (name == "gradcam") return std::make_unique<GradCamTokenSelector>();
  if (name == "gradlrp") return std::make_unique<GradLrpTokenSelector>();
  if (name == "chefer-generic") return std::make_unique<CheferGenericTokenSelector>();
  if (name == "atman") return std::make_unique<AtmanTokenSelector>(options);
  throw_input("token selection method '{}' is not known; accepted: {}", name, fmt::join(token_selector_names(), ", "));
}

namespace {

// Every token of each row, most relevant first (ties by tie_keys, else by the lower index).
torch::Tensor token_order(const torch::Tensor& relevance, const torch::Tensor& tie_keys) {
  TORCH_CHECK(relevance.dim() == 2, "relevance must be [B, T], got ", relevance.sizes());
  auto scores = relevance.to(torch::kCPU, torch::kFloat32);
  TORCH_CHECK(torch::isfinite(scores).all().item<bool>(), "relevance contains NaN or infinite values");
  if (tie_keys.defined()) {
    TORCH_CHECK(tie_keys.sizes() == relevance.sizes(), "tie_keys must be [B, T] like relevance");
    // Visit tokens in the order of their keys, then sort stably by score: equal scores keep
    // the key order, i.e. ties are broken by the keys.
    auto visit = std::get<1>(torch::sort(tie_keys.to(torch::kCPU, torch::kFloat32), c10::optional<bool>(true), /*dim=*/1, /*descending=*/false));
    auto permuted = scores.gather(1, visit);
    auto by_score = std::get<1>(torch::sort(permuted, /*stable=*/true, /*dim=*/1, /*descending=*/true));
    return visit.gather(1, by_score);
  }
  // Stable descending sort: equal scores keep index order, so ties go to the lower index.
  return std::get<1>(torch::sort(scores, /*stable=*/true, /*dim=*/1, /*descending=*/true));
}

}  // namespace

torch::Tensor top_tokens(const torch::Tensor& relevance, int64_t k, const torch::Tensor& tie_keys) {
  TORCH_CHECK(relevance.dim() == 2, "relevance must be [B, T], got ", relevance.sizes());
  TORCH_CHECK(k >= 1 && k <= relevance.size(1), "cannot keep ", k, " of ", relevance.size(1), " tokens");
  return std::get<0>(torch::sort(token_order(relevance, tie_keys).narrow(1, 0, k), 1));
}

torch::Tensor top_tokens(const torch::Tensor& relevance, const torch::Tensor& counts, const torch::Tensor& tie_keys) {
  TORCH_CHECK(relevance.dim() == 2, "relevance must be [B, T], got ", relevance.sizes());
  const int64_t B = relevance.size(0), T = relevance.size(1);
  auto c = counts.to(torch::kCPU, torch::kInt64).contiguous();
  TORCH_CHECK(c.dim() == 1 && c.size(0) == B, "counts must be [B] = [", B, "], got ", c.sizes());
  TORCH_CHECK(B == 0 || (c.min().item<int64_t>() >= 1 && c.max().item<int64_t>() <= T), "counts must lie in [1, ", T, "]");
  const int64_t kmax = B ? c.max().item<int64_t>() : 0;
  auto order = token_order(relevance, tie_keys).narrow(1, 0, kmax).contiguous();
  // Tokens past a row's count become T (sorted last), then -1.
  auto rank = torch::arange(kmax, torch::kInt64).unsqueeze(0).expand({B, kmax});
  auto masked = torch::where(rank < c.unsqueeze(1), order, torch::full_like(order, T));
  auto sorted = std::get<0>(torch::sort(masked, 1));
  return torch::where(sorted == T, torch::full_like(sorted, -1), sorted);
}

torch::Tensor token_tie_keys(const torch::Tensor& sample_ids, int64_t num_tokens, uint64_t seed) {
  auto ids = sample_ids.to(torch::kCPU, torch::kInt64).contiguous();
  auto out = torch::empty({ids.size(0), num_tokens}, torch::kFloat32);
  for (int64_t b = 0; b < ids.size(0); ++b) {
    auto gen = make_generator(seed, "token_ties", {ids.data_ptr<int64_t>()[b]});
    out[b].copy_(torch::rand({num_tokens}, gen));
  }
  return out;
}

}  // namespace cts
