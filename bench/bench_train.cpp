// Training-step throughput of the cts ViT on CPU: full inputs, token dropping in each fill
// mode, the quickstart's step (new data and replay at 5 of 49 tokens, `drop`, the two loss
// terms as parallel jobs as the loop runs them) against its host-side preparation (which
// tokens survive, the replay batch from the buffer), and the evaluation forward.
// Every benchmark warms up first (the first iterations of libtorch ops are slow).
// Run: build/bench/cts_bench [--benchmark_filter=...]; numbers in docs/performance.md.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "cts/attribution/token_selector.hpp"
#include "cts/core/threads.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/models/cpu_attention.hpp"
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
BENCHMARK(BM_TrainStep)->Args({0, 0})->Args({5, 0})->Args({5, 1})->Args({5, 2})->Args({25, 0})->Args({25, 2})->MinWarmUpTime(0.5)->Unit(benchmark::kMillisecond)->UseRealTime();

// A quickstart buffer: 6 000 samples of 5 tokens (s = k = 0.1 of 4 tasks of 12 000).
TokenBuffer quickstart_buffer() {
  TokenBuffer b(1, 28, 4);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  for (int64_t i = 0; i < 6000; i += 1000) {
    auto images = torch::randint(0, 256, {1000, 1, 28, 28}, gen, torch::kInt64).to(torch::kUInt8);
    b.add(images, torch::randint(0, 8, {1000}, gen, torch::kInt64), i / 1500, top_tokens(torch::rand({1000, 49}, gen), 5));
  }
  return b;
}

// The quickstart's optimizer step: new data (128, 5 of 49 tokens kept, drop) and replay (128
// buffer samples of 5 tokens) as two loss terms, each a job with its own backward, the
// gradients added, AdamW. state.range(0) = 1: the terms as parallel jobs (the loop's way);
// 0: one loss, one backward, torch's intra-op threads (plain PyTorch's way).
void BM_QuickstartStep(benchmark::State& state) {
  const int64_t batch = 128, T = 49;
  Setup s("vit_nano_patch4_28", batch);
  auto images = torch::randint(0, 256, {batch, 1, 28, 28}, torch::kInt64).to(torch::kUInt8);
  auto buffer = quickstart_buffer();
  TokenKeep keep;
  keep.positions = top_tokens(torch::rand({batch, T}), 5);
  keep.fill = FillMode::Drop;
  auto rb = buffer.gather(torch::randint(0, buffer.size(), {batch}, torch::kInt64), false, true);
  TokenKeep rkeep;
  rkeep.positions = rb.positions;
  rkeep.fill = FillMode::Drop;
  std::vector<torch::Tensor> params;
  for (const auto& p : s.model->parameters()) params.push_back(p);
  auto term = [&](int64_t k) {
    if (k == 0) return torch::cross_entropy_loss(s.model->forward(s.model->normalize(images), {&keep, nullptr}), s.y);
    return torch::cross_entropy_loss(
        s.model->forward_head(s.model->forward_features_patches(s.model->normalize_patches(rb.patches), rb.positions, {&rkeep, nullptr})), s.y);
  };
  for (auto _ : state) {
    s.opt->zero_grad();
    if (state.range(0)) {
      std::vector<std::vector<torch::Tensor>> grads(2);
      parallel_jobs(2, [&](int64_t k) { grads[size_t(k)] = torch::autograd::grad({term(k)}, params, {}, false, false, true); });
      torch::NoGradGuard ng;
      for (size_t i = 0; i < params.size(); ++i) {
        auto& g = params[i].mutable_grad();
        if (g.defined()) g.add_(grads[0][i] + grads[1][i]);
        else g = grads[0][i] + grads[1][i];
      }
    } else {
      (term(0) + term(1)).backward();
    }
    s.opt->step(1e-3);
  }
  state.SetItemsProcessed(state.iterations() * 2 * batch);
  state.SetLabel(state.range(0) ? "terms as parallel jobs" : "one backward, intra-op threads");
}
BENCHMARK(BM_QuickstartStep)->Arg(1)->Arg(0)->MinWarmUpTime(0.5)->Unit(benchmark::kMillisecond)->UseRealTime();

// The host-side work of a quickstart step: which 5 of 49 tokens of 128 new images survive
// (a seeded uniform draw, top_tokens) and the replay batch (128 buffer samples' patches and
// positions), compared with BM_QuickstartStep's model work.
void BM_QuickstartStepPreparation(benchmark::State& state) {
  auto buffer = quickstart_buffer();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  for (auto _ : state) {
    benchmark::DoNotOptimize(top_tokens(torch::rand({128, 49}, gen), 5));
    benchmark::DoNotOptimize(buffer.gather(torch::randperm(buffer.size(), gen, torch::kInt64).narrow(0, 0, 128), false, true));
  }
  state.SetItemsProcessed(state.iterations() * 128);
}
BENCHMARK(BM_QuickstartStepPreparation)->MinWarmUpTime(0.5)->Unit(benchmark::kMillisecond)->UseRealTime();

// The evaluation forward of 2 048 images. state.range(0): batch size; state.range(1): 0 = the
// full forward, batch after batch, torch's intra-op threads (as before issue 23); 1 = the
// evaluation's way (pre-logits by forward_cls, batches as parallel jobs, inference mode) with
// attention's products by torch::matmul; 2 = the same with them by the BLAS gemm called
// directly (models/cpu_attention.hpp, the default).
void BM_EvalForward(benchmark::State& state) {
  const int64_t batch = state.range(0), total = 2048, mode = state.range(1);
  Setup s("vit_nano_patch4_28", total);
  s.model->eval();
  const int64_t batches = total / batch;
  set_cpu_attention_enabled(mode == 2);
  for (auto _ : state) {
    if (mode > 0) {
      parallel_jobs(batches, [&](int64_t k) {
        c10::InferenceMode im;
        benchmark::DoNotOptimize(s.model->forward_cls(s.x.narrow(0, k * batch, batch)));
      });
    } else {
      torch::NoGradGuard ng;
      for (int64_t k = 0; k < batches; ++k) benchmark::DoNotOptimize(s.model->forward(s.x.narrow(0, k * batch, batch)));
    }
  }
  set_cpu_attention_enabled(true);
  state.SetItemsProcessed(state.iterations() * total);
  state.SetLabel(mode == 0 ? "full forward" : mode == 1 ? "forward_cls, parallel jobs, torch matmul attention" : "forward_cls, parallel jobs, direct gemm attention");
}
BENCHMARK(BM_EvalForward)->Args({512, 0})->Args({512, 2})->Args({64, 0})->Args({64, 1})->Args({64, 2})->MinWarmUpTime(0.5)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace cts

BENCHMARK_MAIN();
