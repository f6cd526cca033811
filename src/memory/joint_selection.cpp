// Joint core tokenset selection (memory.selection = joint), the paper's stated future
// work: one scoring pass over every (sample, token) pair of the finished task.
//
//   g_i      last-layer gradient softmax(z_i) − onehot(y_i) (one forward over the task)
//   u_i      = max(0, <g_i, Σ_{j∈c} g_j>)        gradient-matching gain of sample i in its
//                                                class c (GradMatch's first-step score)
//   w_i      = 1 + u_i / mean_{j∈c} u_j         (1 when all u are 0): every sample has a
//                                                base weight, gradient-informative ones more
//   ρ_it     = max(0, R_it) / Σ_t' max(0, R_it')  relevance share of token t, R from the
//                                                token selector of memory.tokens (uniform
//                                                for an all-zero row)
//   π_it     = w_i · ρ_it                        the pair score
//
// Budget: the task's bytes (memory.budget_bytes share, or what the two-stage memory at
// s × k would take) are split over classes in proportion to class size (largest
// remainder). Within a class, pairs are taken greedily by descending π (ties: lower
// sample row, then lower token): a pair costs C·p² + 2 bytes, plus the sample's own
// 8 (+4 with weights) bytes when it is the sample's first token; a pair that does not fit
// is skipped and cheaper later pairs may still fill the remainder. A sample therefore keeps
// as many tokens as its pairs win, from 0 to T. Weights stored with memory.use_weights are 1.
// memory.coreset is not used.
#include "cts/memory/joint_selection.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "cts/core/error.hpp"
#include "cts/core/threads.hpp"
#include "cts/memory/budget.hpp"

namespace cts {

torch::Tensor relevance_shares(const torch::Tensor& relevance) {
  TORCH_CHECK(relevance.dim() == 2, "relevance must be [N, T], got ", relevance.sizes());
  auto r = relevance.to(torch::kCPU, torch::kFloat64).clamp_min(0.0);
  r = torch::where(torch::isfinite(r), r, torch::zeros_like(r));
  auto sum = r.sum(1, true);
  auto uniform = torch::full_like(r, 1.0 / double(std::max<int64_t>(1, r.size(1))));
  return torch::where(sum > 0, r / sum.clamp_min(1e-300), uniform);
}

torch::Tensor joint_sample_weights(const torch::Tensor& g) {
  TORCH_CHECK(g.dim() == 2, "class gradients must be [N, C], got ", g.sizes());
  auto gd = g.to(torch::kCPU, torch::kFloat64);
  auto u = torch::mv(gd, gd.sum(0)).clamp_min(0.0);  // [N]
  const double mean = u.numel() ? u.mean().item<double>() : 0.0;
  if (!(mean > 0)) return torch::ones({g.size(0)}, torch::kFloat64);
  return 1.0 + u / mean;
}

torch::Tensor joint_top_pairs(const torch::Tensor& sample_weights, const torch::Tensor& share, int64_t budget_bytes, int64_t token_bytes,
                              int64_t sample_bytes) {
  TORCH_CHECK(share.dim() == 2 && sample_weights.dim() == 1 && sample_weights.size(0) == share.size(0), "joint: weights [N] and shares [N, T] needed");
  TORCH_CHECK(token_bytes > 0 && sample_bytes >= 0, "joint: byte costs must be positive");
  const int64_t n = share.size(0), t = share.size(1);
  auto score_t = (sample_weights.to(torch::kFloat64).unsqueeze(1) * share.to(torch::kFloat64)).contiguous();
  const double* score = score_t.data_ptr<double>();
  std::vector<int64_t> order(size_t(n * t));
  std::iota(order.begin(), order.end(), int64_t(0));
  // Pair id = i·T + t, so ties by id are ties by (sample, token).
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  std::vector<std::vector<int64_t>> kept(static_cast<size_t>(n));
  int64_t used = 0;
  for (int64_t id : order) {
    const int64_t i = id / t;
    const int64_t c = token_bytes + (kept[size_t(i)].empty() ? sample_bytes : 0);
    if (used + c > budget_bytes) {
      if (budget_bytes - used < token_bytes) break;  // not even a token of a kept sample fits
      continue;
    }
    used += c;
    kept[size_t(i)].push_back(id % t);
  }
  int64_t kmax = 0;
  for (auto& k : kept) {
    std::sort(k.begin(), k.end());
    kmax = std::max<int64_t>(kmax, int64_t(k.size()));
  }
  auto out = torch::full({n, std::max<int64_t>(kmax, 1)}, -1, torch::kInt64);
  auto acc = out.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (size_t a = 0; a < kept[size_t(i)].size(); ++a) acc[i][int64_t(a)] = kept[size_t(i)][a];
  return out;
}

SelectionReport select_task_memory_joint(MemoryModel& model, const Dataset& train, const TaskSplit& split, int64_t task,
                                         TokenSelector& token_selector, const SelectionSettings& st, int64_t budget_bytes,
                                         TokenBuffer& buffer) {
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  SelectionReport report;
  report.budget_bytes = budget_bytes;
  const int64_t bytes_before = buffer.bytes(), samples_before = buffer.size(), tokens_before = buffer.tokens();
  const auto task_idx = split.task_indices(train, task);
  const auto labels = train.labels().index_select(0, task_idx);
  const int64_t N = task_idx.size(0);

  // One forward for the gradients, then token relevance of every sample.
  const auto t0 = Clock::now();
  auto grads = model.coreset_rows(train, task_idx, st.feature_batch_size).gradients;  // [N, seen]
  report.coreset_seconds = since(t0);
  const auto t1 = Clock::now();
  // Relevance of every sample, the batches as parallel jobs (the same on any number of threads).
  const int64_t batches = (N + st.batch_size - 1) / st.batch_size;
  std::vector<torch::Tensor> rel(static_cast<size_t>(batches));
  {
    SelectionModeScope eval(model);
    parallel_jobs(batches, [&](int64_t k) {
      const int64_t i = k * st.batch_size, b = std::min(st.batch_size, N - i);
      auto ds_idx = task_idx.narrow(0, i, b);
      rel[size_t(k)] = sample_relevance(model, token_selector, train, ds_idx, train.images(ds_idx), st.target);
    });
  }
  const auto shares = relevance_shares(torch::cat(rel));  // [N, T]

  const int64_t C = buffer.channels(), p = buffer.patch_size();
  // A pair costs its patch and position (a sample that ends up with every token stores no
  // positions: it then costs less than planned, never more).
  const int64_t T = model.num_tokens();
  const int64_t token_bytes = stored_sample_bytes(C, p, 1, false, T) - stored_sample_bytes(C, p, 0, false, T);
  const int64_t sample_bytes = stored_sample_bytes(C, p, 0, st.store_weights, T);
  const auto& classes = split.task_classes.at(static_cast<size_t>(task));
  std::vector<torch::Tensor> class_rows;
  std::vector<int64_t> sizes;
  for (int64_t c : classes) {
    class_rows.push_back((labels == c).nonzero().flatten());
    sizes.push_back(class_rows.back().size(0));
  }
  const auto class_bytes = share_proportional(budget_bytes, sizes);
  for (size_t ci = 0; ci < classes.size(); ++ci) {
    const auto& rows = class_rows[ci];
    if (rows.numel() == 0) {
      report.per_class.push_back(0);
      continue;
    }
    auto w = joint_sample_weights(grads.index_select(0, rows));
    auto positions = joint_top_pairs(w, shares.index_select(0, rows), class_bytes[ci], token_bytes, sample_bytes);
    auto kept = (positions.select(1, 0) >= 0).nonzero().flatten();  // rows (of this class) keeping >= 1 token
    report.per_class.push_back(kept.size(0));
    for (int64_t i = 0; i < kept.size(0); i += st.batch_size) {
      const int64_t b = std::min(st.batch_size, kept.size(0) - i);
      auto local = kept.narrow(0, i, b);
      auto r = rows.index_select(0, local);
      auto pos = positions.index_select(0, local);
      const int64_t kmax = (pos >= 0).sum(1).max().item<int64_t>();
      buffer.add(train.images(task_idx.index_select(0, r)), labels.index_select(0, r), task, pos.narrow(1, 0, kmax).contiguous(),
                 st.store_weights ? torch::ones({b}) : torch::Tensor());
    }
  }
  report.attribution_seconds = since(t1);
  report.samples = buffer.size() - samples_before;
  report.tokens = buffer.tokens() - tokens_before;
  report.bytes = buffer.bytes();
  report.added_bytes = buffer.bytes() - bytes_before;
  report.tokens_per_sample = 0;
  if (report.added_bytes > budget_bytes) throw_run("joint selection of task {} took {} bytes, over its budget of {}", task, report.added_bytes, budget_bytes);
  return report;
}

}  // namespace cts
