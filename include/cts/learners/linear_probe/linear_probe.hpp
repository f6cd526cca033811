// The linear-probe learner (model.learner: linear-probe): a class-incremental linear head on
// frozen, seeded random patch features. Small and fast: the reference second learner that
// shows a model kind is added without touching the sequential loop, and a baseline for what
// a memory gives a model that cannot learn features.
//   e_t  = W_p · x_t + b_p                  patch t's pixels x_t (normalised, C·p² values), W_p [D, C·p²]
//   h_t  = GELU(s · e_t + pos_t)            s = keep.rescale for kept tokens; pos [T, D]
//   f(x) = mean_t h_t                       over all T tokens, or over the kept ones (fill: drop)
//   z    = W f + b                          the head, grown per task (one seeded init of all rows)
// W_p, b_p, pos are drawn from the run seed and never trained. Missing tokens: zero-embedding
// sets e_t = 0, zero-pixel sets x_t = 0 (e_t = b_p), drop leaves them out of the mean.
// It has no attention, so token attribution is `random` only; everything else (coresets,
// byte budgets, every fill, replay, checkpoints) works as for the ViT.
#pragma once
#include <torch/torch.h>

#include <utility>

#include "cts/learners/learner.hpp"
#include "cts/models/vit.hpp"

namespace cts {

class LinearProbe : public Learner {
 public:
  explicit LinearProbe(const LearnerContext& context);

  std::string kind() const override { return "linear-probe"; }
  int64_t patch_size() const override { return cfg_.patch_size; }
  std::vector<std::string> loss_terms() const override { return {"new", "replay"}; }
  std::vector<MetricSpec> metrics() const override;
  std::vector<std::pair<std::string, torch::Tensor>> trainable_parameters() override;
  int64_t parameter_count() const override;

  void begin_task(int64_t task) override;
  StepLoss step_loss(int64_t task, const Batch& new_data, const Batch* replay) override;
  std::vector<TaskScores> evaluate(const Dataset& test, int64_t tasks_trained, const std::vector<int64_t>& tasks, int64_t batch_size) override;

  std::map<std::string, torch::Tensor> state_tensors() const override;
  nlohmann::json state_info() const override;
  void load_state(const nlohmann::json& info, const std::map<std::string, torch::Tensor>& tensors) override;
  void save_weights(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) const override;

  bool set_training(bool training) override { return std::exchange(training_, training); }  // nothing changes with the mode
  int64_t num_tokens() const override { return cfg_.num_patches(); }
  bool has_encoder() const override { return false; }
  CoresetRows coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override;
  std::unique_ptr<ExplainedModel> explained(const SampleBatch& batch, ExplainTarget target) override;
  torch::Tensor sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override;
  torch::Tensor replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) override;

  // f for a batch as the learner sees it ([B, D] on the learner's device).
  torch::Tensor features(const Batch& batch) const;

 private:
  torch::Tensor head_logits(const torch::Tensor& features) const;  // [B, classes seen]
  torch::Tensor features_of(const torch::Tensor& images_u8, int64_t batch_size) const;

  const TaskSplit& split_;
  torch::Device device_;
  ViTConfig cfg_;                  // input geometry (img_size, patch_size, in_chans) and width D = embed_dim
  torch::Tensor proj_w_, proj_b_;  // frozen [D, C·p²], [D]
  torch::Tensor pos_;              // frozen [T, D]
  torch::Tensor head_w_, head_b_;  // trained [classes seen, D], [classes seen]
  torch::Tensor head_init_rows_;   // [all classes, D] seeded init (CPU)
  bool training_ = true;
};

}  // namespace cts
