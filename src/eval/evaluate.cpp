// Feature extraction and per-task class-IL / task-IL accuracy.
#include "cts/eval/evaluate.hpp"

#include <torch/torch.h>

namespace cts {

torch::Tensor extract_features(VisionTransformer& model, const Dataset& dataset, const torch::Tensor& indices, int64_t batch_size) {
  EvalModeGuard eval(model, /*grad=*/false);
  std::vector<torch::Tensor> out;
  const int64_t n = indices.size(0);
  for (int64_t i = 0; i < n; i += batch_size) {
    auto idx = indices.narrow(0, i, std::min(batch_size, n - i));
    auto x = model->normalize(dataset.images(idx));
    out.push_back(model->pre_logits(model->forward_features(x)).to(torch::kCPU, torch::kFloat32));
  }
  if (out.empty()) return torch::zeros({0, model->config().embed_dim});
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

std::vector<TaskAccuracy> evaluate_tasks(VisionTransformer& model, const Dataset& test, const TaskSplit& split, int64_t trained_tasks,
                                         const torch::Tensor& head_init_rows, int64_t batch_size) {
  EvalModeGuard eval(model, /*grad=*/false);
  auto features = [&](const torch::Tensor& images) { return model->pre_logits(model->forward_features(model->normalize(images))); };
  return evaluate_tasks(features, model->head->weight, model->head->bias, test, split, trained_tasks, head_init_rows, batch_size);
}

std::vector<TaskAccuracy> evaluate_tasks(const FeatureFn& features, const torch::Tensor& head_weight, const torch::Tensor& head_bias,
                                         const Dataset& test, const TaskSplit& split, int64_t trained_tasks, const torch::Tensor& head_init_rows,
                                         int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const int64_t c = split.classes_per_task;
  const int64_t seen = trained_tasks * c;
  auto W = head_weight.detach().to(torch::kCPU, torch::kFloat32);
  auto bias = head_bias.detach().to(torch::kCPU, torch::kFloat32);
  std::vector<TaskAccuracy> result;
  for (int64_t j = 0; j < split.num_tasks(); ++j) {
    TaskAccuracy acc;
    auto idx = split.task_indices(test, j);
    acc.samples = idx.size(0);
    if (acc.samples == 0) {
      result.push_back(acc);
      continue;
    }
    std::vector<torch::Tensor> parts;
    for (int64_t i = 0; i < acc.samples; i += batch_size) {
      auto batch = idx.narrow(0, i, std::min(batch_size, acc.samples - i));
      parts.push_back(features(test.images(batch)).to(torch::kCPU, torch::kFloat32));
    }
    auto feats = torch::cat(parts);                                          // [N, D]
    auto y = split.map_labels(test.labels().index_select(0, idx));          // [N] incremental indices
    // Task-IL: the task's own rows (trained rows if seen, else their init rows with zero bias).
    torch::Tensor Wt, bt;
    if (j < trained_tasks) {
      Wt = W.narrow(0, j * c, c);
      bt = bias.narrow(0, j * c, c);
    } else {
      Wt = head_init_rows.narrow(0, j * c, c).to(torch::kFloat32);
      bt = torch::zeros({c});
    }
    auto task_pred = torch::matmul(feats, Wt.t()).add(bt).argmax(1) + j * c;
    acc.task_il = task_pred.eq(y).to(torch::kFloat64).mean().item<double>();
    if (j < trained_tasks) {
      auto logits = torch::matmul(feats, W.narrow(0, 0, seen).t()) + bias.narrow(0, 0, seen);
      acc.class_il = logits.argmax(1).eq(y).to(torch::kFloat64).mean().item<double>();
    }
    result.push_back(acc);
  }
  return result;
}

}  // namespace cts
