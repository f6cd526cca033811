// gradmatch (Killamsetty et al. 2021a, GRAD-MATCH): non-negative orthogonal matching
// pursuit choosing samples whose weighted gradient sum matches the class's full gradient sum.
#pragma once
#include <vector>

#include "cts/coreset/sample_selector.hpp"

namespace cts {

struct OmpResult {
  std::vector<int64_t> indices;  // support, in the order the atoms entered (drops removed)
  std::vector<double> weights;   // w_j > 0 (or exactly 0 only if the solve returned 0), same order
  double residual_ratio = 0.0;   // ||target − Σ w_j x_j|| / ||target|| at the end
  int64_t iterations = 0;        // atoms tried (including ones dropped again)
};

// Non-negative OMP with ridge λ: rows x_j of `atoms` [N, G], `target` [G]. At most
// `max_atoms` atoms; stops early when ||r|| / ||target|| < tolerance or no atom has a
// positive correlation with the residual. λ > 0.
OmpResult nonnegative_omp(const torch::Tensor& atoms, const torch::Tensor& target, int64_t max_atoms, double lambda, double tolerance);

class GradMatchCoreset : public SampleSelector {
 public:
  explicit GradMatchCoreset(SampleSelectorOptions options = {}) : opt_(std::move(options)) {}
  std::string name() const override { return "gradmatch"; }
  bool needs_gradients() const override { return true; }
  bool needs_features() const override { return opt_.gradient == "logits-embedding"; }
  CoresetResult select(const CoresetInput& input) override;

 private:
  SampleSelectorOptions opt_;
};

}  // namespace cts
