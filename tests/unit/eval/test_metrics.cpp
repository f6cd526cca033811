// Continual-learning metrics on a hand-computed 3x3 accuracy matrix.
#include <cmath>

#include "cts/eval/metrics.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

TEST(Metrics, HandComputedMatrix) {
  const double n = NAN;
  Matrix R = {{0.90, n, n}, {0.60, 0.80, n}, {0.50, 0.70, 0.95}};
  Matrix Rt = {{0.90, 0.55, 0.40}, {0.85, 0.80, 0.60}, {0.80, 0.75, 0.95}};
  std::vector<double> b = {0.5, 0.45, 0.5};
  auto m = compute_metrics(R, Rt, b);
  ASSERT_EQ(m.average_accuracy.size(), 3u);
  EXPECT_DOUBLE_EQ(m.average_accuracy[0], 0.90);
  EXPECT_DOUBLE_EQ(m.average_accuracy[1], 0.70);              // (0.6 + 0.8) / 2
  EXPECT_NEAR(m.average_accuracy[2], 0.7166666666666667, 1e-12);  // (0.5 + 0.7 + 0.95) / 3
  EXPECT_NEAR(m.final_average_accuracy, 0.7166666666666667, 1e-12);
  EXPECT_NEAR(m.average_incremental_accuracy, (0.9 + 0.7 + 0.7166666666666667) / 3, 1e-12);
  // forgetting: task 0: max(0.9, 0.6) - 0.5 = 0.4; task 1: 0.8 - 0.7 = 0.1 -> 0.25
  EXPECT_NEAR(*m.forgetting, 0.25, 1e-12);
  // BWT: ((0.5 - 0.9) + (0.7 - 0.8)) / 2 = -0.25
  EXPECT_NEAR(*m.bwt, -0.25, 1e-12);
  // FWT: ((0.55 - 0.45) + (0.60 - 0.5)) / 2 = 0.1
  EXPECT_NEAR(*m.fwt, 0.10, 1e-12);
}

TEST(Metrics, SingleTaskHasNoForgetting) {
  auto m = compute_metrics({{0.7}});
  EXPECT_DOUBLE_EQ(m.final_average_accuracy, 0.7);
  EXPECT_FALSE(m.forgetting.has_value());
  EXPECT_FALSE(m.bwt.has_value());
  EXPECT_FALSE(m.fwt.has_value());
}

TEST(Metrics, ForgettingUsesTheBestEarlierAccuracy) {
  // Task 0 peaks after task 1 (0.95), not right after training (0.7).
  Matrix R = {{0.7, NAN, NAN}, {0.95, 0.9, NAN}, {0.6, 0.9, 0.8}};
  auto m = compute_metrics(R);
  EXPECT_NEAR(*m.forgetting, ((0.95 - 0.6) + (0.9 - 0.9)) / 2, 1e-12);
  EXPECT_NEAR(*m.bwt, ((0.6 - 0.7) + (0.9 - 0.9)) / 2, 1e-12);
}

}  // namespace
}  // namespace cts
