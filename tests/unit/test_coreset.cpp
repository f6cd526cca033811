// Coreset selection against independent computations: GradMatch's non-negative OMP on
// constructed sparse problems and against the ridge solution, CRAIG vs brute force and
// plain greedy, herding vs its argmin definition and vs random, budgets per class, byte
// budgets, joint selection, predicted-class targets, replay weights, config errors, every
// method in `cts run`.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <set>

#include "cts/attribution/registry.hpp"
#include "cts/core/config.hpp"
#include "cts/core/error.hpp"
#include "cts/coreset/craig.hpp"
#include "cts/coreset/gradient_rows.hpp"
#include "cts/coreset/gradmatch.hpp"
#include "cts/coreset/herding.hpp"
#include "cts/coreset/registry.hpp"
#include "cts/data/dataset.hpp"
#include "cts/data/task_split.hpp"
#include "cts/memory/budget.hpp"
#include "cts/memory/joint_selection.hpp"
#include "cts/memory/selection.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/report/console.hpp"
#include "cts/train/trainer.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;

torch::Tensor unit_rows(int64_t n, int64_t d, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto x = torch::randn({n, d}, gen, torch::kFloat64);
  return x / x.norm(2, 1, true);
}

// Rows shaped like last-layer gradients: softmax(random logits) - onehot(y), class y fixed.
torch::Tensor gradient_like(int64_t n, int64_t classes, int64_t y, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto p = torch::softmax(torch::randn({n, classes}, gen) * 2.0, 1);
  return p - torch::one_hot(torch::full({n}, y, torch::kInt64), classes).to(torch::kFloat32);
}

// ------------------------------------------------------------------ GradMatch

TEST(GradMatch, OmpRecoversExactSparseNonNegativeCombination) {
  const int64_t n = 60, g = 1000;
  auto x = unit_rows(n, g, 7);
  // Precondition for exact recovery of 3 atoms (Tropp 2004): coherence < 1 / (2k - 1).
  auto gram = torch::mm(x, x.t()) - torch::eye(n, torch::kFloat64);
  const double coherence = gram.abs().max().item<double>();
  ASSERT_LT(coherence, 1.0 / 5.0);
  const std::vector<int64_t> support = {5, 17, 42};
  const std::vector<double> w_true = {2.0, 0.7, 1.3};
  auto target = torch::zeros({g}, torch::kFloat64);
  for (size_t a = 0; a < support.size(); ++a) target += w_true[a] * x[support[a]];
  auto r = nonnegative_omp(x, target, /*max_atoms=*/10, /*lambda=*/1e-10, /*tolerance=*/1e-6);
  ASSERT_EQ(r.indices.size(), 3u) << "stops once the residual is below tolerance";
  std::map<int64_t, double> got;
  for (size_t a = 0; a < r.indices.size(); ++a) got[r.indices[a]] = r.weights[a];
  double max_diff = 0.0;
  for (size_t a = 0; a < support.size(); ++a) {
    ASSERT_TRUE(got.count(support[a])) << "atom " << support[a] << " not recovered";
    max_diff = std::max(max_diff, std::abs(got[support[a]] - w_true[a]));
  }
  std::printf("[ gradmatch ] coherence %.3f, max |w - w*| = %.2e, residual ratio %.2e\n", coherence, max_diff, r.residual_ratio);
  EXPECT_LT(max_diff, 1e-6);
  EXPECT_LT(r.residual_ratio, 1e-6);
}

TEST(GradMatch, SelectorMatchesClassGradientSumThenFillsAtRandom) {
  // Rows: three support atoms a1..a3 (dims 0-2), 0.5·a1, and pairs ±v_k orthogonal to them.
  // Σ_i x_i = 1.5 a1 + a2 + a3, so OMP must pick a1, a2, a3 with weights 1.5, 1, 1 and stop.
  const int64_t g = 8;
  std::vector<torch::Tensor> rows;
  auto a = torch::tensor({{1.0, 0.2, 0.0}, {0.1, 1.0, 0.3}, {0.0, 0.2, 1.0}}, torch::kFloat32);
  for (int i = 0; i < 3; ++i) rows.push_back(torch::cat({a[i], torch::zeros({g - 3})}));
  rows.push_back(torch::cat({0.5 * a[0], torch::zeros({g - 3})}));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  for (int k = 0; k < 6; ++k) {
    auto v = torch::cat({torch::zeros({3}), torch::randn({g - 3}, gen)});
    rows.push_back(v);
    rows.push_back(-v);
  }
  auto x = torch::stack(rows);  // [16, 8]
  SampleSelectorOptions o;
  o.gradmatch_lambda = 1e-9;
  o.gradmatch_tolerance = 1e-5;
  GradMatchCoreset gm(o);
  CoresetInput in;
  in.gradients = x;
  in.num_samples = x.size(0);
  in.budget = 7;
  in.seed = 11;
  auto r = gm.select(in);
  ASSERT_EQ(r.indices.size(0), 7);
  std::map<int64_t, float> w;
  for (int64_t i = 0; i < 7; ++i) w[r.indices[i].item<int64_t>()] = r.weights[i].item<float>();
  EXPECT_NEAR(w.at(0), 1.5, 1e-5);
  EXPECT_NEAR(w.at(1), 1.0, 1e-5);
  EXPECT_NEAR(w.at(2), 1.0, 1e-5);
  for (const auto& [i, wi] : w)
    if (i > 2) EXPECT_NEAR(wi, 3.5 / 3.0, 1e-5) << "fill samples carry the mean OMP weight";
  EXPECT_TRUE(torch::equal(r.indices, std::get<0>(torch::sort(r.indices))));
  // Seeded: same fill again, another seed another fill.
  EXPECT_TRUE(torch::equal(gm.select(in).indices, r.indices));
  in.seed = 12;
  EXPECT_FALSE(torch::equal(gm.select(in).indices, r.indices));
}

TEST(GradMatch, WeightsAreNeverNegativeBudgetIsExactAndWeightsSolveTheRidge) {
  int64_t checked_primal = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const int64_t n = 20 + int64_t(seed * 7 % 90), classes = 2 + int64_t(seed % 4);
    auto x = gradient_like(n, classes, int64_t(seed % classes), seed);
    const int64_t budget = 1 + int64_t((seed * 13) % n);
    const double lambda = seed % 2 ? 0.5 : 0.05;
    // OMP weights = ridge solution on their support, recomputed here in the dual form.
    auto omp = nonnegative_omp(x, x.to(torch::kFloat64).sum(0), budget, lambda, 1e-4);
    ASSERT_LE(int64_t(omp.indices.size()), budget);
    for (double w : omp.weights) EXPECT_GE(w, 0.0) << "seed " << seed;
    if (!omp.indices.empty()) {
      auto xs = x.to(torch::kFloat64).index_select(0, torch::tensor(omp.indices, torch::kInt64));
      auto k = torch::mm(xs, xs.t()) + lambda * torch::eye(xs.size(0), torch::kFloat64);
      auto ridge = torch::linalg_solve(k, torch::mv(xs, x.to(torch::kFloat64).sum(0)));
      auto mine = torch::tensor(omp.weights, torch::kFloat64);
      EXPECT_LT((ridge - mine).abs().max().item<double>(), 1e-8 * std::max(1.0, ridge.abs().max().item<double>())) << "seed " << seed;
      if (xs.size(0) > classes) ++checked_primal;
    }
    SampleSelectorOptions o;
    o.gradmatch_lambda = lambda;
    GradMatchCoreset gm(o);
    CoresetInput in;
    in.gradients = x;
    in.num_samples = n;
    in.budget = budget;
    in.seed = seed;
    auto r = gm.select(in);
    ASSERT_EQ(r.indices.size(0), budget) << "seed " << seed;
    EXPECT_EQ(std::set<int64_t>(r.indices.data_ptr<int64_t>(), r.indices.data_ptr<int64_t>() + budget).size(), size_t(budget));
    EXPECT_GE(r.weights.min().item<float>(), 0.0f);
    EXPECT_TRUE(torch::isfinite(r.weights).all().item<bool>());
  }
  EXPECT_GT(checked_primal, 5) << "the G×G primal solve path must be exercised";
}

// ------------------------------------------------------------------ CRAIG

// F(S) = Σ_i max_{j∈S} (c − D_ij), c = max D, computed here in double.
double facility_value(const torch::Tensor& d, double c, const std::vector<int64_t>& s) {
  double f = 0.0;
  for (int64_t i = 0; i < d.size(0); ++i) {
    double best = 0.0;
    for (int64_t j : s) best = std::max(best, c - d[i][j].item<double>());
    f += best;
  }
  return f;
}

TEST(Craig, LazyGreedyEqualsPlainGreedyAndIsWithinOneMinusOneOverEOfBruteForce) {
  double worst_ratio = 1.0;
  for (uint64_t seed = 0; seed < 24; ++seed) {
    const int64_t n = 8 + int64_t(seed % 7), budget = 1 + int64_t(seed % 4);
    auto g = gradient_like(n, 3, 0, 100 + seed);
    torch::Tensor e;
    if (seed % 3 == 0) e = torch::randn({n, 4}, at::make_generator<at::CPUGeneratorImpl>(seed));
    GradientRows rows(g, e);
    // Independent distances from the explicit rows [g, g ⊗ e] in double.
    auto xe = g.to(torch::kFloat64);
    if (e.defined()) {
      auto et = torch::cat({torch::ones({n, 1}), e}, 1).to(torch::kFloat64);
      xe = (xe.unsqueeze(2) * et.unsqueeze(1)).reshape({n, -1});
    }
    auto d = torch::cdist(xe, xe).pow(2);
    const double c = d.max().item<double>();
    // Plain greedy.
    std::vector<int64_t> greedy;
    for (int64_t step = 0; step < budget; ++step) {
      int64_t best = -1;
      double best_f = -1;
      for (int64_t j = 0; j < n; ++j) {
        if (std::find(greedy.begin(), greedy.end(), j) != greedy.end()) continue;
        auto s = greedy;
        s.push_back(j);
        const double f = facility_value(d, c, s);
        if (f > best_f + 1e-9) best_f = f, best = j;
      }
      greedy.push_back(best);
    }
    // Brute force over all subsets of size `budget`.
    double opt = 0.0;
    std::vector<int64_t> s;
    std::function<void(int64_t)> rec = [&](int64_t from) {
      if (int64_t(s.size()) == budget) {
        opt = std::max(opt, facility_value(d, c, s));
        return;
      }
      for (int64_t j = from; j < n; ++j) s.push_back(j), rec(j + 1), s.pop_back();
    };
    rec(0);
    for (int64_t matrix_bytes : {int64_t(1) << 30, int64_t(0)}) {
      auto fl = facility_location_greedy(rows, budget, matrix_bytes, /*block=*/3);
      EXPECT_EQ(fl.used_matrix, matrix_bytes > 0);
      EXPECT_EQ(fl.order, greedy) << "seed " << seed << " matrix " << matrix_bytes;
    }
    const double f = facility_value(d, c, greedy);
    EXPECT_GE(f, (1.0 - 1.0 / std::exp(1.0)) * opt - 1e-9) << "seed " << seed;
    worst_ratio = std::min(worst_ratio, f / opt);
    // The selector: indices ascending, γ_j = size of j's cluster (nearest pick).
    CraigCoreset craig;
    CoresetInput in;
    in.gradients = g;
    in.features = e;
    in.num_samples = n;
    in.budget = budget;
    if (e.defined()) {
      SampleSelectorOptions o;
      o.gradient = "logits-embedding";
      craig = CraigCoreset(o);
    }
    auto r = craig.select(in);
    auto sorted = greedy;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_EQ(std::vector<int64_t>(r.indices.data_ptr<int64_t>(), r.indices.data_ptr<int64_t>() + budget), sorted);
    std::vector<float> gamma(size_t(budget), 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      size_t best = 0;
      for (size_t a = 1; a < sorted.size(); ++a)
        if (d[i][sorted[a]].item<double>() < d[i][sorted[best]].item<double>()) best = a;
      gamma[best] += 1.0f;
    }
    EXPECT_TRUE(torch::equal(r.weights, torch::tensor(gamma))) << "seed " << seed;
    EXPECT_EQ(r.weights.sum().item<float>(), float(n));
  }
  std::printf("[ craig ] worst F(greedy) / F(optimum) over 24 instances: %.4f (bound %.4f)\n", worst_ratio, 1.0 - 1.0 / std::exp(1.0));
}

TEST(Craig, ColumnBlocksGiveTheMatrixResultWithoutAnNxNMatrix) {
  auto g = gradient_like(700, 5, 2, 9);
  GradientRows rows(g);
  auto a = facility_location_greedy(rows, 40, int64_t(1) << 30);
  auto b = facility_location_greedy(rows, 40, /*matrix_bytes=*/700 * 700 * 4 - 1, /*block=*/16);
  EXPECT_TRUE(a.used_matrix);
  EXPECT_FALSE(b.used_matrix);
  EXPECT_EQ(a.order, b.order);
  EXPECT_EQ(a.cluster, b.cluster);
  // More points than one column chunk (4096): the blocks are summed chunk by chunk.
  auto big_g = gradient_like(4500, 5, 2, 11);
  GradientRows big(big_g);
  auto big_matrix = facility_location_greedy(big, 12, int64_t(1) << 30);
  auto big_blocks = facility_location_greedy(big, 12, /*matrix_bytes=*/0, /*block=*/16);
  EXPECT_TRUE(big_matrix.used_matrix);
  EXPECT_FALSE(big_blocks.used_matrix);
  EXPECT_EQ(big_matrix.order, big_blocks.order);
  EXPECT_EQ(big_matrix.cluster, big_blocks.cluster);
  // Gains after the first pick (whose gain carries each mode's bound c) agree to float rounding.
  for (size_t q = 1; q < big_matrix.gains.size(); ++q) EXPECT_NEAR(big_matrix.gains[q], big_blocks.gains[q], 1e-6 * big_matrix.gains[q]);
  // The thread count changes nothing: the same picks and bit-identical gains.
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  auto one = facility_location_greedy(rows, 40, 700 * 700 * 4 - 1, 16);
  torch::set_num_threads(std::max(2, threads));
  auto many = facility_location_greedy(rows, 40, 700 * 700 * 4 - 1, 16);
  torch::set_num_threads(threads);
  EXPECT_EQ(one.order, b.order);
  EXPECT_EQ(one.gains, many.gains);
  EXPECT_EQ(one.cluster, many.cluster);
  // Lazy evaluation: far fewer gain evaluations than plain greedy's N per step.
  std::printf("[ craig ] gain evaluations: %lld matrix, %lld blocks (plain greedy: %d)\n", (long long)a.evaluations, (long long)b.evaluations, 700 * 40);
  EXPECT_LT(a.evaluations, 700 * 40 / 2);
}

TEST(Craig, FactoredInnerProductsEqualExplicitRows) {
  auto g = gradient_like(30, 4, 1, 5);
  auto e = torch::randn({30, 6}, at::make_generator<at::CPUGeneratorImpl>(2));
  GradientRows rows(g, e);
  // Independent explicit rows in double.
  auto et = torch::cat({torch::ones({30, 1}), e}, 1).to(torch::kFloat64);
  auto x = (g.to(torch::kFloat64).unsqueeze(2) * et.unsqueeze(1)).reshape({30, -1});  // [30, 4·7]
  ASSERT_EQ(x.size(1), 28);
  EXPECT_LT((rows.dense().to(torch::kFloat64) - x).abs().max().item<double>(), 1e-6);
  // Hand layout: x_i = [g_i, g_i ⊗ e_i] in row-major (c, d') order.
  EXPECT_NEAR(x[3][0].item<double>(), g[3][0].item<double>(), 1e-6);
  EXPECT_NEAR(x[3][7 * 2 + 3].item<double>(), g[3][2].item<double>() * e[3][2].item<double>(), 1e-6);
  EXPECT_LT((rows.squared_distances(rows).to(torch::kFloat64) - torch::cdist(x, x).pow(2)).abs().max().item<double>(), 1e-4);
  EXPECT_LT((rows.inner_with_sum() - torch::mv(x, x.sum(0))).abs().max().item<double>(), 1e-8);
}

// ------------------------------------------------------------------ herding

TEST(Herding, OrderIsTheArgminDefinition) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  auto f = torch::randn({50, 6}, gen) + 0.5;
  auto order = herding_order(f, 20);
  auto fn = f.to(torch::kFloat64);
  fn = fn / fn.norm(2, 1, true);
  auto mu = fn.mean(0);
  std::vector<int64_t> expect;
  auto sum = torch::zeros({6}, torch::kFloat64);
  for (int64_t k = 1; k <= 20; ++k) {
    int64_t best = -1;
    double best_d = 1e300;
    for (int64_t i = 0; i < 50; ++i) {
      if (std::find(expect.begin(), expect.end(), i) != expect.end()) continue;
      const double dist = (mu - (sum + fn[i]) / double(k)).norm().item<double>();
      if (dist < best_d) best_d = dist, best = i;
    }
    expect.push_back(best);
    sum += fn[best];
  }
  EXPECT_EQ(std::vector<int64_t>(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + 20), expect);
}

TEST(Herding, RunningMeanReachesTheClassMeanFasterThanRandom) {
  // A class with anisotropic spread and an offset (so normalisation matters).
  auto gen = at::make_generator<at::CPUGeneratorImpl>(21);
  auto scale = torch::linspace(0.5, 4.0, 12);
  auto f = torch::randn({600, 12}, gen) * scale + torch::linspace(-1.0, 2.0, 12);
  const int64_t K = 60;
  auto order = herding_order(f, K);
  auto fn = (f / f.norm(2, 1, true)).to(torch::kFloat64);
  auto mu = fn.mean(0);
  auto errors = [&](const torch::Tensor& idx) {
    std::vector<double> e;
    auto sum = torch::zeros({12}, torch::kFloat64);
    for (int64_t k = 0; k < K; ++k) {
      sum += fn[idx[k].item<int64_t>()];
      e.push_back((mu - sum / double(k + 1)).norm().item<double>());
    }
    return e;
  };
  const auto herd = errors(order);
  std::vector<double> rand(size_t(K), 0.0);
  const int draws = 30;
  for (int d = 0; d < draws; ++d) {
    auto perm = torch::randperm(600, at::make_generator<at::CPUGeneratorImpl>(1000 + d), torch::kInt64);
    const auto e = errors(perm);
    for (int64_t k = 0; k < K; ++k) rand[size_t(k)] += e[size_t(k)] / draws;
  }
  double sh = 0, sr = 0;
  for (int64_t k = 0; k < K; ++k) {
    EXPECT_LT(herd[size_t(k)], rand[size_t(k)]) << "k = " << k + 1;
    sh += herd[size_t(k)], sr += rand[size_t(k)];
  }
  std::printf("[ herding ] ||mu - running mean|| at k = 1, 10, 60: herding %.4f %.4f %.4f, random %.4f %.4f %.4f\n", herd[0], herd[9],
              herd[59], rand[0], rand[9], rand[59]);
  EXPECT_LT(herd[size_t(K - 1)], 0.25 * rand[size_t(K - 1)]);  // O(1/k) vs O(1/sqrt(k))
  EXPECT_LT(sh, 0.5 * sr);
}

// ------------------------------------------------------------------ budgets

TEST(Budget, ArithmeticByHand) {
  // 1 channel, patch 4: 16 pixel bytes + 2 position bytes per token, 8 per sample (+4 weight).
  EXPECT_EQ(stored_sample_bytes(1, 4, 5, false), 5 * 18 + 8);
  EXPECT_EQ(stored_sample_bytes(3, 16, 196, true), 196 * (768 + 2) + 12);
  // ... and the buffer agrees.
  TokenBuffer b(1, 28, 4);
  b.add(torch::zeros({2, 1, 28, 28}, torch::kUInt8), torch::tensor({0, 1}, torch::kInt64), 0, torch::tensor({{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9}}, torch::kInt64));
  EXPECT_EQ(b.bytes(), 2 * stored_sample_bytes(1, 4, 5, false));
  EXPECT_EQ(task_byte_share(1000, 0, 30, 100), 300);
  EXPECT_EQ(task_byte_share(1000, 290, 30, 70), 304);  // floor(710 · 30 / 70) = floor(304.28)
  EXPECT_EQ(task_byte_share(1000, 1000, 30, 30), 0);
  // 10 over {50, 13, 1, 7} with one each first: 6 over caps {49, 12, 0, 6} (sum 67):
  // quotas 4.388, 1.075, 0, 0.537 -> floors 4, 1, 0, 0 and the one left to the largest remainder (0.537).
  EXPECT_EQ(allocate_proportional(10, {50, 13, 1, 7}, true), (std::vector<int64_t>{5, 2, 1, 2}));
  EXPECT_EQ(allocate_proportional(10, {50, 13, 1, 7}, false), (std::vector<int64_t>{7, 2, 0, 1}));  // 7.04, 1.83, 0.14, 0.99
  EXPECT_EQ(allocate_proportional(100, {3, 4}, true), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(allocate_proportional(3, {5, 5, 5}, false), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(allocate_proportional(2, {5, 5, 5}, false), (std::vector<int64_t>{1, 1, 0}));  // ties to the earlier class
  EXPECT_THROW(allocate_proportional(2, {5, 5, 5}, true), c10::Error);
  // Bytes: no caps. 1000 over {50, 13, 1, 7} (71): 704.2, 183.1, 14.08, 98.59 -> 704, 183, 14, 99.
  EXPECT_EQ(share_proportional(1000, {50, 13, 1, 7}), (std::vector<int64_t>{704, 183, 14, 99}));
  EXPECT_EQ(share_proportional(10, {1, 1, 1}), (std::vector<int64_t>{4, 3, 3}));
  EXPECT_EQ(token_grid(49), (std::vector<int64_t>{49, 25, 12, 6, 3, 2, 1}));
  EXPECT_EQ(token_grid(196), (std::vector<int64_t>{196, 98, 49, 25, 12, 6, 3, 2, 1}));
  EXPECT_EQ(token_grid(1), (std::vector<int64_t>{1}));
}

TEST(Budget, ProbeLossPrefersInformativeMemories) {
  // Two Gaussian classes; a probe trained on clean samples beats one trained on noise.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
  auto make = [&](int64_t n, double noise) {
    auto y = torch::arange(n, torch::kInt64) % 2;
    auto x = torch::randn({n, 5}, gen) * noise + (y.to(torch::kFloat32) * 2 - 1).unsqueeze(1) * 1.5;
    return std::make_pair(x, y);
  };
  auto [xt, yt] = make(200, 1.0);
  auto [xc, yc] = make(40, 1.0);
  auto xn = torch::randn({40, 5}, gen);
  const double clean = probe_holdout_loss(xc, yc, {}, xt, yt, 2);
  const double noise = probe_holdout_loss(xn, yc, {}, xt, yt, 2);
  EXPECT_LT(clean, 0.2);
  EXPECT_GT(noise, 0.5);
  EXPECT_EQ(clean, probe_holdout_loss(xc, yc, {}, xt, yt, 2));  // deterministic
}

// A small in-memory dataset with uneven classes: sizes 50, 13, 1, 7.
std::shared_ptr<const TensorDataset> uneven_dataset() {
  std::vector<int64_t> labels;
  const std::vector<int64_t> sizes = {50, 13, 1, 7};
  for (int64_t c = 0; c < 4; ++c)
    for (int64_t i = 0; i < sizes[size_t(c)]; ++i) labels.push_back(c);
  const int64_t n = int64_t(labels.size());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto images = torch::randint(0, 256, {n, 1, 28, 28}, gen, torch::kInt64).to(torch::kUInt8);
  return std::make_shared<TensorDataset>("uneven", images, torch::tensor(labels, torch::kInt64), 4);
}

// An untrained nano ViT (seed 3) with a 4-class head, for selection on the uneven dataset.
VisionTransformer four_class_vit() {
  auto cfg = vit_preset("vit_nano_patch4_28");
  cfg.num_classes = 4;
  return VisionTransformer(cfg, 3);
}

TEST(Selection, PerClassBudgetsWithUnevenAndTinyClassesForEveryMethod) {
  auto data = uneven_dataset();
  auto split = make_task_split(4, 1, ClassOrder{"natural", {}}, 0);
  auto model = four_class_vit();
  auto tokens = make_token_selector("random", TokenSelectorOptions{});
  for (const auto& name : sample_selector_names()) {
    for (bool weights : {false, true}) {
      auto coreset = make_sample_selector(name);
      SelectionSettings st;
      st.fractions.sample_fraction = 0.1;
      st.fractions.token_fraction = 0.1;
      st.store_weights = weights;
      TokenBuffer buffer(1, 28, 4);
      auto rep = select_task_memory(model, *data, split, 0, *coreset, *tokens, st, buffer);
      // ceil(0.1 · {50, 13, 1, 7}) = {5, 2, 1, 1}; round(0.1 · 49) = 5 tokens each.
      EXPECT_EQ(rep.per_class, (std::vector<int64_t>{5, 2, 1, 1})) << name;
      ASSERT_EQ(buffer.size(), 9) << name;
      EXPECT_EQ(buffer.tokens(), 9 * 5);
      EXPECT_TRUE(torch::equal(torch::bincount(buffer.labels(), {}, 4), torch::tensor({5, 2, 1, 1}, torch::kInt64))) << name;
      EXPECT_EQ(buffer.has_weights(), weights);
      if (weights) {
        EXPECT_GE(buffer.weights().min().item<float>(), 0.0f) << name;
        if (name == "craig") {  // cluster sizes: each class's weights add up to its size
          for (int64_t c = 0; c < 4; ++c)
            EXPECT_EQ(buffer.weights().masked_select(buffer.labels() == c).sum().item<float>(), float(std::vector<int64_t>{50, 13, 1, 7}[size_t(c)]));
        }
      }
    }
  }
}

TEST(Selection, ByteBudgetsAreRespectedForEveryStrategy) {
  auto data = uneven_dataset();  // 71 samples
  auto split = make_task_split(4, 1, ClassOrder{"natural", {}}, 0);
  auto model = four_class_vit();
  auto tokens = make_token_selector("random", TokenSelectorOptions{});
  auto coreset = make_sample_selector("herding");
  const int64_t whole = stored_sample_bytes(1, 4, 49, false);  // 890
  struct Case {
    std::string strategy;
    int64_t budget;
  };
  for (const auto& c : std::vector<Case>{{"coreset", 10 * whole + 5}, {"core-tokens", 71 * stored_sample_bytes(1, 4, 3, false) + 17},
                                         {"core-tokenset", 3000}, {"core-tokenset", 20000}}) {
    SelectionSettings st;
    st.strategy = c.strategy;
    st.budget_bytes = c.budget;
    st.fill = FillMode::Drop;
    TokenBuffer buffer(1, 28, 4);
    auto rep = select_task_memory(model, *data, split, 0, *coreset, *tokens, st, buffer);
    EXPECT_LE(buffer.bytes(), c.budget) << c.strategy;
    EXPECT_EQ(rep.added_bytes, buffer.bytes());
    if (c.strategy == "coreset") {
      EXPECT_EQ(buffer.size(), 10);  // floor((10·890 + 5) / 890)
      EXPECT_EQ(buffer.tokens(), 490);
      EXPECT_EQ(rep.per_class, (std::vector<int64_t>{5, 2, 1, 2}));  // allocate_proportional(10, sizes, true)
    } else if (c.strategy == "core-tokens") {
      EXPECT_EQ(buffer.size(), 71);
      EXPECT_EQ(buffer.tokens(), 71 * 3);
    } else {
      // The split search scored every affordable grid point and kept the best one.
      ASSERT_FALSE(rep.trials.empty());
      double best = 1e300;
      int64_t best_t = 0;
      for (const auto& t : rep.trials)
        if (t.holdout_loss < best) best = t.holdout_loss, best_t = t.tokens;
      EXPECT_EQ(rep.tokens_per_sample, best_t);
      EXPECT_EQ(buffer.size(), std::min<int64_t>(71, c.budget / stored_sample_bytes(1, 4, best_t, false)));
      EXPECT_GE(buffer.size(), 4);  // one per class at least
    }
  }
  // A budget that cannot keep one whole sample per class is an input error.
  SelectionSettings st;
  st.strategy = "coreset";
  st.budget_bytes = 3 * whole;
  TokenBuffer buffer(1, 28, 4);
  EXPECT_THROW(select_task_memory(model, *data, split, 0, *coreset, *tokens, st, buffer), InputError);
}

// memory.target = predicted: token methods explain the model's predicted class, not the label.
// A spy token selector records the targets it is asked to explain; they are compared with the
// labels and with a forward pass done here, for the two-stage and the joint path.
struct TargetSpy : TokenSelector {
  std::map<int64_t, int64_t> target_of;  // sample id -> target passed
  std::string name() const override { return "spy"; }
  torch::Tensor relevance(VisionTransformer& model, const torch::Tensor& images_u8, const torch::Tensor& targets,
                          const torch::Tensor& sample_ids) override {
    for (int64_t i = 0; i < targets.size(0); ++i) target_of[sample_ids[i].item<int64_t>()] = targets[i].item<int64_t>();
    return torch::rand({images_u8.size(0), model->config().num_patches()});
  }
};

TEST(Selection, PredictedTargetsAreTheModelsEvalPredictions) {
  auto data = uneven_dataset();
  auto split = make_task_split(4, 1, ClassOrder{"natural", {}}, 0);
  auto model = four_class_vit();
  const int64_t n = data->size();
  auto all = torch::arange(n, torch::kInt64);
  torch::Tensor predicted;
  {
    torch::NoGradGuard no_grad;
    model->eval();
    predicted = model->forward(model->normalize(data->images(all))).argmax(1);
  }
  const auto labels = data->labels();
  ASSERT_GT((predicted != labels).sum().item<int64_t>(), 0) << "the check needs predictions that differ from labels";
  auto coreset = make_sample_selector("random");
  for (bool joint : {false, true}) {
    for (bool use_prediction : {false, true}) {
      TargetSpy spy;
      SelectionSettings st;
      st.joint = joint;
      st.fractions.sample_fraction = 1.0;
      st.fractions.token_fraction = 0.5;
      st.explain_predicted = use_prediction;
      st.batch_size = 16;
      TokenBuffer buffer(1, 28, 4);
      model->train();
      select_task_memory(model, *data, split, 0, *coreset, spy, st, buffer);
      EXPECT_TRUE(model->is_training()) << "the model's mode is restored";
      ASSERT_EQ(int64_t(spy.target_of.size()), n) << "joint=" << joint;
      const auto& expect = use_prediction ? predicted : labels;
      for (const auto& [id, target] : spy.target_of) {
        EXPECT_EQ(target, expect[id].item<int64_t>()) << "sample " << id << " joint=" << joint << " predicted=" << use_prediction;
      }
    }
  }
}

// ------------------------------------------------------------------ joint selection

TEST(Joint, TopPairsByHand) {
  // scores: sample 0: 2·{0.5, 0.3, 0.2} = {1.0, 0.6, 0.4}; sample 1: {0.6, 0.4, 0.0}
  // token 10 bytes, sample 5 bytes, budget 40: (0,0) 15 -> (0,1) 10 [tie with (1,0), lower
  // sample first] -> (1,0) 15 = 40; nothing else fits.
  auto pos = joint_top_pairs(torch::tensor({2.0, 1.0}, torch::kFloat64), torch::tensor({{0.5, 0.3, 0.2}, {0.6, 0.4, 0.0}}, torch::kFloat64), 40, 10, 5);
  EXPECT_TRUE(torch::equal(pos, torch::tensor({{0, 1}, {0, -1}}, torch::kInt64)));
  // A pair that does not fit is skipped; a cheaper later one still fills the rest:
  // budget 35: (0,0) 15, (0,1) 10 -> 25; (1,0) needs 15 (skip); (0,2) needs 10 -> 35.
  pos = joint_top_pairs(torch::tensor({2.0, 1.0}, torch::kFloat64), torch::tensor({{0.5, 0.3, 0.2}, {0.6, 0.4, 0.0}}, torch::kFloat64), 35, 10, 5);
  EXPECT_TRUE(torch::equal(pos, torch::tensor({{0, 1, 2}, {-1, -1, -1}}, torch::kInt64)));
  auto shares = relevance_shares(torch::tensor({{1.0, -1.0, 3.0}, {0.0, 0.0, 0.0}}));
  EXPECT_TRUE(torch::allclose(shares, torch::tensor({{0.25, 0.0, 0.75}, {1.0 / 3, 1.0 / 3, 1.0 / 3}}, torch::kFloat64)));
  // u = max(0, <g_i, Σ g>): Σ g = (0, 3); u = {3, 6, 0}; mean 3 -> w = {2, 3, 1}.
  auto w = joint_sample_weights(torch::tensor({{1.0, 1.0}, {-1.0, 2.0}, {0.0, 0.0}}));
  EXPECT_TRUE(torch::allclose(w, torch::tensor({2.0, 3.0, 1.0}, torch::kFloat64)));
}

TEST(Joint, SelectionKeepsVaryingTokenCountsWithinTheByteBudget) {
  auto data = uneven_dataset();
  auto split = make_task_split(4, 1, ClassOrder{"natural", {}}, 0);
  auto model = four_class_vit();
  auto coreset = make_sample_selector("random");
  for (const auto& method : {"random", "rollout"}) {
    auto tokens = make_token_selector(method, TokenSelectorOptions{});
    SelectionSettings st;
    st.joint = true;
    st.budget_bytes = 2500;
    st.store_weights = true;
    TokenBuffer buffer(1, 28, 4);
    auto rep = select_task_memory(model, *data, split, 0, *coreset, *tokens, st, buffer);
    EXPECT_LE(buffer.bytes(), 2500) << method;
    EXPECT_GT(buffer.bytes(), 2500 - 4 * (18 + 12)) << method << ": every class share is used up to less than one sample";
    const auto counts = buffer.counts();
    EXPECT_LT(counts.min().item<int64_t>(), counts.max().item<int64_t>()) << method << ": counts must vary";
    EXPECT_EQ(rep.tokens_per_sample, 0);
    // The varying-count buffer round-trips through safetensors.
    TempDir dir;
    buffer.save(dir / "b.safetensors");
    auto back = TokenBuffer::load(dir / "b.safetensors");
    EXPECT_TRUE(torch::equal(back.counts(), counts));
    EXPECT_EQ(back.bytes(), buffer.bytes());
    auto all = torch::arange(buffer.size(), torch::kInt64);
    EXPECT_TRUE(torch::equal(back.gather(all, true, true).images, buffer.gather(all, true, true).images));
  }
  // Without a byte budget joint spends what the two-stage memory at s × k would take.
  auto tokens = make_token_selector("random", TokenSelectorOptions{});
  SelectionSettings st;
  st.joint = true;
  st.fractions.sample_fraction = 0.3;
  st.fractions.token_fraction = 0.3;
  TokenBuffer buffer(1, 28, 4);
  auto rep = select_task_memory(model, *data, split, 0, *coreset, *tokens, st, buffer);
  const int64_t two_stage = (15 + 4 + 1 + 3) * stored_sample_bytes(1, 4, 15, false);  // ceil(0.3·N_c), round(0.3·49) = 15
  EXPECT_EQ(rep.budget_bytes, two_stage);
  EXPECT_LE(buffer.bytes(), two_stage);
}

// ------------------------------------------------------------------ replay weights

TEST(ReplayWeights, WeightedCrossEntropyByHand) {
  auto logits = torch::tensor({{2.0, 0.0}, {0.0, 1.0}, {1.0, 1.0}});
  auto y = torch::tensor({0, 0, 1}, torch::kInt64);
  auto w = torch::tensor({3.0, 1.0, 0.0});
  const double ce0 = std::log(1 + std::exp(-2.0)), ce1 = std::log(1 + std::exp(1.0));
  EXPECT_NEAR(replay_cross_entropy(logits, y, w).item<double>(), (3 * ce0 + ce1) / 4, 1e-6);
  EXPECT_NEAR(replay_cross_entropy(logits, y, torch::ones({3})).item<double>(), torch::cross_entropy_loss(logits, y).item<double>(), 1e-6);
}

// ------------------------------------------------------------------ runs and config

Config tiny_config(const std::vector<std::string>& sets) {
  auto c = parse_config(
      "seed: 2\nthreads: 1\ndata: {name: synthetic, tasks: 2, num_classes: 4, train_per_class: 16, test_per_class: 6}\n"
      "model: {preset: vit_nano_patch4_28, embed_dim: 16, depth: 1, num_heads: 2}\n"
      "train: {epochs: 1, batch_size: 16, replay_batch_size: 8, warmup_steps: 1}\n"
      "memory: {strategy: core-tokenset, sample_fraction: 0.25, token_fraction: 0.2}\noutput: {progress: none, save_model: false}\n",
      "tiny", sets);
  c.name = "tiny";
  return c;
}

nlohmann::json read_json(const std::filesystem::path& p) { return nlohmann::json::parse(test::read_text(p)); }

TEST(CoresetRuns, EveryCoresetMethodTimesEveryTokenMethodRuns) {
  TempDir dir;
  Console::get().set_quiet(true);
  for (const auto& coreset : sample_selector_names()) {
    for (const auto& tokens : token_selector_names()) {
      RunOptions o;
      o.out_dir = dir / (coreset + "-" + tokens);
      auto s = run_experiment(tiny_config({"memory.coreset=" + coreset, "memory.tokens=" + tokens}), o);
      ASSERT_TRUE(s.completed) << coreset << " x " << tokens;
      // ceil(0.25 · 16) = 4 samples per class x 4 classes, round(0.2 · 49) = 10 tokens each.
      EXPECT_EQ(s.record.memory.samples, 16) << coreset << " x " << tokens;
      EXPECT_EQ(s.record.memory.tokens, 160) << coreset << " x " << tokens;
    }
  }
  Console::get().set_quiet(false);
}

TEST(CoresetRuns, ByteBudgetJointAndWeightsEndToEnd) {
  TempDir dir;
  Console::get().set_quiet(true);
  struct Case {
    std::string name;
    std::vector<std::string> sets;
  };
  const int64_t budget = 6000;
  for (const auto& c : std::vector<Case>{
           {"bytes-tokenset", {"memory.sample_fraction=null", "memory.token_fraction=null", "memory.budget_bytes=6000", "memory.coreset=gradmatch"}},
           {"bytes-coreset", {"memory.strategy=coreset", "memory.sample_fraction=null", "memory.token_fraction=null", "memory.budget_bytes=6000"}},
           {"joint-bytes", {"memory.sample_fraction=null", "memory.token_fraction=null", "memory.budget_bytes=6000", "memory.selection=joint"}},
           {"craig-weights", {"memory.coreset=craig", "memory.use_weights=true"}}}) {
    RunOptions o;
    o.out_dir = dir / c.name;
    auto s = run_experiment(tiny_config(c.sets), o);
    ASSERT_TRUE(s.completed) << c.name;
    auto m = read_json(dir / c.name / "metrics.json");
    auto buffer = TokenBuffer::load(dir / c.name / "buffer.safetensors");
    EXPECT_EQ(buffer.bytes(), m["memory"]["bytes"].get<int64_t>());
    if (c.name.rfind("craig", 0) != 0) {
      EXPECT_LE(buffer.bytes(), budget) << c.name;
      EXPECT_EQ(m["memory"]["budget_bytes"].get<int64_t>(), budget);
    }
    if (c.name == "joint-bytes") EXPECT_LT(buffer.counts().min().item<int64_t>(), buffer.counts().max().item<int64_t>());
    if (c.name == "bytes-coreset") EXPECT_EQ(buffer.tokens(), buffer.size() * 49);
    if (c.name == "craig-weights") {
      ASSERT_TRUE(buffer.has_weights());
      // Cluster sizes: every class's weights add up to its 16 training samples.
      for (int64_t cls = 0; cls < 4; ++cls) EXPECT_EQ(buffer.weights().masked_select(buffer.labels() == cls).sum().item<float>(), 16.0f);
    }
    // log.jsonl selection events carry the budget and, for core-tokenset, the split search.
    std::istringstream log(test::read_text(dir / c.name / "log.jsonl"));
    std::string line;
    int selections = 0;
    while (std::getline(log, line)) {
      auto j = nlohmann::json::parse(line);
      if (j["event"] != "selection") continue;
      ++selections;
      if (c.name == "bytes-tokenset") EXPECT_FALSE(j["split_trials"].empty());
    }
    EXPECT_EQ(selections, 2);
  }
  Console::get().set_quiet(false);
}

TEST(CoresetConfig, ErrorsExitTwoWithWhatIsAccepted) {
  TempDir dir;
  test::write_text(dir / "c.yaml", "threads: 1\ndata: {name: synthetic, tasks: 2, num_classes: 4, train_per_class: 10, test_per_class: 4}\n");
  const std::string run = "run " + (dir / "c.yaml").string() + " --progress none --out " + (dir / "out").string();
  struct Case {
    std::string sets, message;
  };
  for (const auto& c : std::vector<Case>{
           {"--set memory.coreset=kmeans", "accepted: random, herding, craig, gradmatch"},
           {"--set memory.selection=greedy", "accepted: two-stage, joint"},
           {"--set memory.selection=joint --set memory.strategy=coreset", "memory.selection = joint selects (sample, token) pairs: it needs memory.strategy = core-tokenset"},
           {"--set memory.budget_bytes=5000 --set memory.sample_fraction=0.1", "memory.budget_bytes = 5000 and memory.sample_fraction both fix the memory size"},
           {"--set memory.budget_bytes=5000 --set memory.strategy=cumulative", "needs a memory that selects"},
           {"--set memory.budget_bytes=0", "memory.budget_bytes = 0 is out of range; accepted: > 0"},
           {"--set memory.gradmatch_lambda=0", "memory.gradmatch_lambda = 0 is out of range; accepted: > 0"},
           {"--set memory.coreset_gradient=full", "accepted: logits, logits-embedding"},
           {"--set memory.budget_holdout=0.9", "memory.budget_holdout = 0.9 is out of range"},
           // 2 classes per task, 20 of 40 samples per task: one token of one sample per class needs 2 · 26 bytes.
           {"--set memory.budget_bytes=100", "memory.budget_bytes = 100 is impossible: task 0 would get 50 bytes but one token of one sample per class needs 52 bytes; accepted: memory.budget_bytes >= 104"},
           {"--set memory.budget_bytes=1000 --set memory.strategy=coreset", "one whole sample per class needs 1780 bytes; accepted: memory.budget_bytes >= 3560"}}) {
    auto r = test::run_cts(run + " " + c.sets);
    EXPECT_EQ(r.exit_code, 2) << c.sets << "\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.sets << "\n" << r.output;
  }
}

}  // namespace
}  // namespace cts
