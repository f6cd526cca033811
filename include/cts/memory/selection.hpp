// Composition of a task's memory: per class, a coreset method keeps ceil(s * N_c) samples
// (s = 1 keeps all); of each kept sample an attribution method keeps round(k * T) tokens
// (k = 1 keeps all); the kept patches go into the token buffer.
#pragma once
#include <torch/types.h>

#include <string>
#include <vector>

#include "cts/attribution/token_selector.hpp"
#include "cts/coreset/sample_selector.hpp"
#include "cts/core/config.hpp"
#include "cts/data/dataset.hpp"
#include "cts/data/task_split.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/models/vit.hpp"

namespace cts {

struct SelectionSettings {
  MemoryFractions fractions;
  bool explain_predicted = false;  // memory.target = predicted
  bool store_weights = false;      // memory.use_weights
  int64_t batch_size = 64;         // attribution batch
  int64_t feature_batch_size = 512;
  uint64_t seed = 0;
};

struct SelectionReport {
  int64_t samples = 0, tokens = 0, bytes = 0;
  double coreset_seconds = 0.0, attribution_seconds = 0.0;
  std::vector<int64_t> per_class;  // samples kept per class of the task (task's class order)
};

// Per-class budget n_c = ceil(s * N_c), clamped to [1, N_c] (0 for an empty class).
int64_t class_budget(double sample_fraction, int64_t class_size);

// Last-layer gradients g_i = softmax(z_i) - onehot(y_i) over the classes seen so far
// ([N, seen]) and pre-logits features [N, D], for coreset methods.
std::pair<torch::Tensor, torch::Tensor> last_layer_gradients(VisionTransformer& model, const Dataset& dataset, const torch::Tensor& indices,
                                                             const torch::Tensor& targets, int64_t batch_size);

SelectionReport select_task_memory(VisionTransformer& model, const Dataset& train, const TaskSplit& split, int64_t task,
                                   SampleSelector& coreset, TokenSelector& tokens, const SelectionSettings& settings,
                                   TokenBuffer& buffer);

}  // namespace cts
