// rollout:  Â_b = rownorm(mean_h(A_b) + I);  C = Â_B ··· Â_1;  relevance = C[0, 1:]
// (an encoder-decoder model reads C through its decoder instead: ExplainedModel::token_relevance).
#include "cts/attribution/rollout.hpp"

#include "cts/attribution/attention_record.hpp"

namespace cts {

torch::Tensor attention_rollout(const std::vector<torch::Tensor>& maps) {
  TORCH_CHECK(!maps.empty(), "rollout needs at least one attention map");
  const int64_t N = maps.front().size(-1);
  auto eye = torch::eye(N, maps.front().options());
  torch::Tensor joint;
  for (const auto& a : maps) {
    auto m = a.mean(1) + eye;              // [B, N, N]
    m = m / m.sum(-1, /*keepdim=*/true);  // rows sum to 1
    joint = joint.defined() ? torch::matmul(m, joint) : m;
  }
  return joint;
}

torch::Tensor RolloutTokenSelector::score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) {
  check_relevance_images(model, images_u8, name());
  auto& vit = require_encoder(model, name());
  torch::NoGradGuard no_grad;
  auto rec = record_attention(model, vit->normalize(images_u8), /*with_grads=*/false);
  return model.token_relevance(attention_rollout(rec.maps), rec.tokens, /*gradient_weighted=*/false);
}

}  // namespace cts
