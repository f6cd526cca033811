// Token selection interface: an attribution method scores every patch token of each
// sample ([B, T] relevance, CLS excluded), and the top fraction is kept. Methods are
// batched and batch-invariant (a sample's scores do not depend on its batch mates).
#pragma once
#include <torch/types.h>

#include <memory>
#include <string>

#include "cts/attribution/explained_model.hpp"
#include "cts/models/vit.hpp"

namespace cts {

struct TokenSelectorOptions {
  uint64_t seed = 0;
  // AtMan (method-notes "atman"): suppression factor, cosine threshold, and the
  // "rank by similarity to the most relevant token" variant.
  double atman_factor = 0.1;
  double atman_kappa = 0.7;
  bool atman_similarity_rank = false;
  int64_t atman_chunk = 256;  // perturbed copies per forward batch
};

class TokenSelector {
 public:
  virtual ~TokenSelector() = default;
  virtual std::string name() const = 0;
  // Whether the method reads the model's transformer encoder (attention maps, LRP); only
  // `random` does not.
  virtual bool needs_encoder() const { return true; }
  // Relevance of every patch token of images uint8 [B, C, H, W] for what `model` explains;
  // sample_ids [B] are stable ids (for seeded methods). Returns float [B, T] on CPU.
  torch::Tensor relevance(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) {
    return score_tokens(model, images_u8, sample_ids);
  }
  // The same for a ViT classifier explained for targets [B] (head indices of the class).
  torch::Tensor relevance(VisionTransformer& model, const torch::Tensor& images_u8, const torch::Tensor& targets,
                          const torch::Tensor& sample_ids);

 protected:
  virtual torch::Tensor score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) = 0;
};

// Positions of the k most relevant tokens of each sample, int64 [B, k], ascending.
// Ties are broken by `tie_keys` ([B, T], lower key first) when given, else by the lower token
// index. Memory selection passes seeded per-sample keys (token_tie_keys): a method whose scores
// are constant for a sample (e.g. gradcam clamped to 0 everywhere) then keeps random tokens,
// not always the first k (which would put the same corner patches of every such sample in
// the buffer).
torch::Tensor top_tokens(const torch::Tensor& relevance, int64_t k, const torch::Tensor& tie_keys = {});

// The same with a count per sample (counts int64 [B], each in [1, T]): int64 [B, max count],
// each row's counts[b] most relevant positions ascending, then -1 padding (the buffer's layout).
torch::Tensor top_tokens(const torch::Tensor& relevance, const torch::Tensor& counts, const torch::Tensor& tie_keys = {});

// Seeded uniform keys [B, num_tokens], one stream per sample id (batch-invariant).
torch::Tensor token_tie_keys(const torch::Tensor& sample_ids, int64_t num_tokens, uint64_t seed);

}  // namespace cts
