// What a run has measured so far, and its rendering as metrics.json and summary.md
// (the run folder contract of docs/design.md).
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "cts/core/config.hpp"
#include "cts/eval/metrics.hpp"

namespace cts {

struct MemoryStats {
  int64_t bytes = 0, tokens = 0, samples = 0;
  int64_t dataset_bytes = 0, dataset_tokens = 0, dataset_samples = 0;  // the training data of all tasks so far
  double fraction() const { return dataset_tokens ? double(tokens) / double(dataset_tokens) : 0.0; }
  double bytes_fraction() const { return dataset_bytes ? double(bytes) / double(dataset_bytes) : 0.0; }
};

struct TaskTiming {
  double train_seconds = 0, eval_seconds = 0, selection_seconds = 0;
  int64_t steps = 0, samples = 0;
};

struct RunRecord {
  int64_t num_tasks = 0;
  int64_t tasks_done = 0;
  Matrix accuracy;          // class-IL R[i][j], NaN where not evaluated
  Matrix task_il_accuracy;  // task-IL, also for tasks not yet trained (FWT)
  std::vector<double> init_task_il;  // b_j: task-IL accuracy of the randomly initialised model
  MemoryStats memory;
  std::vector<TaskTiming> timing;
  double total_seconds = 0;
  std::vector<std::vector<std::string>> task_classes;  // readable class names per task
  std::string device;

  nlohmann::json to_json() const;
  static RunRecord from_json(const nlohmann::json& j);
  // Metrics over the tasks done so far (the leading tasks_done x tasks_done block).
  ContinualMetrics metrics() const;
};

// metrics.json content.
nlohmann::json metrics_json(const RunRecord& record, const MemoryFractions& fractions);
// summary.md content.
std::string summary_markdown(const RunRecord& record, const Config& config, const MemoryFractions& fractions);

}  // namespace cts
