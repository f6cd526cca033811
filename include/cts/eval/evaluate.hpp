// Evaluation of a class-incremental model on task test sets: class-IL accuracy (argmax
// over every class seen so far) and task-IL accuracy (argmax over the task's own classes).
// The next task not yet trained is scored task-IL with the head rows it will receive (the
// seeded init rows), which gives the R[j-1][j] entries FWT needs.
#pragma once
#include <torch/types.h>

#include <functional>
#include <vector>

#include "cts/data/dataset.hpp"
#include "cts/data/task_split.hpp"
#include "cts/eval/metrics.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/models/vit.hpp"

namespace cts {

// Pre-logits features [N, D] (float, CPU) of dataset samples, full inputs, eval mode.
torch::Tensor extract_features(VisionTransformer& model, const Dataset& dataset, const torch::Tensor& indices, int64_t batch_size);
// Pre-logits features [n, D] (float, CPU) of every buffer sample as replay presents it (kept
// tokens, `fill`, kept embeddings times `rescale`), eval mode.
torch::Tensor extract_replay_features(VisionTransformer& model, const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size);

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

// Features [B, D] (float) of uint8 images [B, C, H, W], full inputs, in eval mode. Called
// from several threads at once (batches are parallel jobs, core/threads.hpp).
using FeatureFn = std::function<torch::Tensor(const torch::Tensor& images_u8)>;

// The test sets a metric needs after `tasks_trained` tasks: the tasks trained so far
// (class-IL and task-IL) and the next one (task-IL with the head rows it will get: R[i][i+1]
// of FWT); at the start (0 tasks) tasks 1..T-1 (b_j of FWT). Ascending.
std::vector<int64_t> tasks_to_evaluate(int64_t tasks_trained, int64_t num_tasks);

// Accuracies of a class-incremental linear head (weight [seen, D], bias [seen]) on `features`,
// on the test sets of `tasks` (ascending; the other tasks' entries stay NaN). One pass: the
// features of every listed test image in batches of `batch_size`, then one logits matrix over
// the trained rows and, for tasks not trained yet, their rows of `head_init_rows` [total
// classes, D] (bias 0), from which class-IL (argmax over the classes seen) and task-IL (argmax
// over the task's own classes) are both read.
std::vector<TaskAccuracy> evaluate_tasks(const FeatureFn& features, const torch::Tensor& head_weight, const torch::Tensor& head_bias,
                                         const Dataset& test, const TaskSplit& split, int64_t trained_tasks, const torch::Tensor& head_init_rows,
                                         int64_t batch_size, const std::vector<int64_t>& tasks);
// The same for a ViT (its pre-logits features by forward_cls, its head), in inference mode.
std::vector<TaskAccuracy> evaluate_tasks(VisionTransformer& model, const Dataset& test, const TaskSplit& split, int64_t trained_tasks,
                                         const torch::Tensor& head_init_rows, int64_t batch_size, const std::vector<int64_t>& tasks);

}  // namespace cts
