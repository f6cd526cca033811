// Optimizers and schedule: AdamW / Adam / SGD against hand-derived steps and libtorch's own
// torch::optim implementations, the multi-tensor (foreach) path against the per-parameter
// loop (bit-identical), weight-decay exclusions, gradient clipping and the LR schedule.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>

#include "cts/train/optimizer.hpp"

using namespace cts;

namespace {

std::vector<std::pair<std::string, torch::Tensor>> make_params(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return {{"blocks.0.attn.qkv.weight", torch::randn({6, 4}, gen).requires_grad_()},
          {"blocks.0.attn.qkv.bias", torch::randn({6}, gen).requires_grad_()},
          {"pos_embed", torch::randn({1, 5, 4}, gen).requires_grad_()},
          {"head.weight", torch::randn({3, 4}, gen).requires_grad_()}};
}

void set_grads(const std::vector<std::pair<std::string, torch::Tensor>>& ps, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  for (const auto& [n, p] : ps) p.mutable_grad() = torch::randn(p.sizes(), gen);
}

}  // namespace

TEST(Optimizer, AdamWOneScalarByHand) {
  // p = 1, g = 0.5, lr = 0.1, wd = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, step 1:
  // p <- p (1 - lr wd) = 0.999; m = 0.05, v = 0.00025; m^ = 0.5, v^ = 0.25;
  // p <- 0.999 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.899 (+ 2e-9).
  auto p = torch::ones({1, 1}, torch::kFloat64).requires_grad_();
  OptimizerOptions o;
  o.weight_decay = 0.01;
  Optimizer opt({{"w", p}}, o);
  p.mutable_grad() = torch::full({1, 1}, 0.5, torch::kFloat64);
  opt.step(0.1);
  EXPECT_NEAR(p.item<double>(), 0.999 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-12);
}

TEST(Optimizer, MatchesLibtorchAdamWAndAdam) {
  for (const std::string kind : {"adamw", "adam"}) {
    // Matrices only, so our decay rule (dim >= 2) and libtorch's (everything) agree.
    auto gen = at::detail::createCPUGenerator(3);
    auto a = torch::randn({5, 3}, gen).requires_grad_();
    auto b = a.detach().clone().requires_grad_();
    OptimizerOptions o;
    o.kind = kind;
    o.weight_decay = 0.05;
    Optimizer ours({{"w", a}}, o);
    std::unique_ptr<torch::optim::Optimizer> ref;
    if (kind == "adamw") {
      ref = std::make_unique<torch::optim::AdamW>(std::vector<torch::Tensor>{b}, torch::optim::AdamWOptions(1e-2).weight_decay(0.05));
    } else {
      ref = std::make_unique<torch::optim::Adam>(std::vector<torch::Tensor>{b}, torch::optim::AdamOptions(1e-2).weight_decay(0.05));
    }
    for (int s = 0; s < 10; ++s) {
      auto g = torch::randn({5, 3}, gen);
      a.mutable_grad() = g.clone();
      b.mutable_grad() = g.clone();
      ours.step(1e-2);
      ref->step();
    }
    EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6)) << kind << "\n" << a - b;
  }
}

TEST(Optimizer, SgdMomentumMatchesLibtorch) {
  auto gen = at::detail::createCPUGenerator(4);
  auto a = torch::randn({4, 2}, gen).requires_grad_();
  auto b = a.detach().clone().requires_grad_();
  OptimizerOptions o;
  o.kind = "sgd";
  o.weight_decay = 0.01;
  Optimizer ours({{"w", a}}, o);
  torch::optim::SGD ref({b}, torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(0.01));
  for (int s = 0; s < 6; ++s) {
    auto g = torch::randn({4, 2}, gen);
    a.mutable_grad() = g.clone();
    b.mutable_grad() = g.clone();
    ours.step(0.05);
    ref.step();
  }
  EXPECT_TRUE(torch::allclose(a, b, 1e-6, 1e-7));
}

TEST(Optimizer, ForeachPathIsBitIdenticalToTheLoop) {
  for (const std::string kind : {"adamw", "adam"}) {
    auto pa = make_params(5), pb = make_params(5);
    OptimizerOptions fa, fb;
    fa.kind = fb.kind = kind;
    fa.foreach = true;
    fb.foreach = false;
    Optimizer a(pa, fa), b(pb, fb);
    for (int s = 0; s < 5; ++s) {
      set_grads(pa, 100 + s);
      set_grads(pb, 100 + s);
      a.step(1e-2 * (s + 1));
      b.step(1e-2 * (s + 1));
    }
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << kind << " " << pa[i].first;
    auto sa = a.state(), sb = b.state();
    for (const auto& [k, v] : sa) EXPECT_TRUE(torch::equal(v, sb.at(k))) << k;
  }
}

TEST(Optimizer, DecayOnlyOnMatricesNotPositionEmbedding) {
  auto ps = make_params(6);
  std::map<std::string, torch::Tensor> before;
  for (const auto& [n, p] : ps) before[n] = p.detach().clone();
  OptimizerOptions o;
  o.weight_decay = 0.5;
  Optimizer opt(ps, o);
  for (const auto& [n, p] : ps) p.mutable_grad() = torch::zeros_like(p);  // zero gradients: only decay moves
  opt.step(0.1);
  for (const auto& [n, p] : ps) {
    const bool decays = n == "blocks.0.attn.qkv.weight" || n == "head.weight";
    if (decays) {
      EXPECT_TRUE(torch::allclose(p, before[n] * (1.0 - 0.1 * 0.5))) << n;
    } else {
      EXPECT_TRUE(torch::equal(p, before[n])) << n;
    }
  }
}

TEST(Optimizer, ClipGradNorm) {
  auto a = torch::zeros({2}).requires_grad_();
  auto b = torch::zeros({1}).requires_grad_();
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  auto norm = clip_grad_norm({a, b}, 1.0);
  EXPECT_NEAR(norm.item<double>(), 5.0, 1e-6);
  EXPECT_NEAR(a.grad()[0].item<double>(), 0.6, 1e-5);
  EXPECT_NEAR(b.grad()[0].item<double>(), 0.8, 1e-5);
  clip_grad_norm({a, b}, 10.0);  // below the limit: unchanged
  EXPECT_NEAR(b.grad()[0].item<double>(), 0.8, 1e-5);
}

TEST(Optimizer, WarmupThenCosineSchedule) {
  // warmup 10 of 110 steps to lr 1: step 0 -> 0.1, step 9 -> 1; then cosine over 100 steps to min 0.
  EXPECT_DOUBLE_EQ(scheduled_lr("cosine", 1.0, 0.0, 10, 0, 110), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr("cosine", 1.0, 0.0, 10, 9, 110), 1.0);
  EXPECT_DOUBLE_EQ(scheduled_lr("cosine", 1.0, 0.0, 10, 10, 110), 1.0);
  EXPECT_NEAR(scheduled_lr("cosine", 1.0, 0.0, 10, 60, 110), 0.5, 1e-12);
  EXPECT_NEAR(scheduled_lr("cosine", 1.0, 0.1, 10, 110, 110), 0.1, 1e-12);
  EXPECT_DOUBLE_EQ(scheduled_lr("constant", 0.3, 0.0, 0, 50, 110), 0.3);
}
