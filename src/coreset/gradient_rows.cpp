// Factored last-layer gradient rows: x_i = g_i ⊗ ẽ_i (see the header for the two forms).
#include "cts/coreset/gradient_rows.hpp"

#include <torch/torch.h>

namespace cts {

void check_coreset_input(const CoresetInput& in, const SampleSelector& m) {
  TORCH_CHECK(in.num_samples >= 1, "coreset ", m.name(), ": empty class");
  TORCH_CHECK(in.budget >= 1 && in.budget <= in.num_samples, "coreset ", m.name(), ": budget ", in.budget, " outside [1, ", in.num_samples, "]");
  if (m.needs_features()) {
    TORCH_CHECK(in.features.defined() && in.features.dim() == 2 && in.features.size(0) == in.num_samples, "coreset ", m.name(),
                ": features must be [", in.num_samples, ", D], got ", in.features.defined() ? in.features.sizes() : c10::IntArrayRef{});
  }
  if (m.needs_gradients()) {
    TORCH_CHECK(in.gradients.defined() && in.gradients.dim() == 2 && in.gradients.size(0) == in.num_samples, "coreset ", m.name(),
                ": gradients must be [", in.num_samples, ", C], got ", in.gradients.defined() ? in.gradients.sizes() : c10::IntArrayRef{});
  }
}

void sort_with_rank(const torch::Tensor& order, CoresetResult& result) {
  auto [sorted, place] = torch::sort(order.to(torch::kInt64));
  result.indices = sorted;
  result.rank = place;  // place[i]: where sorted[i] stood in `order`
}

GradientRows::GradientRows(torch::Tensor g, torch::Tensor e) {
  TORCH_CHECK(g.dim() == 2, "gradient rows: g must be [N, C], got ", g.sizes());
  g_ = g.to(torch::kCPU, torch::kFloat32).contiguous();
  if (e.defined()) {
    TORCH_CHECK(e.dim() == 2 && e.size(0) == g.size(0), "gradient rows: embeddings must be [", g.size(0), ", D], got ", e.sizes());
    auto ones = torch::ones({e.size(0), 1}, torch::kFloat32);
    e_ = torch::cat({ones, e.to(torch::kCPU, torch::kFloat32)}, 1).contiguous();  // ẽ = [1, e]
  }
  sq_ = g_.pow(2).sum(1);
  if (e_.defined()) sq_.mul_(e_.pow(2).sum(1));
}

GradientRows GradientRows::from_input(const CoresetInput& in, const std::string& gradient) {
  if (gradient == "logits") return GradientRows(in.gradients);
  TORCH_CHECK(gradient == "logits-embedding", "coreset gradient '", gradient, "' is not logits or logits-embedding");
  TORCH_CHECK(in.features.defined(), "coreset gradient logits-embedding needs the pre-logits features");
  return GradientRows(in.gradients, in.features);
}

GradientRows GradientRows::slice(int64_t start, int64_t count) const {
  GradientRows r;
  r.g_ = g_.narrow(0, start, count);
  r.sq_ = sq_.narrow(0, start, count);
  if (e_.defined()) r.e_ = e_.narrow(0, start, count);
  return r;
}

GradientRows GradientRows::rows(const torch::Tensor& indices) const {
  GradientRows r;
  r.g_ = g_.index_select(0, indices);
  r.sq_ = sq_.index_select(0, indices);
  if (e_.defined()) r.e_ = e_.index_select(0, indices);
  return r;
}

torch::Tensor GradientRows::squared_norms() const { return sq_; }

torch::Tensor GradientRows::inner(const GradientRows& o) const {
  TORCH_CHECK(has_embedding() == o.has_embedding(), "gradient rows of different kinds");
  auto k = torch::mm(g_, o.g_.t());  // [N, M] g_i·g_j
  if (e_.defined()) k.mul_(torch::mm(e_, o.e_.t()));  // (g_i·g_j)(ẽ_i·ẽ_j)
  return k;
}

torch::Tensor GradientRows::squared_distances(const GradientRows& o) const {
  auto d = inner(o).mul_(-2.0);
  d.add_(sq_.unsqueeze(1)).add_(o.sq_.unsqueeze(0));
  return d.clamp_min_(0.0);
}

torch::Tensor GradientRows::dense() const {
  if (!e_.defined()) return g_;
  return (g_.unsqueeze(2) * e_.unsqueeze(1)).reshape({g_.size(0), -1});  // [N, C, D'] -> [N, C·D']
}

torch::Tensor GradientRows::inner_with_sum() const {
  auto g = g_.to(torch::kFloat64);
  if (!e_.defined()) return torch::mv(g, g.sum(0));
  auto e = e_.to(torch::kFloat64);
  auto b = torch::mm(g.t(), e);            // [C, D'] Σ_i g_i ẽ_iᵀ
  return (torch::mm(g, b) * e).sum(1);     // g_jᵀ B ẽ_j
}

}  // namespace cts
