// The ViT classifier learner: the weighted replay loss by hand.
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

}  // namespace
}  // namespace cts
