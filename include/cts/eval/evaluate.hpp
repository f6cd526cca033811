// Evaluation of a class-incremental model on task test sets: class-IL accuracy (argmax
// over every class seen so far) and task-IL accuracy (argmax over the task's own classes).
// Tasks not yet trained are scored task-IL with the head rows they will receive (the
// seeded init rows), which gives the R[j-1][j] entries FWT needs.
#pragma once
#include <torch/types.h>

#include <functional>
#include <vector>

#include "cts/data/dataset.hpp"
#include "cts/data/task_split.hpp"
#include "cts/eval/metrics.hpp"
#include "cts/models/vit.hpp"

namespace cts {

// Pre-logits features [N, D] (float, CPU) of dataset samples, full inputs, eval mode.
torch::Tensor extract_features(VisionTransformer& model, const Dataset& dataset, const torch::Tensor& indices, int64_t batch_size);

struct TaskAccuracy {
  double class_il = NAN;  // NaN for tasks not trained yet
  double task_il = NAN;
  int64_t samples = 0;
};

// The metrics of class-incremental classifiers: accuracy (class-IL, primary; FWT from task-IL)
// and task_il_accuracy (summary under "task_il").
std::vector<MetricSpec> classification_metrics();
// Their per-task scores from evaluate_tasks (keys accuracy, task_il_accuracy).
std::vector<TaskScores> classification_scores(const std::vector<TaskAccuracy>& accuracies);

// Features [B, D] (float) of uint8 images [B, C, H, W], full inputs, in eval mode.
using FeatureFn = std::function<torch::Tensor(const torch::Tensor& images_u8)>;

// Accuracies on every task's test set of a class-incremental linear head (weight [seen, D],
// bias [seen]) on `features`. `trained_tasks`: how many tasks the model has seen (0 = random
// init). `head_init_rows` [total classes, D] supplies rows of unseen classes.
std::vector<TaskAccuracy> evaluate_tasks(const FeatureFn& features, const torch::Tensor& head_weight, const torch::Tensor& head_bias,
                                         const Dataset& test, const TaskSplit& split, int64_t trained_tasks, const torch::Tensor& head_init_rows,
                                         int64_t batch_size);
// The same for a ViT (pre-logits features, its head).
std::vector<TaskAccuracy> evaluate_tasks(VisionTransformer& model, const Dataset& test, const TaskSplit& split, int64_t trained_tasks,
                                         const torch::Tensor& head_init_rows, int64_t batch_size);

}  // namespace cts
