// Feature extraction and per-task class-IL / task-IL accuracy.
#include "cts/eval/evaluate.hpp"

#include <torch/torch.h>

namespace cts {

torch::Tensor extract_features(VisionTransformer& model, const Dataset& dataset, const torch::Tensor& indices, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  std::vector<torch::Tensor> out;
  const int64_t n = indices.size(0);
  for (int64_t i = 0; i < n; i += batch_size) {
    auto idx = indices.narrow(0, i, std::min(batch_size, n - i));
    auto x = model->normalize(dataset.images(idx));
    out.push_back(model->pre_logits(model->forward_features(x)).to(torch::kCPU, torch::kFloat32));
  }
  model->train(was_training);
  if (out.empty()) return torch::zeros({0, model->config().embed_dim});
  return torch::cat(out);
}

std::vector<TaskAccuracy> evaluate_tasks(VisionTransformer& model, const Dataset& test, const TaskSplit& split, int64_t trained_tasks,
                                         const torch::Tensor& head_init_rows, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const int64_t c = split.classes_per_task;
  const int64_t seen = trained_tasks * c;
  auto W = model->head->weight.detach().to(torch::kCPU, torch::kFloat32);
  auto bias = model->head->bias.detach().to(torch::kCPU, torch::kFloat32);
  std::vector<TaskAccuracy> result;
  for (int64_t j = 0; j < split.num_tasks(); ++j) {
    TaskAccuracy acc;
    auto idx = split.task_indices(test, j);
    acc.samples = idx.size(0);
    if (acc.samples == 0) {
      result.push_back(acc);
      continue;
    }
    auto feats = extract_features(model, test, idx, batch_size);            // [N, D]
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
