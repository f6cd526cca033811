// Coreset selection against independent computations: GradMatch's non-negative OMP on
// constructed sparse problems and against the ridge solution, CRAIG vs brute force and
// plain greedy, herding vs its argmin definition and vs random.
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <set>

#include "cts/core/error.hpp"
#include "cts/coreset/craig.hpp"
#include "cts/coreset/gradient_rows.hpp"
#include "cts/coreset/gradmatch.hpp"
#include "cts/coreset/herding.hpp"
#include "cts/coreset/registry.hpp"
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
  // Within one column chunk both modes add the same float distances in the same order: after
  // the first pick (whose gain carries each mode's bound c) the gains are equal bit for bit.
  for (size_t q = 1; q < a.gains.size(); ++q) EXPECT_EQ(a.gains[q], b.gains[q]) << "pick " << q;
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

// The distance-blocks refresh splits each round into (column chunk, half of the candidates)
// pieces on every torch thread; each candidate's gain is still summed in one order, so the
// selection is bit-identical on any number of threads. 9 000 points: 3 column chunks.
TEST(Craig, ThreadsDoNotChangeTheSelection) {
  auto g = gradient_like(9000, 10, 0, 17);
  const GradientRows rows(g);
  const int old_threads = torch::get_num_threads();
  torch::set_num_threads(1);
  const auto one = facility_location_greedy(rows, 120, /*matrix_bytes=*/0, /*block=*/16);
  torch::set_num_threads(2);
  const auto two = facility_location_greedy(rows, 120, /*matrix_bytes=*/0, /*block=*/16);
  torch::set_num_threads(old_threads);
  ASSERT_FALSE(one.used_matrix);
  EXPECT_EQ(one.order, two.order);
  EXPECT_EQ(one.gains, two.gains);  // exactly, not within a tolerance
  EXPECT_EQ(one.cluster, two.cluster);
}

// The refresh relies on a matrix product's rows not depending on how its rows are split (the
// pieces above); checked here for the shapes CRAIG uses (logits: K = 10; logits-embedding).
TEST(Craig, MatrixProductRowsDoNotDependOnTheRowSplit) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  for (int64_t k : {10, 650}) {
    auto a = torch::randn({64, k}, gen), b = torch::randn({k, 4096}, gen);
    auto full = torch::matmul(a, b);
    EXPECT_TRUE(torch::equal(full.narrow(0, 0, 32), torch::matmul(a.narrow(0, 0, 32), b))) << k;
    EXPECT_TRUE(torch::equal(full.narrow(0, 32, 32), torch::matmul(a.narrow(0, 32, 32), b))) << k;
  }
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

// The rank of a selection is the method's own order; for the greedy methods and random its
// first m samples are what the method keeps at budget m (a fixed memory's shrink rule).
TEST(Coreset, RankIsTheMethodsOrderAndItsPrefixIsTheSmallerSelection) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  CoresetInput in;
  in.features = torch::randn({40, 5}, gen) + 0.3;
  in.gradients = torch::softmax(torch::randn({40, 4}, gen), 1) - torch::one_hot(torch::randint(0, 4, {40}, gen, torch::kInt64), 4).to(torch::kFloat32);
  in.num_samples = 40, in.seed = 4, in.task = 1, in.class_id = 2;
  auto ordered = [](const CoresetResult& r) { return r.indices.index_select(0, torch::argsort(r.rank)); };
  for (const std::string name : {"random", "herding", "craig", "gradmatch"}) {
    auto m = make_sample_selector(name);
    in.budget = 12;
    const auto big = m->select(in);
    ASSERT_TRUE(big.rank.defined()) << name;
    EXPECT_TRUE(torch::equal(std::get<0>(torch::sort(big.rank)), torch::arange(12, torch::kInt64))) << name << ": rank is a permutation";
    EXPECT_TRUE(torch::equal(big.indices, std::get<0>(torch::sort(big.indices)))) << name << ": indices ascending";
    if (name == "herding") {
      EXPECT_TRUE(torch::equal(ordered(big), herding_order(in.features, 12)));
    }
    if (name == "gradmatch") continue;  // OMP's order, then a random fill: the prefix need not be a smaller run's choice
    in.budget = 5;
    const auto small = m->select(in);
    EXPECT_TRUE(torch::equal(std::get<0>(torch::sort(ordered(big).narrow(0, 0, 5))), small.indices)) << name;
  }
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

}  // namespace
}  // namespace cts
