// Coreset (sample) selection interface. Runs per class on the just-finished task's
// training samples; input rows are that class's samples. Methods are seeded and
// deterministic: the same input and seed give the same indices and weights.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>

namespace cts {

struct CoresetInput {
  torch::Tensor features;   // [N, D] penultimate (pre-logits) features, not normalised (if needs_features)
  torch::Tensor gradients;  // [N, C] last-layer gradients softmax(z) - onehot(y) (if needs_gradients)
  int64_t budget = 0;       // samples to keep, 1 <= budget <= N
  uint64_t seed = 0;
  int64_t task = 0, class_id = 0;  // for seeding
  int64_t num_samples = 0;         // N
};

struct CoresetResult {
  torch::Tensor indices;  // int64 [budget] rows of the input, ascending
  torch::Tensor weights;  // float [budget] (CRAIG cluster sizes, GradMatch weights; ones for others), all >= 0
  // int64 [budget]: each index's place in the method's own order (0 = chosen first: herding's
  // and CRAIG's greedy order, GradMatch's OMP order then its random fill, random's draw). A
  // fixed-size memory that shrinks a class keeps its first samples in this order (iCaRL).
  torch::Tensor rank;
};

// Sorts `order` (rows in the method's order) ascending; `rank` gets each sorted row's place in `order`.
void sort_with_rank(const torch::Tensor& order, CoresetResult& result);

// Options of the gradient-based methods (config keys memory.coreset_*, memory.gradmatch_*).
struct SampleSelectorOptions {
  // Per-sample gradient seen by craig and gradmatch: "logits" = g_i = softmax(z_i) - onehot(y_i)
  // (the head-bias gradient, C numbers); "logits-embedding" = [g_i, g_i ⊗ e_i] (head bias and
  // weight gradient, C·(D+1) numbers, e_i the pre-logits embedding).
  std::string gradient = "logits";
  double gradmatch_lambda = 0.5;      // ridge λ of the weight solve
  double gradmatch_tolerance = 1e-4;  // stop when ||residual|| / ||target|| < tolerance
  int64_t craig_matrix_bytes = int64_t(1) << 30;  // largest N×N distance matrix CRAIG may hold
};

class SampleSelector {
 public:
  virtual ~SampleSelector() = default;
  virtual std::string name() const = 0;
  virtual bool needs_features() const { return false; }
  virtual bool needs_gradients() const { return false; }
  virtual CoresetResult select(const CoresetInput& input) = 0;
};

// Checks the common input contract (budget range, row counts); TORCH_CHECK errors name the method.
void check_coreset_input(const CoresetInput& input, const SampleSelector& method);

}  // namespace cts
