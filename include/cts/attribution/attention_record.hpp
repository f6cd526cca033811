// Shared machinery of the attention-based attribution methods: one explicit forward pass
// of the explained model's encoder that keeps every block's softmax attention
// A_b = softmax(Q K^T / sqrt(d_h)) and, on request, its gradient dL/dA_b with L = the sum over
// the batch of each sample's explained score (a classifier's target logit).
// Because L is a sum of per-sample terms, each sample's gradient depends on that sample
// only (batch invariance). Parameter gradients are never touched.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "cts/attribution/explained_model.hpp"
#include "cts/models/vit.hpp"

namespace cts {

struct AttentionRecord {
  std::vector<torch::Tensor> maps;   // per block [B, Hd, N, N], detached
  std::vector<torch::Tensor> grads;  // per block [B, Hd, N, N] dL/dA_b (empty unless requested)
  torch::Tensor score;               // [B] the explained score, detached (with grads only)
  torch::Tensor block0_input;        // [B, N, D] token sequence entering block 0, detached
  torch::Tensor tokens;              // [B, N, D] the encoder's final-norm tokens, detached
};

// x: normalised images [B, C, H, W] on the encoder's device.
AttentionRecord record_attention(ExplainedModel& model, const torch::Tensor& x, bool with_grads);

// The encoder of `model`, or InputError: `method` needs the attention of a transformer encoder.
VisionTransformer& require_encoder(ExplainedModel& model, const std::string& method);
// That InputError: `method` needs an encoder and the model kind `kind` has none.
[[noreturn]] void throw_needs_encoder(const std::string& method, const std::string& kind);

// Validates the images every TokenSelector receives (uint8 [B, C, H, W] at the encoder's
// size); `method` names the caller.
void check_relevance_images(ExplainedModel& model, const torch::Tensor& images_u8, const std::string& method);

// Row 0 (the CLS query), patch columns 1..T of a [B, N, N] matrix, as float [B, T] on the CPU.
torch::Tensor cls_row_relevance(const torch::Tensor& matrix);

}  // namespace cts
