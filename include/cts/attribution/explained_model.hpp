// What an attribution method explains. A model kind exposes the ViT that reads the image
// tokens and, for a batch of samples, the per-sample scalar whose token relevance is wanted:
// a classifier's target logit, a text decoder's log-likelihood of the reference answer. The
// methods run the encoder themselves (to keep attention maps, suppress key columns or
// propagate LRP relevance) and hand its final-norm tokens [B', N, D] to score() / loss() /
// output_relevance(). `rows` (int64 [B']) names, for each row of such a batch, the sample of
// the explained batch it belongs to (AtMan runs many perturbed copies of one sample).
#pragma once
#include <torch/torch.h>

#include <string>

#include "cts/models/vit.hpp"

namespace cts {

class ExplainedModel {
 public:
  virtual ~ExplainedModel() = default;
  // The ViT whose patch tokens are scored; nullptr when the model has no transformer encoder
  // (then only `random` can select its tokens).
  virtual VisionTransformer* encoder() = 0;
  // Patch tokens T per image (also without an encoder).
  virtual int64_t num_tokens() const = 0;
  // What the model kind is called in errors ("vit-classifier", ...).
  virtual std::string kind() const = 0;
  // [B'] the scalar gradient-based methods explain (gradcam, chefer-generic, gradlrp).
  virtual torch::Tensor score(const torch::Tensor& tokens, const torch::Tensor& rows) = 0;
  // [B'] the loss AtMan compares between suppressed and clean inputs.
  virtual torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& rows) = 0;
  // LRP relevance [B, N, D] of the final-norm tokens of the explained batch (gradlrp's walk
  // starts there): the score's relevance propagated through the model's output layers with
  // the alpha-beta rule (lrp.hpp).
  virtual torch::Tensor output_relevance(const torch::Tensor& tokens, double alpha) = 0;
  // The relevance [B, T] (float, CPU) of the patch tokens from the encoder's token-to-token
  // relevance R [B, N, N] (rollout: the joint attention; chefer-generic: R after the last
  // block) and the encoder's final-norm tokens [B, N, D] of the same images; `gradient_weighted`:
  // chefer-generic (attention weighted by the score's gradients) or rollout (attention alone).
  // A classifier reads the CLS row, R[0, 1:] (the default); an encoder-decoder model carries R
  // through its decoder's attention to the text it explains.
  virtual torch::Tensor token_relevance(const torch::Tensor& encoder_relevance, const torch::Tensor& tokens, bool gradient_weighted);
};

// A ViT classifier (its own `head` on the CLS token) explained for target head indices [B]:
// score = the target logit, loss = cross-entropy of the target.
class ClassifierExplained : public ExplainedModel {
 public:
  // InputError when a target is outside the head; `method` names the caller in that error.
  ClassifierExplained(VisionTransformer& model, const torch::Tensor& targets, const std::string& method = "attribution");
  VisionTransformer* encoder() override { return &model_; }
  int64_t num_tokens() const override { return model_->config().num_patches(); }
  std::string kind() const override { return "vit-classifier"; }
  torch::Tensor score(const torch::Tensor& tokens, const torch::Tensor& rows) override;
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& rows) override;
  torch::Tensor output_relevance(const torch::Tensor& tokens, double alpha) override;
  const torch::Tensor& targets() const { return targets_; }

 private:
  torch::Tensor logits(const torch::Tensor& tokens);           // head on the CLS token, in the tokens' dtype
  torch::Tensor targets_of(const torch::Tensor& rows) const;  // [B'] on the tokens' device
  VisionTransformer& model_;
  torch::Tensor targets_;  // int64 [B] on the model's device
};

// A model kind without a ViT encoder for attribution (linear-probe, DyTox): encoder() is null,
// so every method but `random` stops with an InputError before asking for a score; the score
// functions throw a RunError naming the kind if called anyway.
class NoEncoderExplained : public ExplainedModel {
 public:
  NoEncoderExplained(std::string kind, int64_t tokens) : kind_(std::move(kind)), tokens_(tokens) {}
  VisionTransformer* encoder() override { return nullptr; }
  int64_t num_tokens() const override { return tokens_; }
  std::string kind() const override { return kind_; }
  torch::Tensor score(const torch::Tensor&, const torch::Tensor&) override { unavailable(); }
  torch::Tensor loss(const torch::Tensor&, const torch::Tensor&) override { unavailable(); }
  torch::Tensor output_relevance(const torch::Tensor&, double) override { unavailable(); }

 private:
  [[noreturn]] void unavailable() const;
  std::string kind_;
  int64_t tokens_;
};

}  // namespace cts
