// random: relevance_i = u_i ~ U(0,1), one stream per sample id (batch-invariant).
#include "cts/attribution/random.hpp"

#include "cts/core/rng.hpp"

namespace cts {

torch::Tensor RandomTokenSelector::score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) {
  const int64_t B = images_u8.size(0), T = model.num_tokens();
  TORCH_CHECK(sample_ids.numel() == B, "random tokens: need one sample id per image");
  auto ids = sample_ids.to(torch::kCPU, torch::kInt64).contiguous();
  auto out = torch::empty({B, T}, torch::kFloat32);
  for (int64_t b = 0; b < B; ++b) {
    auto gen = make_generator(seed_, "random_tokens", {ids.data_ptr<int64_t>()[b]});
    out[b].copy_(torch::rand({T}, gen));
  }
  return out;
}

}  // namespace cts
