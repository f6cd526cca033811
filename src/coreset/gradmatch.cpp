// gradmatch (Killamsetty et al. 2021a; CORDS' OrthogonalMP_REG with positive = true).
//
//   target b = Σ_i x_i               (x_i: last-layer gradient of sample i of the class)
//   r ← b, S ← ∅
//   repeat while |S| < n and ||r|| / ||b|| ≥ tol:
//     j ← argmax_{j available} <x_j, r>; stop if <x_j, r> ≤ 0      (no atom helps with w > 0)
//     S ← S ∪ {j}
//     w ← argmin_w ||b − X_Sᵀ w||² + λ||w||²  =  (X_S X_Sᵀ + λI)⁻¹ X_S b
//     while min(w) < 0: drop the most negative atom from S, re-solve       (w ≥ 0 always)
//     r ← b − X_Sᵀ w
//   fill: if |S| < n, add a seeded uniform choice of the other samples, each weighted by
//         the mean OMP weight (N/n if OMP kept nothing).
//
// Every atom is tried at most once (a dropped atom is not picked again), so the loop ends
// after at most N iterations. The solve uses the smaller of the two equivalent systems:
// the m×m dual (X_S X_Sᵀ + λI) w = X_S b while m = |S| ≤ G, else the G×G primal
// (X_Sᵀ X_S + λI) v = b, w = X_S v (push-through identity), so the cost per step is
// O(N·G + min(m, G)³). All linear algebra in double. CORDS solves the first atom without λ
// and allows re-picking dropped atoms; here λ applies from the first atom.
#include "cts/coreset/gradmatch.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "cts/core/rng.hpp"
#include "cts/coreset/gradient_rows.hpp"

namespace cts {
namespace {

torch::Tensor spd_solve(const torch::Tensor& a, const torch::Tensor& b) {
  auto l = torch::linalg_cholesky(a);
  return torch::cholesky_solve(b.unsqueeze(1), l).squeeze(1);
}

}  // namespace

OmpResult nonnegative_omp(const torch::Tensor& atoms, const torch::Tensor& target, int64_t max_atoms, double lambda, double tolerance) {
  TORCH_CHECK(atoms.dim() == 2 && target.dim() == 1 && target.size(0) == atoms.size(1), "omp: atoms [N, G] and target [G] needed, got ",
              atoms.sizes(), " and ", target.sizes());
  TORCH_CHECK(lambda > 0 && std::isfinite(lambda), "omp: lambda must be > 0, got ", lambda);
  const int64_t n = atoms.size(0), g = atoms.size(1);
  OmpResult out;
  auto x = atoms.to(torch::kCPU, torch::kFloat64).contiguous();  // [N, G]
  auto b = target.to(torch::kCPU, torch::kFloat64).contiguous();  // [G]
  const double norm_b = b.norm().item<double>();
  if (norm_b == 0.0 || max_atoms <= 0) return out;
  const auto xb_t = torch::mv(x, b).contiguous();  // [N] <x_j, b>
  const double* xb = xb_t.data_ptr<double>();
  std::vector<char> available(size_t(n), 1);
  std::vector<int64_t> s;
  torch::Tensor w, r = b.clone();
  // Σ_{j∈S} x_j x_jᵀ, tracked only when G is small enough for a G×G matrix to be cheap.
  const bool track_primal = g <= 2048;
  torch::Tensor primal = track_primal ? torch::zeros({g, g}, torch::kFloat64) : torch::Tensor();
  auto solve = [&]() -> torch::Tensor {
    const int64_t m = int64_t(s.size());
    if (m == 0) return torch::zeros({0}, torch::kFloat64);
    auto idx = torch::tensor(s, torch::kInt64);
    auto xs = x.index_select(0, idx);  // [m, G]
    if (m <= g) {
      auto k = torch::mm(xs, xs.t());
      k.diagonal().add_(lambda);
      std::vector<double> rhs(static_cast<size_t>(m));
      for (int64_t a = 0; a < m; ++a) rhs[size_t(a)] = xb[s[size_t(a)]];
      return spd_solve(k, torch::tensor(rhs, torch::kFloat64));
    }
    auto p = track_primal ? primal.clone() : torch::mm(xs.t(), xs);
    p.diagonal().add_(lambda);
    return torch::mv(xs, spd_solve(p, b));
  };
  while (int64_t(s.size()) < max_atoms) {
    if (r.norm().item<double>() < tolerance * norm_b) break;
    auto corr_t = torch::mv(x, r).contiguous();  // [N] <x_j, r>
    const double* corr = corr_t.data_ptr<double>();
    int64_t j = -1;
    for (int64_t i = 0; i < n; ++i)
      if (available[size_t(i)] && (j < 0 || corr[i] > corr[j])) j = i;
    if (j < 0 || !(corr[j] > 0.0)) break;
    ++out.iterations;
    available[size_t(j)] = 0;
    s.push_back(j);
    if (track_primal) primal.add_(torch::outer(x[j], x[j]));
    w = solve();
    while (!s.empty()) {
      const auto wmin = w.min().item<double>();
      if (wmin >= 0.0) break;
      const int64_t k = w.argmin().item<int64_t>();
      if (track_primal) primal.sub_(torch::outer(x[s[size_t(k)]], x[s[size_t(k)]]));
      s.erase(s.begin() + k);
      w = solve();
    }
    r = s.empty() ? b.clone() : b - torch::mv(x.index_select(0, torch::tensor(s, torch::kInt64)).t(), w);
  }
  out.indices = s;
  if (!s.empty()) {
    auto wc = w.contiguous();
    out.weights.assign(wc.data_ptr<double>(), wc.data_ptr<double>() + wc.numel());
  }
  out.residual_ratio = r.norm().item<double>() / norm_b;
  return out;
}

CoresetResult GradMatchCoreset::select(const CoresetInput& in) {
  check_coreset_input(in, *this);
  const int64_t n = in.num_samples;
  auto x = GradientRows::from_input(in, opt_.gradient).dense();  // [N, G]
  auto omp = nonnegative_omp(x, x.sum(0), in.budget, opt_.gradmatch_lambda, opt_.gradmatch_tolerance);
  std::vector<std::pair<int64_t, float>> picked;
  std::vector<char> taken(size_t(n), 0);
  double mean_w = 0.0;
  for (size_t a = 0; a < omp.indices.size(); ++a) {
    picked.emplace_back(omp.indices[a], float(omp.weights[a]));
    taken[size_t(omp.indices[a])] = 1;
    mean_w += omp.weights[a];
  }
  mean_w = picked.empty() ? double(n) / double(in.budget) : mean_w / double(picked.size());
  if (int64_t(picked.size()) < in.budget) {
    auto gen = make_generator(in.seed, "coreset_gradmatch_fill", {in.task, in.class_id});
    auto perm = torch::randperm(n, gen, torch::kInt64);
    const int64_t* p = perm.data_ptr<int64_t>();
    for (int64_t a = 0; a < n && int64_t(picked.size()) < in.budget; ++a)
      if (!taken[size_t(p[a])]) picked.emplace_back(p[a], float(mean_w)), taken[size_t(p[a])] = 1;
  }
  std::vector<int64_t> order;  // OMP's picks, then the fill
  for (const auto& [i, wt] : picked) order.push_back(i);
  std::sort(picked.begin(), picked.end());
  std::vector<float> wts;
  for (const auto& [i, wt] : picked) wts.push_back(wt);
  CoresetResult r;
  sort_with_rank(torch::tensor(order, torch::kInt64), r);
  r.weights = torch::tensor(wts, torch::kFloat32);
  return r;
}

}  // namespace cts
