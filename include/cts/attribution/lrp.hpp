// Layer-wise relevance propagation through the ViT (Chefer, Gur & Wolf 2021b, "Transformer
// interpretability beyond attention visualization"). The relevance of the explained score
// (a classifier's target logit: R = onehot(c) through the head, see explained_model.hpp) is
// propagated down through every layer with these rules (x: the layer's
// input, w: its weight, S = R / Z with 0/0 := 0, all sums per output unit):
//   Linear, alpha-beta (alpha = 1, beta = 0 by default; bias ignored):
//     Z⁺ = x⁺w⁺ + x⁻w⁻,  R_x = alpha·(x⁺ (S⁺w⁺) + x⁻ (S⁺w⁻)) − beta·(x⁺ (S⁻w⁻) + x⁻ (S⁻w⁺))
//       with S^± = R / Z^±,  Z⁻ = x⁺w⁻ + x⁻w⁺
//   LayerNorm, GELU, softmax: R passes through unchanged.
//   Matmul Z = a·b (the attention's Q Kᵀ and A V): gradient × input, each operand's share
//     halved:  R_a = ½ a ⊙ (S bᵀ),  R_b = ½ b ⊙ (aᵀ S)   (Σ R_a + Σ R_b = Σ R)
//   Residual add z = a + b: R_a = a ⊙ S, R_b = b ⊙ S, then each is rescaled so that
//     Σ R_a : Σ R_b = |Σ a⊙S| : |Σ b⊙S| and Σ R_a + Σ R_b = Σ R (per sample).
//   Residual branch point (a clone): the relevances of both uses add.
//   Patch projection, z^B rule with l, h = min / max of the sample's input:
//     Z = (x − l) w⁺ + (x − h) w⁻,  R_x = (x − l) ⊙ (S w⁺) + (x − h) ⊙ (S w⁻)
// Every rule conserves Σ R per sample (except where Z = 0); `trace` records the totals after
// each layer so this can be checked layer by layer. R_{A_b} (the relevance of block b's
// attention map, after the halving) and ∇A_b (the explained score's gradient) feed gradlrp.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "cts/attribution/explained_model.hpp"
#include "cts/models/vit.hpp"

namespace cts {

struct LrpOptions {
  double alpha = 1.0;             // alpha-beta rule, beta = alpha - 1
  bool input_relevance = false;   // continue through the position add and the patch projection (z^B)
  bool trace = false;             // record per-sample relevance totals after each layer
  bool double_precision = false;  // run the forward and the propagation in float64
};

struct LrpStage {
  std::string name;    // e.g. "blocks.3.attn.qkv"
  torch::Tensor total;  // [B] sum of relevance after this layer (all tensors the relevance is split over)
};

struct LrpResult {
  torch::Tensor score;                          // [B] the explained score (a classifier: the target logit)
  std::vector<torch::Tensor> attn;              // per block A_b [B, Hd, N, N]
  std::vector<torch::Tensor> attn_grad;         // per block ∇A_b of the explained score
  std::vector<torch::Tensor> attn_relevance;    // per block R_{A_b}
  torch::Tensor token_relevance;                // [B, N, D] relevance of block 0's input
  torch::Tensor pixel_relevance;                // [B, C, H, W] (input_relevance only)
  std::vector<LrpStage> trace;
};

// x: normalised images [B, C, H, W] on the encoder's device. The trace starts at "output",
// the relevance the explained model hands to the final-norm tokens.
LrpResult lrp_propagate(ExplainedModel& model, const torch::Tensor& x, const LrpOptions& options = {});
// A ViT classifier explained for targets [B] (head indices).
LrpResult lrp_propagate(VisionTransformer& model, const torch::Tensor& x, const torch::Tensor& targets, const LrpOptions& options = {});

// The rules, exposed for tests. Shapes: x [..., in], w [out, in], r [..., out] -> [..., in].
torch::Tensor lrp_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& r, double alpha = 1.0);
// Z = a.matmul(b) over the last two dims; returns the halved shares (R_a, R_b).
std::pair<torch::Tensor, torch::Tensor> lrp_matmul(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& r);
// z = a + b (same shape, dim 0 = batch); conservative per sample.
std::pair<torch::Tensor, torch::Tensor> lrp_add(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& r);
// Patch projection: x [B, T, P], w [D, P], lo / hi [B], r [B, T, D] -> [B, T, P].
torch::Tensor lrp_zb(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& lo, const torch::Tensor& hi, const torch::Tensor& r);

}  // namespace cts
