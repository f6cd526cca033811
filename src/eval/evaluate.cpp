// Feature extraction and per-task class-IL / task-IL accuracy.
#include "cts/eval/evaluate.hpp"

#include <torch/torch.h>

#include "cts/core/threads.hpp"

namespace cts {

torch::Tensor extract_features(VisionTransformer& model, const Dataset& dataset, const torch::Tensor& indices, int64_t batch_size) {
  EvalModeGuard eval(model, /*grad=*/false);
  const int64_t n = indices.size(0), batches = (n + batch_size - 1) / batch_size;
  if (n == 0) return torch::zeros({0, model->config().embed_dim});
  std::vector<torch::Tensor> out(static_cast<size_t>(batches));
  parallel_jobs(batches, [&](int64_t k) {  // one thread per batch: the same features on any number of threads
    torch::NoGradGuard no_grad;
    auto idx = indices.narrow(0, k * batch_size, std::min(batch_size, n - k * batch_size));
    out[size_t(k)] = model->pre_logits(model->forward_features(model->normalize(dataset.images(idx)))).to(torch::kCPU, torch::kFloat32);
  });
  return torch::cat(out);
}

torch::Tensor extract_replay_features(VisionTransformer& model, const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) {
  EvalModeGuard eval(model, /*grad=*/false);
  const bool drop = fill == FillMode::Drop;
  const int64_t n = buffer.size(), batches = (n + batch_size - 1) / batch_size;
  if (n == 0) return torch::zeros({0, model->config().embed_dim});
  std::vector<torch::Tensor> out(static_cast<size_t>(batches));
  parallel_jobs(batches, [&](int64_t k) {
    torch::NoGradGuard no_grad;
    const int64_t i = k * batch_size, b = std::min(batch_size, n - i);
    auto batch = buffer.gather(torch::arange(i, i + b, torch::kInt64), !drop, drop);
    TokenKeep keep;
    keep.positions = batch.positions;
    keep.fill = fill;
    keep.rescale = rescale;
    torch::Tensor tokens = drop ? model->forward_features_patches(model->normalize_patches(batch.patches), batch.positions, {&keep, nullptr})
                                : model->forward_features(model->normalize(batch.images), {&keep, nullptr});
    out[size_t(k)] = model->pre_logits(tokens).to(torch::kCPU, torch::kFloat32);
  });
  return torch::cat(out);
}

std::vector<MetricSpec> classification_metrics() {
  return {{"accuracy", "class-IL accuracy", "", "task_il_accuracy", true}, {"task_il_accuracy", "task-IL accuracy", "task_il", "", true}};
}

std::vector<TaskScores> classification_scores(const std::vector<TaskAccuracy>& accuracies) {
  std::vector<TaskScores> out;
  for (const auto& a : accuracies) out.push_back({{"accuracy", a.class_il}, {"task_il_accuracy", a.task_il}});
  return out;
}

std::vector<int64_t> tasks_to_evaluate(int64_t tasks_trained, int64_t num_tasks) {
  std::vector<int64_t> tasks;
  if (tasks_trained == 0) {  // b_j of FWT, j >= 1
    for (int64_t j = 1; j < num_tasks; ++j) tasks.push_back(j);
    return tasks;
  }
  for (int64_t j = 0; j <= tasks_trained && j < num_tasks; ++j) tasks.push_back(j);
  return tasks;
}

std::vector<TaskAccuracy> evaluate_tasks(VisionTransformer& model, const Dataset& test, const TaskSplit& split, int64_t trained_tasks,
                                         const torch::Tensor& head_init_rows, int64_t batch_size, const std::vector<int64_t>& tasks) {
  EvalModeGuard eval(model, /*grad=*/false);
  auto features = [&](const torch::Tensor& images) { return model->forward_cls(model->normalize(images)); };
  return evaluate_tasks(features, model->head->weight, model->head->bias, test, split, trained_tasks, head_init_rows, batch_size, tasks);
}

std::vector<TaskAccuracy> evaluate_tasks(const FeatureFn& features, const torch::Tensor& head_weight, const torch::Tensor& head_bias,
                                         const Dataset& test, const TaskSplit& split, int64_t trained_tasks, const torch::Tensor& head_init_rows,
                                         int64_t batch_size, const std::vector<int64_t>& tasks) {
  torch::NoGradGuard no_grad;
  const int64_t c = split.classes_per_task;
  const int64_t seen = trained_tasks * c;
  std::vector<TaskAccuracy> result(size_t(split.num_tasks()));
  // The listed tasks' test images, task after task.
  std::vector<torch::Tensor> parts;
  std::vector<int64_t> starts;
  int64_t total = 0, last = -1;
  for (int64_t j : tasks) {
    TORCH_CHECK(j >= 0 && j < split.num_tasks() && j > last, "evaluate_tasks: tasks must be ascending task ids, got ", j);
    last = j;
    auto idx = split.task_indices(test, j);
    result[size_t(j)].samples = idx.size(0);
    parts.push_back(idx);
    starts.push_back(total);
    total += idx.size(0);
  }
  if (total == 0) return result;
  const auto all = torch::cat(parts);
  // The feature batches as parallel jobs (one thread each: the same features on any number of threads).
  const int64_t batches = (total + batch_size - 1) / batch_size;
  std::vector<torch::Tensor> feats(static_cast<size_t>(batches));
  parallel_jobs(batches, [&](int64_t k) {
    c10::InferenceMode inference;  // per thread
    const int64_t i = k * batch_size;
    feats[size_t(k)] = features(test.images(all.narrow(0, i, std::min(batch_size, total - i)))).to(torch::kCPU, torch::kFloat32);
  });
  const auto F = torch::cat(feats);  // [M, D]
  // The head as evaluated: trained rows, then the init rows (bias 0) of the tasks to come.
  const int64_t columns = (last + 1) * c;
  auto W = head_weight.detach().to(torch::kCPU, torch::kFloat32).narrow(0, 0, std::min(seen, columns));
  auto b = head_bias.detach().to(torch::kCPU, torch::kFloat32).narrow(0, 0, std::min(seen, columns));
  if (columns > seen) {
    W = torch::cat({W, head_init_rows.narrow(0, seen, columns - seen).to(torch::kFloat32)});
    b = torch::cat({b, torch::zeros({columns - seen})});
  }
  const auto logits = torch::addmm(b, F, W.t());  // [M, columns]
  const auto y_all = split.map_labels(test.labels().index_select(0, all));  // incremental indices
  for (size_t k = 0; k < tasks.size(); ++k) {
    const int64_t j = tasks[k], n = result[size_t(j)].samples;
    if (n == 0) continue;
    auto z = logits.narrow(0, starts[k], n);
    auto y = y_all.narrow(0, starts[k], n);
    auto task_pred = z.narrow(1, j * c, c).argmax(1) + j * c;
    result[size_t(j)].task_il = task_pred.eq(y).to(torch::kFloat64).mean().item<double>();
    if (j < trained_tasks) result[size_t(j)].class_il = z.narrow(1, 0, seen).argmax(1).eq(y).to(torch::kFloat64).mean().item<double>();
  }
  return result;
}

}  // namespace cts
