// The ViT classifier as an explained model: target logit, target cross-entropy, and the
// head's LRP alpha-beta rule down to the CLS token.
#include "cts/attribution/explained_model.hpp"

#include "cts/attribution/lrp.hpp"
#include "cts/core/error.hpp"
#include "cts/core/format.hpp"

namespace cts {

torch::Tensor ExplainedModel::token_relevance(const torch::Tensor& r, const torch::Tensor&, bool) {
  return r.select(1, 0).narrow(1, 1, r.size(2) - 1).to(torch::kCPU, torch::kFloat32).contiguous();  // the CLS row
}

ClassifierExplained::ClassifierExplained(VisionTransformer& model, const torch::Tensor& targets, const std::string& method) : model_(model) {
  if (targets.dim() != 1) throw_input("{}: targets must be [B], got {}", method, shape_str(targets.sizes()));
  if (targets.numel() > 0) {
    auto t = targets.to(torch::kCPU, torch::kInt64);
    const int64_t lo = t.min().item<int64_t>(), hi = t.max().item<int64_t>();
    if (lo < 0 || hi >= model->num_classes()) {
      throw_input("{}: target class {} is outside the model's head (0..{})", method, lo < 0 ? lo : hi, model->num_classes() - 1);
    }
  }
  targets_ = targets.to(model->device(), torch::kInt64);
}

torch::Tensor ClassifierExplained::logits(const torch::Tensor& tokens) {
  auto w = model_->head->weight, b = model_->head->bias;
  if (w.scalar_type() != tokens.scalar_type()) w = w.to(tokens.scalar_type()), b = b.to(tokens.scalar_type());
  return torch::linear(model_->pre_logits(tokens), w, b);  // [B', classes]
}

torch::Tensor ClassifierExplained::targets_of(const torch::Tensor& rows) const {
  return rows.defined() ? targets_.index_select(0, rows.to(targets_.device(), torch::kInt64)) : targets_;
}

torch::Tensor ClassifierExplained::score(const torch::Tensor& tokens, const torch::Tensor& rows) {
  return logits(tokens).gather(1, targets_of(rows).view({-1, 1})).squeeze(1);
}

torch::Tensor ClassifierExplained::loss(const torch::Tensor& tokens, const torch::Tensor& rows) {
  return torch::nn::functional::cross_entropy(logits(tokens).to(torch::kFloat32), targets_of(rows),
                                              torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
}

torch::Tensor ClassifierExplained::output_relevance(const torch::Tensor& tokens, double alpha) {
  torch::NoGradGuard no_grad;
  const int64_t B = tokens.size(0), N = tokens.size(1), D = tokens.size(2);
  auto cls = tokens.detach().select(1, 0);  // class-token pooling
  auto R_logits = torch::one_hot(targets_, model_->num_classes()).to(tokens.scalar_type());
  auto R_cls = lrp_linear(cls, model_->head->weight.detach().to(tokens.scalar_type()), R_logits, alpha);
  auto R = torch::zeros({B, N, D}, R_cls.options());
  R.select(1, 0).copy_(R_cls);  // the final LayerNorm passes relevance through
  return R;
}

void NoEncoderExplained::unavailable() const { throw_run("the {} learner has no encoder tokens to explain (use memory.tokens: random)", kind_); }

}  // namespace cts
