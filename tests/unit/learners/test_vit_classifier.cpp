// The ViT classifier learner: the weighted replay loss and Weight Aligning by hand.
#include <torch/torch.h>

#include "cts/learners/vit_classifier/vit_classifier.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;

// ------------------------------------------------------------------ replay weights

TEST(ReplayWeights, WeightedCrossEntropyByHand) {
  auto logits = torch::tensor({{2.0, 0.0}, {0.0, 1.0}, {1.0, 1.0}});
  auto y = torch::tensor({0, 0, 1}, torch::kInt64);
  auto w = torch::tensor({3.0, 1.0, 0.0});
  const double ce0 = std::log(1 + std::exp(-2.0)), ce1 = std::log(1 + std::exp(1.0));
  EXPECT_NEAR(replay_cross_entropy(logits, y, w).item<double>(), (3 * ce0 + ce1) / 4, 1e-6);
  EXPECT_NEAR(replay_cross_entropy(logits, y, torch::ones({3})).item<double>(), torch::cross_entropy_loss(logits, y).item<double>(), 1e-6);
}

// ------------------------------------------------------------------ weight aligning

TEST(WeightAligning, RescalesNewRowsToTheOldMeanNormByHand) {
  // Old rows: norms 5 and 1 (mean 3); new rows: norms 10 and 2 (mean 6): gamma = 0.5.
  auto w = torch::tensor({{3.0, 4.0}, {0.0, 1.0}, {6.0, 8.0}, {0.0, 2.0}});
  EXPECT_NEAR(weight_align(w, 2), 0.5, 1e-12);
  EXPECT_TRUE(torch::equal(w, torch::tensor({{3.0, 4.0}, {0.0, 1.0}, {3.0, 4.0}, {0.0, 1.0}})));
  // One old row of norm 2 (mean 2), three new rows of norms 1, 1, 4 (mean 2): gamma = 1.
  auto v = torch::tensor({{2.0, 0.0}, {1.0, 0.0}, {0.0, -1.0}, {0.0, 4.0}});
  EXPECT_NEAR(weight_align(v, 1), 1.0, 1e-12);
  // Nothing to align: no old or no new rows.
  auto u = torch::tensor({{1.0, 1.0}});
  EXPECT_EQ(weight_align(u, 0), 1.0);
  EXPECT_EQ(weight_align(u, 1), 1.0);
  EXPECT_TRUE(torch::equal(u, torch::tensor({{1.0, 1.0}})));
}

}  // namespace
}  // namespace cts
