// Coreset (sample) selection interface. Runs per class on the just-finished task's
// training samples; input rows are that class's samples.
#pragma once
#include <torch/types.h>

#include <memory>
#include <string>

namespace cts {

struct CoresetInput {
  torch::Tensor features;   // [N, D] normalised-or-not penultimate features (if needs_features)
  torch::Tensor gradients;  // [N, G] last-layer gradients softmax(z) - onehot(y) (if needs_gradients)
  int64_t budget = 0;       // samples to keep, 1 <= budget <= N
  uint64_t seed = 0;
  int64_t task = 0, class_id = 0;  // for seeding
  int64_t num_samples = 0;         // N
};

struct CoresetResult {
  torch::Tensor indices;  // int64 [budget] rows of the input, ascending
  torch::Tensor weights;  // float [budget] (CRAIG cluster sizes, GradMatch weights; ones for others)
};

class SampleSelector {
 public:
  virtual ~SampleSelector() = default;
  virtual std::string name() const = 0;
  virtual bool needs_features() const { return false; }
  virtual bool needs_gradients() const { return false; }
  virtual CoresetResult select(const CoresetInput& input) = 0;
};

}  // namespace cts
