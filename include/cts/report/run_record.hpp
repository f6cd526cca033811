// What a run has measured so far, and its rendering as metrics.json and summary.md
// (the run folder contract of docs/design.md).
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "cts/config/config.hpp"
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
  // The learner's metrics, the first one primary; per metric a T x T matrix R[i][j] (NaN
  // where not evaluated) and its scores at initialisation b_j (FWT; empty when not measured).
  std::vector<MetricSpec> metric_specs;
  std::map<std::string, Matrix> scores;
  std::map<std::string, std::vector<double>> init_scores;
  MemoryStats memory;
  std::vector<TaskTiming> timing;
  double initial_eval_seconds = 0;  // the evaluation of the initial model (FWT's b_j)
  // Whether it ran on a copy of the initial model alongside task 0's training (CPU, >= 2
  // threads): then its seconds are not on the run's critical path.
  bool initial_eval_alongside_training = false;
  double total_seconds = 0;
  std::vector<std::vector<std::string>> task_classes;  // readable class names per task
  std::vector<int64_t> parameters;  // the learner's parameter count after each task done (DyTox grows)
  std::string device;
  // Where model.weights came from (empty without weights): file, bytes, fnv1a64 of its
  // contents, and the cts.* metadata of the run that wrote it (config, data, train_subset).
  nlohmann::json weights = nlohmann::json::object();

  // Empty matrices (NaN) for `specs` over `tasks` tasks.
  void start(const std::vector<MetricSpec>& specs, int64_t tasks);
  // Row `task` of every metric from per-task scores (a metric missing from a task's scores stays NaN).
  void set_row(int64_t task, const std::vector<TaskScores>& row);
  // A metric's matrix (InputError naming the metrics there are when it is not recorded).
  const Matrix& matrix(const std::string& name) const;
  const MetricSpec& primary() const;

  nlohmann::json to_json() const;
  // Also reads records of cts versions before named metrics (accuracy, task_il_accuracy).
  static RunRecord from_json(const nlohmann::json& j);
  // Metrics of the primary score over the tasks done so far (the leading tasks_done x
  // tasks_done block), FWT from its fwt_from metric.
  ContinualMetrics metrics() const;
  // The same for any recorded metric (no FWT unless it names an fwt_from metric).
  ContinualMetrics metrics(const MetricSpec& spec) const;
};

// metrics.json content: per metric <name>_matrix, the primary metric's summary at the top level,
// each other metric's under its summary_key, initial scores as init_<name>.
nlohmann::json metrics_json(const RunRecord& record, const MemoryFractions& fractions);
// summary.md content.
std::string summary_markdown(const RunRecord& record, const Config& config, const MemoryFractions& fractions);

}  // namespace cts
