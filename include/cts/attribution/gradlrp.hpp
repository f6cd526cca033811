// gradlrp (Chefer et al. 2021b "transformer attribution", the core-tokenset paper's eq. 4/7):
//   Ā_b = mean_h((∇A_b ⊙ R_{A_b})^+),   C = Π_b (Ā_b + I) = (Ā_B + I) ··· (Ā_1 + I),
//   relevance_t = C[0, t]
// R_{A_b} is the LRP relevance of block b's attention map, propagated from the one-hot target
// logit through every layer by the rules in lrp.hpp; ∇A_b the target logit's gradient.
// No row normalisation. One forward, one backward and one relevance pass per batch.
#pragma once
#include "cts/attribution/lrp.hpp"
#include "cts/attribution/token_selector.hpp"

namespace cts {

class GradLrpTokenSelector : public TokenSelector {
 public:
  std::string name() const override { return "gradlrp"; }

 protected:
  torch::Tensor score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) override;
};

// The gradlrp rollout of an LRP result -> [B, N, N].
torch::Tensor transformer_attribution(const LrpResult& lrp);

}  // namespace cts
