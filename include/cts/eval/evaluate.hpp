// Evaluation of a class-incremental model on task test sets: class-IL accuracy (argmax
// over every class seen so far) and task-IL accuracy (argmax over the task's own classes).
// Tasks not yet trained are scored task-IL with the head rows they will receive (the
// seeded init rows), which gives the R[j-1][j] entries FWT needs.
#pragma once
#include <torch/types.h>

#include <vector>

#include "cts/data/dataset.hpp"
#include "cts/data/task_split.hpp"
#include "cts/models/vit.hpp"

namespace cts {

// Pre-logits features [N, D] (float, CPU) of dataset samples, full inputs, eval mode.
torch::Tensor extract_features(VisionTransformer& model, const Dataset& dataset, const torch::Tensor& indices, int64_t batch_size);

struct TaskAccuracy {
  double class_il = NAN;  // NaN for tasks not trained yet
  double task_il = NAN;
  int64_t samples = 0;
};

// Accuracies on every task's test set. `trained_tasks`: how many tasks the model has seen
// (0 = random init). `head_init_rows` [total classes, D] supplies rows of unseen classes.
std::vector<TaskAccuracy> evaluate_tasks(VisionTransformer& model, const Dataset& test, const TaskSplit& split, int64_t trained_tasks,
                                         const torch::Tensor& head_init_rows, int64_t batch_size);

}  // namespace cts
