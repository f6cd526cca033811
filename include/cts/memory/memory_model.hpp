// What memory selection asks of the model being trained. A learner (learners/learner.hpp)
// implements it; memory/ never sees a concrete network. All calls run in eval mode without
// changing the model's training mode for the caller.
#pragma once
#include <torch/types.h>

#include <memory>

#include "cts/attribution/explained_model.hpp"
#include "cts/data/dataset.hpp"
#include "cts/memory/memory_config.hpp"
#include "cts/memory/token_buffer.hpp"

namespace cts {

// Per-sample inputs of the coreset methods (coreset/sample_selector.hpp): the model's
// pre-logits features e_i and last-layer gradient rows g_i (for a classifier
// softmax(z_i) − onehot(y_i) over the classes seen so far). Float, CPU.
struct CoresetRows {
  torch::Tensor features;   // [N, D]
  torch::Tensor gradients;  // [N, C]
};

// Samples of a dataset as attribution sees them.
struct SampleBatch {
  torch::Tensor images;  // uint8 [B, C, H, W]
  torch::Tensor labels;  // int64 [B] dataset class ids
  torch::Tensor ids;     // int64 [B] dataset indices (stable sample ids)
  Payload payload;       // per-sample integer data (VQA question/answer ids, ...), may be empty
};

class MemoryModel {
 public:
  virtual ~MemoryModel() = default;
  // Sets the training mode and returns the previous one. Memory selection puts the model in
  // eval mode before it runs batches as parallel jobs, so no job changes the model's mode.
  virtual bool set_training(bool training) = 0;
  // Patch tokens T per image.
  virtual int64_t num_tokens() const = 0;
  // Whether explained() models have a transformer encoder (attention maps) for attribution;
  // without one only `random` token selection works.
  virtual bool has_encoder() const { return true; }
  // Coreset rows of dataset samples (full inputs).
  virtual CoresetRows coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) = 0;
  // What token attribution explains for these samples: the true target (label, reference
  // text) or, with ExplainTarget::Predicted, the model's own prediction.
  virtual std::unique_ptr<ExplainedModel> explained(const SampleBatch& batch, ExplainTarget target) = 0;
  // Features [N, D] of dataset samples with full inputs (the split search's held-out rows).
  virtual torch::Tensor sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) = 0;
  // Features [n, D] of every buffer sample as replay presents it (kept tokens, `fill`, kept
  // embeddings scaled by `rescale`): what the split search's probe is trained on.
  virtual torch::Tensor replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) = 0;
};

// The model in eval mode for the scope's lifetime, its previous mode restored after.
class SelectionModeScope {
 public:
  explicit SelectionModeScope(MemoryModel& model) : model_(model), was_training_(model.set_training(false)) {}
  ~SelectionModeScope() { model_.set_training(was_training_); }
  SelectionModeScope(const SelectionModeScope&) = delete;
  SelectionModeScope& operator=(const SelectionModeScope&) = delete;

 private:
  MemoryModel& model_;
  bool was_training_;
};

}  // namespace cts
