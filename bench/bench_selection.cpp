// Coreset selection time per class vs class size N (1k ... 60k samples), budget 10 % of N,
// for every method on last-layer-gradient-like inputs (C = 10 classes) and D = 64
// features (vit_nano's width). CRAIG holds the N×N matrix up to memory.coreset_memory_mb
// (1 GiB: N <= 16384) and computes distance blocks beyond; /0 in the name forces blocks.
// Run: build/bench/cts_bench --benchmark_filter=Selection; numbers in docs/performance.md.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "cts/core/threads.hpp"
#include "cts/coreset/craig.hpp"
#include "cts/coreset/registry.hpp"

namespace cts {
namespace {

CoresetInput make_input(int64_t n) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(uint64_t(n));
  CoresetInput in;
  auto p = torch::softmax(torch::randn({n, 10}, gen) * 2.0, 1);
  in.gradients = p - torch::one_hot(torch::zeros({n}, torch::kInt64), 10).to(torch::kFloat32);
  in.features = torch::randn({n, 64}, gen);
  in.num_samples = n;
  in.budget = std::max<int64_t>(1, n / 10);
  return in;
}

// state.range(0): N; state.range(1): method index; state.range(2): CRAIG matrix cap in MiB.
void BM_Selection(benchmark::State& state) {
  configure_threads(0);
  const auto names = sample_selector_names();
  const std::string name = names.at(size_t(state.range(1)));
  SampleSelectorOptions o;
  o.craig_matrix_bytes = state.range(2) << 20;
  auto selector = make_sample_selector(name, o);
  const auto in = make_input(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(selector->select(in));
  state.SetItemsProcessed(state.iterations() * state.range(0));
  std::string label = name + " N=" + std::to_string(state.range(0)) + " keep " + std::to_string(in.budget);
  if (name == "craig") label += double(state.range(0)) * double(state.range(0)) * 4.0 <= double(o.craig_matrix_bytes) ? " (matrix)" : " (blocks)";
  state.SetLabel(label);
}

void selection_args(benchmark::internal::Benchmark* b) {
  for (int64_t method = 0; method < 4; ++method)
    for (int64_t n : {1000, 5000, 10000, 30000, 60000}) b->Args({n, method, 1024});
  for (int64_t n : {5000, 10000}) b->Args({n, 2, 0});  // CRAIG forced to distance blocks
}
BENCHMARK(BM_Selection)->Apply(selection_args)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// CRAIG's distance-blocks path (N = 60 000 does not fit the 1 GiB matrix) on 1 and on 2
// threads: the refresh's partial gains run on every torch thread, with the same selection.
// state.range(0): N; state.range(1): threads.
void BM_CraigBlocksThreads(benchmark::State& state) {
  configure_threads(state.range(1));
  SampleSelectorOptions o;
  auto selector = make_sample_selector("craig", o);
  const auto in = make_input(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(selector->select(in));
  configure_threads(0);
  state.SetLabel("craig N=" + std::to_string(state.range(0)) + " keep " + std::to_string(in.budget) + ", " + std::to_string(state.range(1)) + " thread(s)");
}
BENCHMARK(BM_CraigBlocksThreads)->Args({30000, 1})->Args({30000, 2})->Args({60000, 1})->Args({60000, 2})->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace cts
