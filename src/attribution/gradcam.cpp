// gradcam:  w_h = mean_t dy_c/dA_B[h,0,t];  relevance_t = max(0, mean_h A_B[h,0,t] w_h)  (t = 1..T).
#include "cts/attribution/gradcam.hpp"

#include "cts/attribution/attention_record.hpp"

namespace cts {

torch::Tensor GradCamTokenSelector::score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) {
  check_relevance_images(model, images_u8, name());
  auto& vit = require_encoder(model, name());
  auto rec = record_attention(model, vit->normalize(images_u8), /*with_grads=*/true);
  torch::NoGradGuard no_grad;
  const auto& a = rec.maps.back();   // [B, Hd, N, N]
  const auto& g = rec.grads.back();  // [B, Hd, N, N]
  const int64_t T = a.size(-1) - 1;
  auto a_cls = a.select(2, 0).narrow(-1, 1, T);                 // [B, Hd, T]
  auto w = g.select(2, 0).narrow(-1, 1, T).mean(-1, true);      // [B, Hd, 1]
  return (a_cls * w).mean(1).clamp_min(0).to(torch::kCPU, torch::kFloat32).contiguous();  // [B, T]
}

}  // namespace cts
