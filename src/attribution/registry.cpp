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
#include "cts/core/rng.hpp"

namespace cts {

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

torch::Tensor top_tokens(const torch::Tensor& relevance, int64_t k, const torch::Tensor& tie_keys) {
  TORCH_CHECK(relevance.dim() == 2, "relevance must be [B, T], got ", relevance.sizes());
  TORCH_CHECK(k >= 1 && k <= relevance.size(1), "cannot keep ", k, " of ", relevance.size(1), " tokens");
  auto scores = relevance.to(torch::kCPU, torch::kFloat32);
  TORCH_CHECK(torch::isfinite(scores).all().item<bool>(), "relevance contains NaN or infinite values");
  torch::Tensor order;
  if (tie_keys.defined()) {
    TORCH_CHECK(tie_keys.sizes() == relevance.sizes(), "tie_keys must be [B, T] like relevance");
    // Visit tokens in the order of their keys, then sort stably by score: equal scores keep
    // the key order, i.e. ties are broken by the keys.
    auto visit = std::get<1>(torch::sort(tie_keys.to(torch::kCPU, torch::kFloat32), c10::optional<bool>(true), /*dim=*/1, /*descending=*/false));
    auto permuted = scores.gather(1, visit);
    auto by_score = std::get<1>(torch::sort(permuted, /*stable=*/true, /*dim=*/1, /*descending=*/true));
    order = visit.gather(1, by_score);
  } else {
    // Stable descending sort: equal scores keep index order, so ties go to the lower index.
    order = std::get<1>(torch::sort(scores, /*stable=*/true, /*dim=*/1, /*descending=*/true));
  }
  return std::get<0>(torch::sort(order.narrow(1, 0, k), 1));
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
