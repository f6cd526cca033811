// Continual-learning metrics from the accuracy matrix R[i][j] = accuracy on task j's test
// set after training task i (i, j in 0..T-1; entries not evaluated are NaN).
//   average accuracy after task i   A_i = mean_{j<=i} R[i][j]; final = A_{T-1}
//   average incremental accuracy    mean_i A_i
//   forgetting (Chaudhry et al.)    mean_{j<T-1} max_{j<=i<T-1} (R[i][j] - R[T-1][j])
//   BWT                             mean_{j<T-1} (R[T-1][j] - R[j][j])
//   FWT                             mean_{j>=1} (R[j-1][j] - b_j), b_j = accuracy at random init
// forgetting, BWT and FWT are undefined (nullopt) for a single task.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cts {

using Matrix = std::vector<std::vector<double>>;

// A score a learner reports per task after each task (a row of a T x T matrix per metric).
// The first metric of a learner is its primary one: metrics.json's top-level summary
// (final_average_accuracy, forgetting, ...) and sweep tables use it.
struct MetricSpec {
  std::string name;         // metrics.json key <name>_matrix, e.g. accuracy, task_il_accuracy, exact_match, bleu4
  std::string title;        // for people: "class-IL accuracy"
  std::string summary_key;  // metrics.json object with its averages, forgetting and BWT ("task_il"); empty: none
  std::string fwt_from;     // the metric whose matrix and initial scores give FWT (task_il_accuracy); empty: none
  bool percent = true;      // values are fractions in [0, 1], shown x 100
};

// Per task, the score of each metric by name (NaN where undefined, e.g. class-IL accuracy
// of a task not trained yet).
using TaskScores = std::map<std::string, double>;

struct ContinualMetrics {
  std::vector<double> average_accuracy;  // A_i per task
  double final_average_accuracy = 0.0;
  double average_incremental_accuracy = 0.0;
  std::optional<double> forgetting, bwt, fwt;
};

// `R` is T x T; `fwt_R` and `b` give FWT (it needs accuracies on tasks before they are
// trained: cts takes them from the task-incremental matrix); pass empty to skip FWT.
ContinualMetrics compute_metrics(const Matrix& R, const Matrix& fwt_R = {}, const std::vector<double>& b = {});

}  // namespace cts
