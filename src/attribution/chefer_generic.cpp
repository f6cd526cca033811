// chefer-generic:  R = I;  R += mean_h((∇A_b ⊙ A_b)^+) R  for every block b;  relevance = R[0, 1:]
// (an encoder-decoder model reads R through its decoder instead: ExplainedModel::token_relevance).
#include "cts/attribution/chefer_generic.hpp"

#include "cts/attribution/attention_record.hpp"

namespace cts {

torch::Tensor CheferGenericTokenSelector::score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) {
  check_relevance_images(model, images_u8, name());
  auto& vit = require_encoder(model, name());
  auto rec = record_attention(model, vit->normalize(images_u8), /*with_grads=*/true);
  torch::NoGradGuard no_grad;
  const int64_t B = images_u8.size(0), N = rec.maps.front().size(-1);
  auto r = torch::eye(N, rec.maps.front().options()).unsqueeze(0).repeat({B, 1, 1});  // [B, N, N]
  for (size_t b = 0; b < rec.maps.size(); ++b) {
    auto cam = (rec.grads[b] * rec.maps[b]).clamp_min(0).mean(1);  // [B, N, N]
    r = r + torch::matmul(cam, r);
  }
  return model.token_relevance(r, rec.tokens, /*gradient_weighted=*/true);
}

}  // namespace cts
