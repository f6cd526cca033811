// chefer-generic (Chefer et al. 2021a, "generic attention-model explainability"):
//   R = I;  for b = 1..B:  R ← R + mean_h((∇A_b ⊙ A_b)^+) · R;   relevance_t = R[0, t]
// ∇A_b is the gradient of the target logit. One forward and one backward per batch.
#pragma once
#include "cts/attribution/token_selector.hpp"

namespace cts {

class CheferGenericTokenSelector : public TokenSelector {
 public:
  std::string name() const override { return "chefer-generic"; }

 protected:
  torch::Tensor score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) override;
};

}  // namespace cts
