// gradcam: Chefer et al.'s attention Grad-CAM baseline, last block B only.
//   w_h = mean_{t=1..T} dy_c/dA_B[h, 0, t]
//   relevance_t = max(0, mean_h(A_B[h, 0, t] · w_h))
// y_c is the target logit. One forward and one backward per batch.
#pragma once
#include "cts/attribution/token_selector.hpp"

namespace cts {

class GradCamTokenSelector : public TokenSelector {
 public:
  std::string name() const override { return "gradcam"; }

 protected:
  torch::Tensor score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) override;
};

}  // namespace cts
