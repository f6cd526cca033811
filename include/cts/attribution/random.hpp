// random: uniform choice of k*T tokens per sample, a real seeded permutation.
// relevance_i = u_i, u ~ U(0,1)^T drawn from a stream seeded by (seed, sample id), so a
// sample gets the same tokens whatever its batch.
#pragma once
#include "cts/attribution/token_selector.hpp"

namespace cts {

class RandomTokenSelector : public TokenSelector {
 public:
  explicit RandomTokenSelector(uint64_t seed) : seed_(seed) {}
  std::string name() const override { return "random"; }
  bool needs_encoder() const override { return false; }

 protected:
  torch::Tensor score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) override;

 private:
  uint64_t seed_;
};

}  // namespace cts
