// herding (iCaRL, Rebuffi et al. 2017; DyTox's default): greedily picks samples whose
// running mean of L2-normalised penultimate features stays closest to the class mean.
#pragma once
#include "cts/coreset/sample_selector.hpp"

namespace cts {

class HerdingCoreset : public SampleSelector {
 public:
  std::string name() const override { return "herding"; }
  bool needs_features() const override { return true; }
  CoresetResult select(const CoresetInput& input) override;
};

// The first `count` herding picks, in the order they were chosen: int64 [count].
// features [N, D] (normalised here: f_i / ||f_i||; all-zero rows stay zero).
torch::Tensor herding_order(const torch::Tensor& features, int64_t count);

}  // namespace cts
