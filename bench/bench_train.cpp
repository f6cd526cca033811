// Training-step throughput of the cts ViT on CPU: full inputs, token dropping in each fill
// mode, and a replay batch at token fraction 0.1 in `drop` mode vs full tokens.
// Run: build/bench/cts_bench [--benchmark_filter=...]; numbers in docs/performance.md.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "cts/attribution/token_selector.hpp"
#include "cts/core/threads.hpp"
#include "cts/models/vit.hpp"
#include "cts/train/optimizer.hpp"

namespace cts {
namespace {

struct Setup {
  VisionTransformer model{nullptr};
  std::unique_ptr<Optimizer> opt;
  torch::Tensor x, y;
  Setup(const std::string& preset, int64_t batch) {
    configure_threads(0);
    auto cfg = vit_preset(preset);
    cfg.num_classes = 10;
    model = VisionTransformer(cfg, 0);
    std::vector<std::pair<std::string, torch::Tensor>> named;
    for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
    opt = std::make_unique<Optimizer>(named, OptimizerOptions{});
    x = torch::randn({batch, cfg.in_chans, cfg.img_size, cfg.img_size});
    y = torch::randint(0, 10, {batch}, torch::kInt64);
  }
  void step(const TokenKeep* keep) {
    opt->zero_grad();
    auto loss = torch::cross_entropy_loss(model->forward(x, {keep, nullptr}), y);
    loss.backward();
    opt->step(1e-3);
  }
};

// state.range(0): kept tokens per sample (0 = all); state.range(1): fill mode.
void BM_TrainStep(benchmark::State& state) {
  const int64_t batch = 128;
  Setup s("vit_nano_patch4_28", batch);
  const int64_t T = s.model->config().num_patches();
  TokenKeep keep;
  const TokenKeep* kp = nullptr;
  if (state.range(0) > 0) {
    keep.positions = top_tokens(torch::rand({batch, T}), state.range(0));
    keep.fill = static_cast<FillMode>(state.range(1));
    kp = &keep;
  }
  for (auto _ : state) s.step(kp);
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetLabel(kp ? std::string(fill_mode_name(keep.fill)) + " k=" + std::to_string(state.range(0)) + "/" + std::to_string(T) : "full");
}
BENCHMARK(BM_TrainStep)->Args({0, 0})->Args({5, 0})->Args({5, 1})->Args({5, 2})->Args({25, 0})->Args({25, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_EvalForward(benchmark::State& state) {
  const int64_t batch = 512;
  Setup s("vit_nano_patch4_28", batch);
  s.model->eval();
  torch::NoGradGuard ng;
  for (auto _ : state) benchmark::DoNotOptimize(s.model->forward(s.x));
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_EvalForward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace cts

BENCHMARK_MAIN();
