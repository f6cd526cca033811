// Byte-budget arithmetic and the held-out probe that scores candidate memories.
#include "cts/memory/budget.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cts/core/error.hpp"

namespace cts {

int64_t stored_sample_bytes(int64_t channels, int64_t patch_size, int64_t tokens, bool weights, int64_t grid_tokens) {
  // Per token: the uint8 patch, and a uint16 position unless the sample is whole; per sample:
  // uint16 count, int32 label, uint16 task, optional float32 weight (token_buffer.hpp's layout).
  TORCH_CHECK(tokens >= 0 && tokens <= grid_tokens, "stored_sample_bytes: ", tokens, " tokens of ", grid_tokens);
  return tokens * (channels * patch_size * patch_size + (tokens < grid_tokens ? 2 : 0)) + 8 + (weights ? 4 : 0);
}

int64_t task_byte_share(int64_t budget, int64_t used, int64_t task_samples, int64_t remaining_samples) {
  TORCH_CHECK(remaining_samples >= task_samples && task_samples >= 0, "byte share: bad sample counts");
  if (remaining_samples == 0 || budget <= used) return 0;
  const long double share = static_cast<long double>(budget - used) * static_cast<long double>(task_samples) / static_cast<long double>(remaining_samples);
  return static_cast<int64_t>(std::floor(share));
}

std::vector<int64_t> allocate_proportional(int64_t total, const std::vector<int64_t>& sizes, bool at_least_one) {
  const size_t g = sizes.size();
  std::vector<int64_t> out(g, 0);
  int64_t sum = 0, nonempty = 0;
  for (int64_t s : sizes) {
    TORCH_CHECK(s >= 0, "allocation: negative group size");
    sum += s;
    nonempty += s > 0;
  }
  if (total >= sum) return sizes;
  TORCH_CHECK(total >= 0, "allocation: negative total");
  std::vector<int64_t> cap = sizes;
  if (at_least_one) {
    TORCH_CHECK(total >= nonempty, "allocation: ", total, " units cannot give one to each of ", nonempty, " groups");
    for (size_t c = 0; c < g; ++c)
      if (sizes[c] > 0) out[c] = 1, cap[c] = sizes[c] - 1;
    total -= nonempty;
    sum -= nonempty;
  }
  if (total == 0 || sum == 0) return out;
  // Quota q_c = total · cap_c / sum = floor + rem_c / sum.
  std::vector<int64_t> rem(g);
  int64_t given = 0;
  for (size_t c = 0; c < g; ++c) {
    const __int128 num = static_cast<__int128>(total) * cap[c];
    out[c] += static_cast<int64_t>(num / sum);
    rem[c] = static_cast<int64_t>(num % sum);
    given += static_cast<int64_t>(num / sum);
  }
  std::vector<size_t> order(g);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rem[a] > rem[b]; });
  for (size_t a = 0; a < g && given < total; ++a) {
    if (rem[order[a]] == 0) break;
    out[order[a]] += 1;
    ++given;
  }
  return out;
}

std::vector<int64_t> share_proportional(int64_t total, const std::vector<int64_t>& sizes) {
  TORCH_CHECK(total >= 0, "share: negative total");
  int64_t sum = 0;
  for (int64_t s : sizes) {
    TORCH_CHECK(s >= 0, "share: negative group size");
    sum += s;
  }
  std::vector<int64_t> out(sizes.size(), 0), rem(sizes.size(), 0);
  if (sum == 0) return out;
  int64_t given = 0;
  for (size_t c = 0; c < sizes.size(); ++c) {
    const __int128 num = static_cast<__int128>(total) * sizes[c];
    out[c] = static_cast<int64_t>(num / sum);
    rem[c] = static_cast<int64_t>(num % sum);
    given += out[c];
  }
  std::vector<size_t> order(sizes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rem[a] > rem[b]; });
  for (size_t a = 0; a < order.size() && given < total; ++a, ++given) out[order[a]] += 1;
  return out;
}

std::vector<int64_t> token_grid(int64_t t) {
  TORCH_CHECK(t >= 1, "token grid: need at least one token");
  std::vector<int64_t> grid;
  for (double d = 1.0;; d *= 2.0) {
    const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(std::llround(double(t) / d)));
    if (grid.empty() || grid.back() != k) grid.push_back(k);
    if (k == 1) break;
  }
  return grid;
}

double probe_holdout_loss(const torch::Tensor& train_features, const torch::Tensor& train_labels, const torch::Tensor& train_weights,
                          const torch::Tensor& test_features, const torch::Tensor& test_labels, int64_t classes) {
  TORCH_CHECK(train_features.dim() == 2 && test_features.dim() == 2 && train_features.size(1) == test_features.size(1),
              "probe: features must be [n, D] with the same D");
  TORCH_CHECK(train_features.size(0) >= 1 && test_features.size(0) >= 1, "probe: empty training or test set");
  torch::NoGradGuard outer;  // features carry no graph; the probe's own graph is enabled below
  auto xtr = train_features.to(torch::kCPU, torch::kFloat32);
  auto xte = test_features.to(torch::kCPU, torch::kFloat32);
  const auto mean = xtr.mean(0, true);
  const auto std = xtr.std(0, false, true).clamp_min(1e-6);
  xtr = (xtr - mean) / std;
  xte = (xte - mean) / std;
  auto ytr = train_labels.to(torch::kCPU, torch::kInt64);
  auto yte = test_labels.to(torch::kCPU, torch::kInt64);
  torch::Tensor w = train_weights.defined() ? train_weights.to(torch::kCPU, torch::kFloat32) : torch::ones({xtr.size(0)});
  w = w / w.sum().clamp_min(1e-12);
  auto weight = torch::zeros({classes, xtr.size(1)}, torch::kFloat32);
  auto bias = torch::zeros({classes}, torch::kFloat32);
  {
    torch::AutoGradMode grad_on(true);
    weight.set_requires_grad(true);
    bias.set_requires_grad(true);
    torch::optim::Adam opt({weight, bias}, torch::optim::AdamOptions(0.05));
    for (int step = 0; step < 300; ++step) {
      opt.zero_grad();
      auto logits = torch::addmm(bias, xtr, weight.t());
      auto ce = torch::cross_entropy_loss(logits, ytr, {}, torch::Reduction::None);
      auto loss = (ce * w).sum() + 1e-3 * weight.pow(2).sum();
      loss.backward();
      opt.step();
    }
  }
  auto logits = torch::addmm(bias.detach(), xte, weight.detach().t());
  return torch::cross_entropy_loss(logits, yte).item<double>();
}

int64_t fixed_class_quota(const MemoryFractions& f, int64_t classes, int64_t sample_bytes) {
  TORCH_CHECK(classes >= 1 && sample_bytes >= 1, "fixed memory: bad class count or sample size");
  if (f.fixed_samples) return *f.fixed_samples / classes;
  TORCH_CHECK(f.fixed_bytes.has_value(), "fixed_class_quota needs a fixed memory size");
  return (*f.fixed_bytes / classes) / sample_bytes;
}

MemoryFractions plan_byte_budget(const MemoryFractions& in, MemoryStrategy strategy, const BudgetData& d) {
  TORCH_CHECK(in.budget_bytes.has_value(), "plan_byte_budget needs memory.budget_bytes");
  const int64_t budget = *in.budget_bytes;
  const int64_t C = d.channels, patch = d.patch_size, T = d.num_tokens;
  const bool w = d.weights;
  int64_t all = 0;
  for (int64_t n : d.task_samples) all += n;
  int64_t need_budget = 0, worst_task = -1, worst_need = 0;
  for (size_t t = 0; t < d.task_samples.size(); ++t) {
    const int64_t classes = d.task_classes.at(t);
    const int64_t need = strategy == MemoryStrategy::Coreset      ? classes * stored_sample_bytes(C, patch, T, w, T)
                         : strategy == MemoryStrategy::CoreTokens ? d.task_samples[t] * stored_sample_bytes(C, patch, 1, w, T)
                                                                  : classes * stored_sample_bytes(C, patch, 1, w, T);
    // share >= floor(budget · N_t / N_all) whatever earlier tasks used, so this suffices.
    const int64_t min_budget = static_cast<int64_t>(std::ceil(double(need) * double(all) / double(d.task_samples[t])));
    if (min_budget > need_budget) need_budget = min_budget, worst_task = int64_t(t), worst_need = need;
  }
  if (worst_task >= 0 && task_byte_share(budget, 0, d.task_samples[size_t(worst_task)], all) < worst_need) {
    const char* what = strategy == MemoryStrategy::Coreset      ? "one whole sample per class"
                       : strategy == MemoryStrategy::CoreTokens ? "one token of every sample"
                                                                : "one token of one sample per class";
    throw_input("memory.budget_bytes = {} is impossible: task {} would get {} bytes but {} needs {} bytes; accepted: memory.budget_bytes >= {}",
                budget, worst_task, task_byte_share(budget, 0, d.task_samples[size_t(worst_task)], all), what, worst_need, need_budget);
  }
  double k0 = 1.0;
  if (strategy == MemoryStrategy::CoreTokens) {
    const int64_t share = task_byte_share(budget, 0, d.task_samples[0], all);
    const int64_t n0 = d.task_samples[0];
    const int64_t per_token = stored_sample_bytes(C, patch, 1, w, T) - stored_sample_bytes(C, patch, 0, w, T);
    k0 = double(std::clamp<int64_t>((share - n0 * stored_sample_bytes(C, patch, 0, w, T)) / (n0 * per_token), 1, T)) / double(T);
  } else if (strategy == MemoryStrategy::CoreTokenset) {
    const double r0 = double(budget) / (double(all) * double(stored_sample_bytes(C, patch, T, w, T)));
    k0 = std::clamp(std::sqrt(r0), 1.0 / double(T), 1.0);
  }
  MemoryFractions f = in;
  f.token_fraction = k0;
  f.sample_fraction = std::min(1.0, double(budget) / (double(all) * double(stored_sample_bytes(C, patch, T, w, T))) / k0);
  f.retention = f.sample_fraction * f.token_fraction;
  return f;
}

}  // namespace cts
