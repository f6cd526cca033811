// Attribution throughput: images/s of each token method on CPU (GPU when built with CUDA and
// CTS_BENCH_DEVICE=cuda), next to a plain forward pass of the same batch, so the per-image
// cost of each method relative to a forward pass can be read off.
// Run: build/bench/cts_bench --benchmark_filter=Attribution; numbers in docs/performance.md.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>

#include "cts/attribution/registry.hpp"
#include "cts/core/threads.hpp"
#include "cts/models/vit.hpp"

namespace cts {
namespace {

const std::vector<std::string> kMethods = {"forward", "random", "rollout", "gradcam", "gradlrp", "chefer-generic", "atman"};
const std::vector<std::string> kPresets = {"vit_nano_patch4_28", "vit_tiny_patch16_224"};

torch::Device bench_device() {
  const char* d = std::getenv("CTS_BENCH_DEVICE");
  return d && std::string(d) == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

// range(0): method index, range(1): preset index, range(2): batch size.
void BM_Attribution(benchmark::State& state) {
  configure_threads(0);
  const auto& method = kMethods[size_t(state.range(0))];
  auto cfg = vit_preset(kPresets[size_t(state.range(1))]);
  cfg.num_classes = 10;
  const int64_t batch = state.range(2);
  VisionTransformer model(cfg, 0);
  model->to(bench_device());
  model->eval();
  auto images = torch::randint(0, 256, {batch, cfg.in_chans, cfg.img_size, cfg.img_size}, torch::kInt64).to(torch::kUInt8);
  auto targets = torch::randint(0, 10, {batch}, torch::kInt64);
  auto ids = torch::arange(batch);
  std::unique_ptr<TokenSelector> sel;
  if (method != "forward") sel = make_token_selector(method, {});
  for (auto _ : state) {
    if (sel) {
      benchmark::DoNotOptimize(sel->relevance(model, images, targets, ids));
    } else {
      torch::NoGradGuard ng;
      benchmark::DoNotOptimize(model->forward(model->normalize(images)).to(torch::kCPU));
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetLabel(method + " " + cfg.preset);
}

void Args(benchmark::internal::Benchmark* b) {
  for (int64_t m = 0; m < int64_t(kMethods.size()); ++m) {
    b->Args({m, 0, 64});
    b->Args({m, 1, kMethods[size_t(m)] == "atman" ? 1 : 8});
  }
}
BENCHMARK(BM_Attribution)->Apply(Args)->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace
}  // namespace cts
