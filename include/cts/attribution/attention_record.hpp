// Shared machinery of the attention-based attribution methods: one explicit forward pass
// that keeps every block's softmax attention A_b = softmax(Q K^T / sqrt(d_h)) and, on
// request, its gradient dL/dA_b with L = sum over the batch of each sample's target logit.
// Because L is a sum of per-sample terms, each sample's gradient depends on that sample
// only (batch invariance). Parameter gradients are never touched.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "cts/models/vit.hpp"

namespace cts {

struct AttentionRecord {
  std::vector<torch::Tensor> maps;   // per block [B, Hd, N, N], detached
  std::vector<torch::Tensor> grads;  // per block [B, Hd, N, N] dL/dA_b (empty unless requested)
  torch::Tensor logits;              // [B, classes], detached
  torch::Tensor block0_input;        // [B, N, D] token sequence entering block 0, detached
};

// x: normalised images [B, C, H, W] on the model's device; targets [B] head indices.
AttentionRecord record_attention(VisionTransformer& model, const torch::Tensor& x, const torch::Tensor& targets, bool with_grads);

// Validates the arguments every TokenSelector::relevance receives; `method` names the caller.
void check_relevance_args(const VisionTransformer& model, const torch::Tensor& images_u8, const torch::Tensor& targets,
                          const std::string& method);

// Puts the model in eval mode for the guard's lifetime and enables autograd (attribution
// runs inside the trainer's no-grad selection phase).
class AttributionModeGuard {
 public:
  explicit AttributionModeGuard(VisionTransformer& model) : model_(model), was_training_(model->is_training()), grad_(true) { model_->eval(); }
  ~AttributionModeGuard() { model_->train(was_training_); }
  AttributionModeGuard(const AttributionModeGuard&) = delete;
  AttributionModeGuard& operator=(const AttributionModeGuard&) = delete;

 private:
  VisionTransformer& model_;
  bool was_training_;
  torch::AutoGradMode grad_;
};

// Row 0 (the CLS query), patch columns 1..T of a [B, N, N] matrix, as float [B, T] on the CPU.
torch::Tensor cls_row_relevance(const torch::Tensor& matrix);

}  // namespace cts
