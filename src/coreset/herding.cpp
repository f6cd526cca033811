// herding (iCaRL): with f_i = φ(x_i)/||φ(x_i)|| and μ = (1/N) Σ_i f_i, pick for k = 1..n
//   p_k = argmin_{i ∉ {p_1..p_{k-1}}} || μ − (1/k)(f_i + Σ_{j<k} f_{p_j}) ||
// Expanding with s = Σ_{j<k} f_{p_j}, the score of candidate i (terms without i dropped) is
//   ||f_i||² + 2<s, f_i> − 2k<μ, f_i>,
// so each step costs one matrix-vector product (<f_p, f_i> for the new pick) and O(N).
// Ties go to the lower index. Weights are ones. Deterministic (no randomness needed).
#include "cts/coreset/herding.hpp"

#include <torch/torch.h>

#include <limits>
#include <vector>

namespace cts {

torch::Tensor herding_order(const torch::Tensor& features, int64_t count) {
  TORCH_CHECK(features.dim() == 2, "herding: features must be [N, D], got ", features.sizes());
  const int64_t n = features.size(0);
  TORCH_CHECK(count >= 0 && count <= n, "herding: cannot pick ", count, " of ", n, " samples");
  auto f = features.to(torch::kCPU, torch::kFloat32);
  f = (f / f.norm(2, 1, true).clamp_min(1e-12)).contiguous();  // [N, D] unit rows
  auto mu = f.mean(0);                                          // [D]
  auto mu_dot_t = torch::mv(f, mu).to(torch::kFloat64).contiguous();     // [N] <μ, f_i>
  auto norm_t = f.pow(2).sum(1).to(torch::kFloat64).contiguous();        // [N] ||f_i||² (1 or 0)
  const double* mu_dot = mu_dot_t.data_ptr<double>();
  const double* norm2 = norm_t.data_ptr<double>();
  std::vector<double> s_dot(size_t(n), 0.0);  // <s, f_i>
  std::vector<char> taken(size_t(n), 0);
  std::vector<int64_t> order;
  order.reserve(size_t(count));
  for (int64_t k = 1; k <= count; ++k) {
    int64_t best = -1;
    double best_score = std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < n; ++i) {
      if (taken[size_t(i)]) continue;
      const double score = norm2[i] + 2.0 * s_dot[size_t(i)] - 2.0 * double(k) * mu_dot[i];
      if (score < best_score) best_score = score, best = i;
    }
    taken[size_t(best)] = 1;
    order.push_back(best);
    if (k == count) break;
    auto dots = torch::mv(f, f[best]).to(torch::kFloat64).contiguous();  // [N] <f_best, f_i>
    const double* d = dots.data_ptr<double>();
    for (int64_t i = 0; i < n; ++i) s_dot[size_t(i)] += d[i];
  }
  return torch::tensor(order, torch::kInt64);
}

CoresetResult HerdingCoreset::select(const CoresetInput& in) {
  check_coreset_input(in, *this);
  CoresetResult r;
  sort_with_rank(herding_order(in.features, in.budget), r);
  r.weights = torch::ones({in.budget}, torch::kFloat32);
  return r;
}

}  // namespace cts
