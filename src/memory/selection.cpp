// Two-stage selection: coreset per class, then attribution top-k tokens per kept sample.
#include "cts/memory/selection.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cmath>

#include "cts/core/error.hpp"
#include "cts/data/patches.hpp"

namespace cts {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int64_t class_budget(double s, int64_t n) {
  if (n <= 0) return 0;
  const double raw = s * double(n);
  // Guard against 0.1 * 6000 = 600.0000000001 rounding up to 601.
  const int64_t b = static_cast<int64_t>(std::ceil(raw - 1e-9 * std::max(1.0, raw)));
  return std::clamp<int64_t>(b, 1, n);
}

std::pair<torch::Tensor, torch::Tensor> last_layer_gradients(VisionTransformer& model, const Dataset& dataset, const torch::Tensor& indices,
                                                             const torch::Tensor& targets, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  std::vector<torch::Tensor> grads, feats;
  const int64_t n = indices.size(0);
  for (int64_t i = 0; i < n; i += batch_size) {
    const int64_t b = std::min(batch_size, n - i);
    auto x = model->normalize(dataset.images(indices.narrow(0, i, b)));
    auto f = model->pre_logits(model->forward_features(x));
    auto p = torch::softmax(model->head(f), 1).to(torch::kCPU, torch::kFloat32);
    auto onehot = torch::one_hot(targets.narrow(0, i, b).to(torch::kInt64), p.size(1)).to(torch::kFloat32);
    grads.push_back(p - onehot);
    feats.push_back(f.to(torch::kCPU, torch::kFloat32));
  }
  model->train(was_training);
  return {torch::cat(grads), torch::cat(feats)};
}

SelectionReport select_task_memory(VisionTransformer& model, const Dataset& train, const TaskSplit& split, int64_t task,
                                   SampleSelector& coreset, TokenSelector& token_selector, const SelectionSettings& st,
                                   TokenBuffer& buffer) {
  SelectionReport report;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t T = model->config().num_patches();
  const auto task_idx = split.task_indices(train, task);                       // dataset indices
  const auto labels = train.labels().index_select(0, task_idx);               // dataset class ids
  const auto targets = split.map_labels(labels);                              // head indices

  torch::Tensor grads, feats;
  const bool need_model_pass = st.fractions.sample_fraction < 1.0 && (coreset.needs_gradients() || coreset.needs_features());
  if (need_model_pass) std::tie(grads, feats) = last_layer_gradients(model, train, task_idx, targets, st.feature_batch_size);

  std::vector<torch::Tensor> kept_rows, kept_weights;
  for (int64_t c : split.task_classes.at(static_cast<size_t>(task))) {
    auto rows = (labels == c).nonzero().flatten();  // rows of task_idx
    const int64_t n = rows.size(0);
    const int64_t budget = class_budget(st.fractions.sample_fraction, n);
    report.per_class.push_back(budget);
    if (budget == 0) continue;
    if (budget == n) {
      kept_rows.push_back(rows);
      kept_weights.push_back(torch::ones({n}));
      continue;
    }
    CoresetInput in;
    in.budget = budget;
    in.num_samples = n;
    in.seed = st.seed;
    in.task = task;
    in.class_id = c;
    if (grads.defined()) in.gradients = grads.index_select(0, rows);
    if (feats.defined()) in.features = feats.index_select(0, rows);
    auto r = coreset.select(in);
    if (r.indices.size(0) != budget) throw_run("coreset method {} returned {} samples for a budget of {}", coreset.name(), r.indices.size(0), budget);
    kept_rows.push_back(rows.index_select(0, r.indices));
    kept_weights.push_back(r.weights.defined() ? r.weights.to(torch::kFloat32) : torch::ones({budget}));
  }
  report.coreset_seconds = seconds_since(t0);
  if (kept_rows.empty()) return report;
  auto rows = torch::cat(kept_rows);
  auto weights = torch::cat(kept_weights);

  const auto t1 = std::chrono::steady_clock::now();
  const int64_t k = st.fractions.token_fraction >= 1.0 ? T : static_cast<int64_t>(std::llround(st.fractions.token_fraction * double(T)));
  if (k < 1) throw_input("memory.token_fraction = {} keeps 0 of the {} tokens of an image; accepted: >= {:.4g}", st.fractions.token_fraction, T, 0.5 / double(T));
  const int64_t n = rows.size(0);
  for (int64_t i = 0; i < n; i += st.batch_size) {
    const int64_t b = std::min(st.batch_size, n - i);
    auto r = rows.narrow(0, i, b);
    auto ds_idx = task_idx.index_select(0, r);
    auto images = train.images(ds_idx);
    torch::Tensor positions;
    if (k == T) {
      positions = torch::arange(T, torch::kInt64).unsqueeze(0).expand({b, T}).contiguous();
    } else {
      torch::Tensor tgt = targets.index_select(0, r);
      if (st.explain_predicted) {
        torch::NoGradGuard no_grad;
        const bool was_training = model->is_training();
        model->eval();
        tgt = model->forward(model->normalize(images)).argmax(1).to(torch::kCPU);
        model->train(was_training);
      }
      auto rel = token_selector.relevance(model, images, tgt, ds_idx);
      positions = top_tokens(rel, k);
    }
    buffer.add(images, labels.index_select(0, r), task, positions, st.store_weights ? weights.narrow(0, i, b) : torch::Tensor());
    report.samples += b;
    report.tokens += b * k;
  }
  report.attribution_seconds = seconds_since(t1);
  report.bytes = buffer.bytes();
  return report;
}

}  // namespace cts
