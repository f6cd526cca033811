// gradlrp:  Ā_b = mean_h((∇A_b ⊙ R_{A_b})^+);  C = Π_b (Ā_b + I);  relevance = C[0, 1:].
#include "cts/attribution/gradlrp.hpp"

#include "cts/attribution/attention_record.hpp"

namespace cts {

torch::Tensor transformer_attribution(const LrpResult& lrp) {
  TORCH_CHECK(!lrp.attn_relevance.empty(), "gradlrp needs at least one block");
  const int64_t N = lrp.attn_relevance.front().size(-1);
  auto eye = torch::eye(N, lrp.attn_relevance.front().options());
  torch::Tensor joint;
  for (size_t b = 0; b < lrp.attn_relevance.size(); ++b) {
    auto cam = (lrp.attn_grad[b].to(lrp.attn_relevance[b].dtype()) * lrp.attn_relevance[b]).clamp_min(0).mean(1) + eye;  // [B, N, N]
    joint = joint.defined() ? torch::matmul(cam, joint) : cam;
  }
  return joint;
}

torch::Tensor GradLrpTokenSelector::score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) {
  check_relevance_images(model, images_u8, name());
  auto& vit = require_encoder(model, name());
  auto lrp = lrp_propagate(model, vit->normalize(images_u8));
  return cls_row_relevance(transformer_attribution(lrp));
}

}  // namespace cts
