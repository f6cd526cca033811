// atman (Deiseroth et al. 2023, AtMan; core-tokenset paper appendix eq. 8-9): relevance by
// attention suppression. For patch token t, in every block and head, the pre-softmax scores
// S are first shifted so each row's minimum is 0 and then key column j is multiplied by
//   f_tj = f                          if j = t
//        = (1 − f)(1 − cos_tj) + f    if j ≠ t and cos_tj ≥ κ   (conceptually similar tokens)
//        = 1                          otherwise (and for the CLS column)
// where cos_tj is the cosine similarity of the patch embeddings (conv output, before the
// position embedding) of tokens t and j, f the suppression factor (0.1: suppress to 10 %).
//   relevance_t = CE(y_c | suppressed t) − CE(y_c | clean)
// The clean pass takes the same shifted-score path (a row shift leaves softmax unchanged).
// Option "similarity rank" (the paper's appendix): after the scores above, rank tokens by
// cos(t, t*) with t* = argmax relevance (t* itself scores 1).
// Cost: T perturbed forwards per sample, run as batches of `chunk` perturbed copies.
#pragma once
#include "cts/attribution/token_selector.hpp"

namespace cts {

class AtmanTokenSelector : public TokenSelector {
 public:
  explicit AtmanTokenSelector(const TokenSelectorOptions& options);
  std::string name() const override { return "atman"; }

 protected:
  torch::Tensor score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) override;

 private:
  double factor_, kappa_;
  bool similarity_rank_;
  int64_t chunk_;
};

}  // namespace cts
