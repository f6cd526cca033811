// rollout (Abnar & Zuidema 2020): attention rollout.
//   Â_b = rownorm(mean_h(A_b) + I),   C = Â_B · ... · Â_1,   relevance_t = C[0, t]  (t = 1..T)
// Gradient-free; one explicit forward pass per batch.
#pragma once
#include "cts/attribution/token_selector.hpp"

namespace cts {

class RolloutTokenSelector : public TokenSelector {
 public:
  std::string name() const override { return "rollout"; }

 protected:
  torch::Tensor score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) override;
};

// The rollout of recorded maps (per block [B, Hd, N, N]) -> [B, N, N].
torch::Tensor attention_rollout(const std::vector<torch::Tensor>& maps);

}  // namespace cts
