// The DyTox learner (model.learner: dytox; Douillard et al., CVPR 2022), on DyTox's network
// (models/dytox.hpp): shared SABs, one TAB run per task token, a classifier per task.
//   begin_task(t)  adds θ_t (trunc-normal, or the copy of θ_{t−1} with dytox.task_token_init:
//                  copy) and Clf_t (and, from the second task, a new divergence head over
//                  "old" + the new classes); freezes the old task tokens and old classifiers;
//                  keeps the model of the previous task as the teacher
//   step_loss      (1 − α)·L_clf + α·L_kd + λ·L_div with α = |old classes| / |all classes|:
//                  L_clf  binary cross-entropy of sigmoid outputs over every class seen
//                         (mean over samples and classes, as the original's bce_with_logits)
//                  L_kd   KL(softmax(teacher logits / τ) ‖ softmax(logits of the old classes / τ))·τ²
//                         (reduction mean over samples and old classes, as the original)
//                  L_div  binary cross-entropy of the divergence head on e_t; its targets are 0
//                         ("old") for samples of old classes, 1 + j for the new task's class j
//                  The new-data and the replay batch are two loss terms, each normalised by the
//                  step's total samples, so their sum is the loss of the joint batch.
//   finetune       after each task t ≥ 1 (the loop's balanced phase): patch embedding,
//                  positions and SABs frozen, everything else (TAB, every task token, every
//                  classifier) trained on the memory plus as many new samples per class as the
//                  memory holds per old class; L_clf only, constant lr (the original's
//                  freeze_ft: [sab], no teacher, no divergence head in finetuning)
//   evaluate       class-IL (argmax over every class's sigmoid score) and task-IL (argmax over
//                  the task's own classifier)
//   memory         coreset rows: e_t and the sigmoid-output gradient σ(z) − onehot(y) over the
//                  classes seen; token attribution: `random` only (no ViT encoder: the TAB's
//                  task-token attention is not a class-token row); any fill and token dropping
//   MixUp (DyTox+) with dytox.mixup_alpha > 0: new-data images mixed pairwise with λ ~ Beta(α, α)
//                  per batch and soft targets (replayed samples are not mixed), in training and
//                  finetuning.
// Differences from the original: timm blocks instead of ConViT GPSA blocks; replay is a separate
// batch every step (the original concatenates the memory to the task's data); no label
// smoothing / repeated augmentation / stochastic depth; MixUp mixes new data only.
#pragma once
#include <torch/torch.h>

#include "cts/learners/learner.hpp"
#include "cts/models/dytox.hpp"

namespace cts {

class DyTox : public Learner {
 public:
  explicit DyTox(const LearnerContext& context);

  std::string kind() const override { return "dytox"; }
  int64_t patch_size() const override { return net_->config().vit.patch_size; }
  std::vector<std::string> loss_terms() const override { return {"new", "replay"}; }
  std::vector<MetricSpec> metrics() const override;
  std::vector<std::pair<std::string, torch::Tensor>> trainable_parameters() override;
  int64_t parameter_count() const override;

  void begin_task(int64_t task) override;
  StepLoss step_loss(int64_t task, const Batch& new_data, const Batch* replay) override;
  std::optional<FinetunePhase> finetune_phase(int64_t task) override;
  void begin_finetune(int64_t task) override;
  StepLoss finetune_loss(int64_t task, const Batch& new_data, const Batch* memory) override;
  void end_finetune(int64_t task) override;
  std::vector<TaskScores> evaluate(const Dataset& test, int64_t tasks_trained, const std::vector<int64_t>& tasks, int64_t batch_size) override;

  std::map<std::string, torch::Tensor> state_tensors() const override;
  nlohmann::json state_info() const override;
  void load_state(const nlohmann::json& info, const std::map<std::string, torch::Tensor>& tensors) override;
  void save_weights(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) const override;

  bool set_training(bool training) override;
  int64_t num_tokens() const override { return net_->config().vit.num_patches(); }
  bool has_encoder() const override { return false; }
  CoresetRows coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override;
  std::unique_ptr<ExplainedModel> explained(const SampleBatch& batch, ExplainTarget target) override;
  torch::Tensor sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override;
  torch::Tensor replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) override;

  DyToxNet& net() { return net_; }
  // α of the loss at task t: |classes of tasks < t| / |classes of tasks ≤ t|.
  double alpha(int64_t task) const;

 private:
  // `mixed`: the batch's normalised images after MixUp (undefined: the batch's own images).
  DyToxOutput forward(DyToxNet& net, const Batch& batch, bool divergence, const torch::Tensor& mixed);
  // The loss of one part of a step's batch, normalised by `total` samples; `finetune`: L_clf
  // only; `mix`: MixUp applies (new data, dytox.mixup_alpha > 0).
  torch::Tensor part_loss(int64_t task, const Batch& batch, int64_t total, bool finetune, bool mix);
  torch::Tensor targets_of(const torch::Tensor& labels) const;  // incremental indices on the device
  void set_trainable(bool finetune);

  const TaskSplit& split_;
  torch::Device device_;
  DyToxSettings settings_;
  DyToxNet net_;
  uint64_t seed_;
  DyToxNet teacher_{nullptr};  // the model after the previous task (frozen, eval mode)
  bool finetuning_ = false;
  bool training_ = true;
};

}  // namespace cts
