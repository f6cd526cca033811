// Memory selection of a finished task: two-stage (coreset per class, then attribution
// top-k tokens per kept sample) by fractions or by a byte budget with the split search;
// joint selection is in joint_selection.cpp.
#include "cts/memory/selection.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <limits>

#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/threads.hpp"
#include "cts/data/patches.hpp"
#include "cts/memory/budget.hpp"
#include "cts/memory/joint_selection.hpp"

namespace cts {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The task's samples, grouped by class.
struct TaskRows {
  torch::Tensor task_idx;  // dataset indices of the task (ascending)
  torch::Tensor labels;    // dataset class ids [N]
  std::vector<int64_t> classes;          // dataset class ids, task order
  std::vector<torch::Tensor> class_rows;  // rows (of task_idx) of each class, ascending
  torch::Tensor grads, feats;            // last-layer gradients / pre-logits features, when computed
  bool has_payload = false;              // the dataset's samples carry payloads (stored with them)
};

TaskRows task_rows(const Dataset& train, const TaskSplit& split, int64_t task) {
  TaskRows tr;
  tr.task_idx = split.task_indices(train, task);
  tr.labels = train.labels().index_select(0, tr.task_idx);
  tr.classes = split.task_classes.at(static_cast<size_t>(task));
  for (int64_t c : tr.classes) tr.class_rows.push_back((tr.labels == c).nonzero().flatten());
  tr.has_payload = train.has_payload();
  return tr;
}

std::vector<int64_t> sizes_of(const std::vector<torch::Tensor>& rows) {
  std::vector<int64_t> s;
  for (const auto& r : rows) s.push_back(r.size(0));
  return s;
}

// Coreset per class with the given budgets: kept rows (class after class) and weights.
// `priority_order`: each class's kept rows in the method's own order (rank), not ascending: a
// fixed-size memory keeps the first of them when it shrinks the class.
std::pair<torch::Tensor, torch::Tensor> run_coreset(const TaskRows& tr, const std::vector<torch::Tensor>& class_rows,
                                                    const std::vector<int64_t>& budgets, SampleSelector& coreset, int64_t task,
                                                    uint64_t seed, bool priority_order = false) {
  std::vector<torch::Tensor> kept_rows, kept_weights;
  for (size_t ci = 0; ci < class_rows.size(); ++ci) {
    const auto& rows = class_rows[ci];
    const int64_t n = rows.size(0), budget = budgets[ci];
    if (budget == 0) continue;
    if (budget == n) {
      kept_rows.push_back(rows);
      kept_weights.push_back(torch::ones({n}));
      continue;
    }
    CoresetInput in;
    in.budget = budget;
    in.num_samples = n;
    in.seed = seed;
    in.task = task;
    in.class_id = tr.classes[ci];
    if (tr.grads.defined()) in.gradients = tr.grads.index_select(0, rows);
    if (tr.feats.defined()) in.features = tr.feats.index_select(0, rows);
    auto r = coreset.select(in);
    if (r.indices.size(0) != budget) throw_run("coreset method {} returned {} samples for a budget of {}", coreset.name(), r.indices.size(0), budget);
    if (r.weights.defined() && r.weights.numel() > 0 && r.weights.min().item<double>() < 0) throw_run("coreset method {} returned a negative weight", coreset.name());
    auto kept = rows.index_select(0, r.indices);
    auto w = r.weights.defined() ? r.weights.to(torch::kFloat32) : torch::ones({budget});
    if (priority_order) {
      if (!r.rank.defined() || r.rank.numel() != budget) throw_run("coreset method {} gave no order of its samples", coreset.name());
      const auto by_rank = torch::argsort(r.rank);
      kept = kept.index_select(0, by_rank);
      w = w.index_select(0, by_rank);
    }
    kept_rows.push_back(kept);
    kept_weights.push_back(w);
  }
  if (kept_rows.empty()) return {torch::zeros({0}, torch::kInt64), torch::zeros({0})};
  return {torch::cat(kept_rows), torch::cat(kept_weights)};
}

// Attribution top-k tokens of each kept row, into the buffer. The batches run as parallel
// jobs (core/threads.hpp), a group of one batch per thread at a time (bounding the images
// held), and are added to the buffer in order: the buffer is the same on any number of threads.
void store_rows(MemoryModel& model, const Dataset& train, const TaskRows& tr, const torch::Tensor& rows, const torch::Tensor& weights,
                int64_t k, TokenSelector& token_selector, const SelectionSettings& st, int64_t task, TokenBuffer& buffer) {
  const int64_t T = model.num_tokens();
  const int64_t n = rows.size(0);
  const int64_t batches = (n + st.batch_size - 1) / st.batch_size;
  const int64_t group = std::max<int64_t>(1, at::get_num_threads());
  SelectionModeScope eval(model);
  for (int64_t g0 = 0; g0 < batches; g0 += group) {
    const int64_t count = std::min(group, batches - g0);
    std::vector<torch::Tensor> images(static_cast<size_t>(count)), positions(static_cast<size_t>(count));
    parallel_jobs(count, [&](int64_t j) {
      const int64_t i = (g0 + j) * st.batch_size, b = std::min(st.batch_size, n - i);
      auto ds_idx = tr.task_idx.index_select(0, rows.narrow(0, i, b));
      images[size_t(j)] = train.images(ds_idx);
      if (k == T) {
        positions[size_t(j)] = torch::arange(T, torch::kInt64).unsqueeze(0).expand({b, T}).contiguous();
      } else {
        auto rel = sample_relevance(model, token_selector, train, ds_idx, images[size_t(j)], st.target);
        positions[size_t(j)] = top_tokens(rel, k, token_tie_keys(ds_idx, T, st.seed));  // seeded ties: constant scores keep random tokens
      }
    });
    for (int64_t j = 0; j < count; ++j) {
      const int64_t i = (g0 + j) * st.batch_size, b = std::min(st.batch_size, n - i);
      auto r = rows.narrow(0, i, b);
      buffer.add(images[size_t(j)], tr.labels.index_select(0, r), task, positions[size_t(j)], st.store_weights ? weights.narrow(0, i, b) : torch::Tensor(),
                 tr.has_payload ? train.payloads(tr.task_idx.index_select(0, r)) : Payload());
    }
  }
}

// Seeded held-out slice of each class: (kept-for-selection rows, held-out rows) per class.
std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> holdout_split(const TaskRows& tr, double fraction, uint64_t seed,
                                                                               int64_t task) {
  std::vector<torch::Tensor> rest, held;
  for (size_t ci = 0; ci < tr.class_rows.size(); ++ci) {
    const auto& rows = tr.class_rows[ci];
    const int64_t n = rows.size(0);
    const int64_t h = n < 2 ? 0 : std::clamp<int64_t>(static_cast<int64_t>(std::ceil(fraction * double(n) - 1e-9)), 1, n - 1);
    auto gen = make_generator(seed, "budget_holdout", {task, tr.classes[ci]});
    auto perm = torch::randperm(n, gen, torch::kInt64);
    held.push_back(std::get<0>(torch::sort(rows.index_select(0, perm.narrow(0, 0, h)))));
    rest.push_back(std::get<0>(torch::sort(rows.index_select(0, perm.narrow(0, h, n - h)))));
  }
  return {rest, held};
}

// Local class index (position in the task) of each row.
torch::Tensor local_labels(const std::vector<torch::Tensor>& class_rows, const torch::Tensor& rows_in_order) {
  // rows_in_order are rows of task_idx; map row -> class position.
  int64_t max_row = 0;
  for (const auto& r : class_rows)
    if (r.numel()) max_row = std::max(max_row, r.max().item<int64_t>());
  auto lut = torch::full({max_row + 1}, -1, torch::kInt64);
  for (size_t ci = 0; ci < class_rows.size(); ++ci)
    if (class_rows[ci].numel()) lut.index_fill_(0, class_rows[ci], int64_t(ci));
  return lut.index_select(0, rows_in_order);
}

}  // namespace

int64_t class_budget(double s, int64_t n) {
  if (n <= 0) return 0;
  const double raw = s * double(n);
  // Guard against 0.1 * 6000 = 600.0000000001 rounding up to 601.
  const int64_t b = static_cast<int64_t>(std::ceil(raw - 1e-9 * std::max(1.0, raw)));
  return std::clamp<int64_t>(b, 1, n);
}

SelectionSettings selection_settings(const MemoryConfig& m, const MemoryFractions& fractions, uint64_t seed, bool rescale_tokens) {
  SelectionSettings st;
  st.fractions = fractions;
  st.strategy = m.strategy;
  st.joint = fractions.joint;
  st.holdout_fraction = m.budget_holdout;
  st.fill = m.fill;
  st.rescale_tokens = rescale_tokens;
  st.target = m.target;
  st.store_weights = m.use_weights;
  st.batch_size = m.selection_batch_size;
  st.feature_batch_size = m.feature_batch_size;
  st.seed = seed;
  return st;
}

torch::Tensor sample_relevance(MemoryModel& model, TokenSelector& tokens, const Dataset& data, const torch::Tensor& ids,
                               const torch::Tensor& images_u8, ExplainTarget target) {
  SampleBatch batch;
  batch.images = images_u8;
  batch.ids = ids;
  batch.labels = data.labels().index_select(0, ids);
  batch.payload = data.payloads(ids);
  auto explained = model.explained(batch, target);
  return tokens.relevance(*explained, images_u8, ids).to(torch::kCPU, torch::kFloat32);
}

SelectionReport select_task_memory(MemoryModel& model, const Dataset& train, const TaskSplit& split, int64_t task, SampleSelector& coreset,
                                   TokenSelector& token_selector, const SelectionSettings& st, TokenBuffer& buffer) {
  const int64_t T = model.num_tokens();
  const int64_t bytes_before = buffer.bytes();
  const int64_t samples_before = buffer.size(), tokens_before = buffer.tokens();
  const int64_t C = buffer.channels(), p = buffer.patch_size();
  auto cost = [&](int64_t t) { return stored_sample_bytes(C, p, t, st.store_weights, T); };

  if ((st.joint || st.budget_bytes > 0 || st.fractions.fixed_bytes) && train.has_payload()) {
    throw_input("memory.{}: the samples of {} carry a payload (e.g. text) whose bytes the byte-budget rules do not count; use "
                "memory.retention, memory.sample_fraction / token_fraction or memory.samples with memory.selection: two-stage",
                st.joint ? "selection = joint" : "budget_bytes", train.name());
  }
  if (st.joint) {
    int64_t budget = st.budget_bytes;
    if (budget <= 0) {  // the bytes the two-stage memory at (s, k) would take
      const auto tr = task_rows(train, split, task);
      const int64_t k = std::max<int64_t>(1, std::llround(st.fractions.token_fraction * double(T)));
      for (const auto& rows : tr.class_rows) budget += class_budget(st.fractions.sample_fraction, rows.size(0)) * cost(k);
    }
    return select_task_memory_joint(model, train, split, task, token_selector, st, budget, buffer);
  }

  if (st.fractions.fixed_samples || st.fractions.fixed_bytes) {
    // A fixed-size memory: every class seen keeps q samples; old classes shrink to their first q.
    SelectionReport report;
    int64_t seen = 0;
    for (int64_t u = 0; u <= task; ++u) seen += int64_t(split.task_classes.at(size_t(u)).size());
    const int64_t k = st.fractions.token_fraction >= 1.0 ? T : std::max<int64_t>(1, std::llround(st.fractions.token_fraction * double(T)));
    const int64_t q = fixed_class_quota(st.fractions, seen, cost(k));
    if (q < 1) {
      throw_input("memory.{} holds less than one sample of {} tokens ({} bytes) per class for the {} classes seen after task {}",
                  st.fractions.fixed_samples ? fmt::format("samples = {}", *st.fractions.fixed_samples)
                                             : fmt::format("budget_bytes = {}", *st.fractions.fixed_bytes),
                  k, cost(k), seen, task);
    }
    report.removed = buffer.keep_first_per_class(q);
    TaskRows tr = task_rows(train, split, task);
    std::vector<int64_t> budgets;
    bool any_cut = false;
    for (const auto& rows : tr.class_rows) {
      budgets.push_back(std::min<int64_t>(q, rows.size(0)));
      any_cut = any_cut || budgets.back() < rows.size(0);
    }
    const auto tc = std::chrono::steady_clock::now();
    if (any_cut && (coreset.needs_gradients() || coreset.needs_features())) {
      auto rows = model.coreset_rows(train, tr.task_idx, st.feature_batch_size);
      tr.grads = rows.gradients, tr.feats = rows.features;
    }
    auto [rows, weights] = run_coreset(tr, tr.class_rows, budgets, coreset, task, st.seed, /*priority_order=*/true);
    report.coreset_seconds = seconds_since(tc);
    const auto t1 = std::chrono::steady_clock::now();
    const int64_t samples_kept = buffer.size(), tokens_kept_old = buffer.tokens(), bytes_kept = buffer.bytes();
    store_rows(model, train, tr, rows, weights, k, token_selector, st, task, buffer);
    report.attribution_seconds = seconds_since(t1);
    report.per_class = budgets;
    report.tokens_per_sample = k;
    report.samples = buffer.size() - samples_kept;
    report.tokens = buffer.tokens() - tokens_kept_old;
    report.bytes = buffer.bytes();
    report.added_bytes = buffer.bytes() - bytes_kept;
    if (st.fractions.fixed_samples && buffer.size() > *st.fractions.fixed_samples) {
      throw_run("the fixed memory holds {} samples, over its {} (a bug in the quota rules)", buffer.size(), *st.fractions.fixed_samples);
    }
    if (st.fractions.fixed_bytes && buffer.bytes() > *st.fractions.fixed_bytes) {
      throw_run("the fixed memory takes {} bytes, over its {} (a bug in the quota rules)", buffer.bytes(), *st.fractions.fixed_bytes);
    }
    return report;
  }

  SelectionReport report;
  report.budget_bytes = st.budget_bytes;
  TaskRows tr = task_rows(train, split, task);
  const auto sizes = sizes_of(tr.class_rows);
  int64_t nonempty = 0, total = 0;
  for (int64_t s : sizes) nonempty += s > 0, total += s;

  // Budgets per class and tokens per sample.
  std::vector<int64_t> budgets;
  int64_t k = 0;
  const bool by_bytes = st.budget_bytes > 0;
  if (!by_bytes) {
    for (int64_t s : sizes) budgets.push_back(class_budget(st.fractions.sample_fraction, s));
    k = st.fractions.token_fraction >= 1.0 ? T : static_cast<int64_t>(std::llround(st.fractions.token_fraction * double(T)));
    if (k < 1) throw_input("memory.token_fraction = {} keeps 0 of the {} tokens of an image; accepted: >= {:.4g}", st.fractions.token_fraction, T, 0.5 / double(T));
  } else if (st.strategy == MemoryStrategy::Coreset) {
    k = T;
    const int64_t n = std::min(total, st.budget_bytes / cost(T));
    if (n < nonempty) throw_input("memory.budget_bytes: task {} has {} bytes but one whole sample per class needs {} x {} bytes", task, st.budget_bytes, nonempty, cost(T));
    budgets = allocate_proportional(n, sizes, true);
  } else if (st.strategy == MemoryStrategy::CoreTokens) {
    budgets = sizes;
    k = st.budget_bytes >= total * cost(T) ? T  // whole samples store no positions
                                           : std::min<int64_t>(T - 1, (st.budget_bytes - total * cost(0)) / std::max<int64_t>(1, total * (cost(1) - cost(0))));
    if (k < 1) throw_input("memory.budget_bytes: task {} has {} bytes but one token of each of its {} samples needs {} bytes", task, st.budget_bytes, total, total * cost(1));
  } else {  // core-tokenset: the split search
    const auto ts = std::chrono::steady_clock::now();
    const auto grid = token_grid(T);
    std::vector<int64_t> feasible;
    for (int64_t t : grid)
      if (std::min(total, st.budget_bytes / cost(t)) >= nonempty) feasible.push_back(t);
    if (feasible.empty()) throw_input("memory.budget_bytes: task {} has {} bytes but one token of one sample per class needs {} x {} bytes", task, st.budget_bytes, nonempty, cost(1));
    const bool needs_model = coreset.needs_gradients() || coreset.needs_features();
    if (needs_model) {
      auto rows = model.coreset_rows(train, tr.task_idx, st.feature_batch_size);
      tr.grads = rows.gradients, tr.feats = rows.features;
    }
    auto [rest, held] = holdout_split(tr, st.holdout_fraction, st.seed, task);
    const auto rest_sizes = sizes_of(rest);
    int64_t rest_total = 0, held_total = 0;
    for (int64_t s : rest_sizes) rest_total += s;
    for (const auto& h : held) held_total += h.size(0);
    k = feasible.front();
    if (feasible.size() > 1 && held_total > 0) {
      auto held_rows = torch::cat(held);
      auto held_feats = model.sample_features(train, tr.task_idx.index_select(0, held_rows), st.feature_batch_size);
      auto held_labels = local_labels(tr.class_rows, held_rows);
      const int64_t trial_budget = static_cast<int64_t>(std::floor(double(st.budget_bytes) * double(rest_total) / double(total)));
      double best = std::numeric_limits<double>::infinity();
      for (int64_t t : grid) {
        SplitTrial trial;
        trial.tokens = t;
        const int64_t n = std::min(rest_total, trial_budget / cost(t));
        if (n < nonempty) continue;
        const auto b = allocate_proportional(n, rest_sizes, true);
        auto [rows, weights] = run_coreset(tr, rest, b, coreset, task, st.seed);
        TokenBuffer candidate(buffer.channels(), buffer.image_size(), buffer.patch_size());
        store_rows(model, train, tr, rows, weights, t, token_selector, st, task, candidate);
        const double rescale = st.rescale_tokens && t < T ? double(T) / double(t) : 1.0;
        auto feats = model.replay_features(candidate, st.fill, rescale, st.feature_batch_size);
        trial.samples = candidate.size();
        trial.bytes = candidate.bytes();
        trial.holdout_loss = probe_holdout_loss(feats, local_labels(tr.class_rows, rows), st.store_weights ? weights : torch::Tensor(), held_feats,
                                                held_labels, int64_t(tr.classes.size()));
        report.trials.push_back(trial);
        if (trial.holdout_loss < best) best = trial.holdout_loss, k = t;  // ties keep the larger t (grid is descending)
      }
    }
    const int64_t n = std::min(total, st.budget_bytes / cost(k));
    budgets = allocate_proportional(n, sizes, true);
    report.split_seconds = seconds_since(ts);
  }

  // Stage 1: coreset per class.
  const auto tc = std::chrono::steady_clock::now();
  bool any_cut = false;
  for (size_t ci = 0; ci < sizes.size(); ++ci) any_cut = any_cut || budgets[ci] < sizes[ci];
  if (!tr.grads.defined() && any_cut && (coreset.needs_gradients() || coreset.needs_features())) {
    auto coreset_rows = model.coreset_rows(train, tr.task_idx, st.feature_batch_size);
    tr.grads = coreset_rows.gradients, tr.feats = coreset_rows.features;
  }
  auto [rows, weights] = run_coreset(tr, tr.class_rows, budgets, coreset, task, st.seed);
  report.per_class = budgets;
  report.coreset_seconds = seconds_since(tc);
  report.tokens_per_sample = k;

  // Stage 2: tokens of each kept sample.
  const auto t1 = std::chrono::steady_clock::now();
  store_rows(model, train, tr, rows, weights, k, token_selector, st, task, buffer);
  report.attribution_seconds = seconds_since(t1);
  report.samples = buffer.size() - samples_before;
  report.tokens = buffer.tokens() - tokens_before;
  report.bytes = buffer.bytes();
  report.added_bytes = buffer.bytes() - bytes_before;
  if (by_bytes && report.added_bytes > st.budget_bytes) {
    throw_run("task {} memory takes {} bytes, over its budget of {} (a bug in the budget rules)", task, report.added_bytes, st.budget_bytes);
  }
  return report;
}

}  // namespace cts
