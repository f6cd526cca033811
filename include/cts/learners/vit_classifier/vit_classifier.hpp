// The ViT classifier learner (model.learner: vit-classifier): a timm-compatible ViT
// (models/vit.hpp) with one class-incremental head over every class seen so far.
//   begin_task(t)   grows the head to the classes of tasks 0..t; new rows come from one
//                   seeded init of all rows (old rows are kept, never re-initialised)
//   step_loss       CE(new data, its tokens dropped) + CE(replay) (replay weighted by the
//                   coreset weights with memory.use_weights: Σ w_b CE_b / Σ w_b)
//   evaluate        class-IL accuracy (argmax over every class seen) and task-IL accuracy
//                   (argmax over the task's own classes; unseen tasks with their init rows)
//   coreset rows    pre-logits features and g = softmax(z) − onehot(y) over the seen classes
//   explained score the target logit (attribution), target CE (AtMan)
#pragma once
#include <torch/torch.h>

#include "cts/learners/learner.hpp"
#include "cts/models/vit.hpp"

namespace cts {

// A ViT classifier as memory selection sees it: coreset rows, explained scores and features
// of dataset or buffer samples. Used by the learner below and on its own by tools and tests.
class ViTClassifierMemoryModel : public MemoryModel {
 public:
  ViTClassifierMemoryModel(VisionTransformer model, const TaskSplit& split) : model_(std::move(model)), split_(&split) {}
  bool set_training(bool training) override {
    const bool was = model_->is_training();
    model_->train(training);
    return was;
  }
  int64_t num_tokens() const override { return model_->config().num_patches(); }
  CoresetRows coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override;
  std::unique_ptr<ExplainedModel> explained(const SampleBatch& batch, ExplainTarget target) override;
  torch::Tensor sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override;
  torch::Tensor replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) override;

 private:
  VisionTransformer model_;
  const TaskSplit* split_;
};

class ViTClassifier : public Learner {
 public:
  explicit ViTClassifier(const LearnerContext& context);

  std::string kind() const override { return "vit-classifier"; }
  int64_t patch_size() const override { return model_->config().patch_size; }
  std::vector<std::string> loss_terms() const override { return {"new", "replay"}; }
  std::vector<MetricSpec> metrics() const override;
  std::vector<std::pair<std::string, torch::Tensor>> trainable_parameters() override;
  int64_t parameter_count() const override;
  std::vector<std::string> weight_notes() const override { return weight_notes_; }

  void begin_task(int64_t task) override;
  StepLoss step_loss(int64_t task, const Batch& new_data, const Batch* replay) override;
  void end_task(int64_t task) override;
  std::vector<TaskScores> evaluate(const Dataset& test, int64_t tasks_trained, const std::vector<int64_t>& tasks, int64_t batch_size) override;

  std::map<std::string, torch::Tensor> state_tensors() const override;
  nlohmann::json state_info() const override;
  void load_state(const nlohmann::json& info, const std::map<std::string, torch::Tensor>& tensors) override;
  void save_weights(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) const override;

  int64_t num_tokens() const override { return memory_.num_tokens(); }
  bool set_training(bool training) override { return memory_.set_training(training); }
  CoresetRows coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override {
    return memory_.coreset_rows(data, indices, batch_size);
  }
  std::unique_ptr<ExplainedModel> explained(const SampleBatch& batch, ExplainTarget target) override { return memory_.explained(batch, target); }
  torch::Tensor sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override {
    return memory_.sample_features(data, indices, batch_size);
  }
  torch::Tensor replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) override {
    return memory_.replay_features(buffer, fill, rescale, batch_size);
  }

  VisionTransformer& model() { return model_; }

 private:
  torch::Tensor logits(const Batch& batch);  // [B, classes seen]

  const TaskSplit& split_;
  torch::Device device_;
  ClassifierSettings settings_;
  std::vector<std::string> weight_notes_;
  VisionTransformer model_;
  torch::Tensor head_init_rows_;  // [all classes, D]: the seeded init of every head row (CPU)
  ViTClassifierMemoryModel memory_;
};

// Weight Aligning (Zhao et al. 2020) of a class-incremental head: rows [old, rows) of
// `weight` [rows, D] are multiplied in place by gamma = mean_i ||w_i|| over the old rows /
// mean_j ||w_j|| over the new rows; returns gamma (1 when either group is empty).
double weight_align(torch::Tensor& weight, int64_t old);

// The replay loss with coreset weights: Σ_b w_b · CE_b / Σ_b w_b.
torch::Tensor replay_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& weights);

}  // namespace cts
