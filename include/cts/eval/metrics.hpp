// Continual-learning metrics from the accuracy matrix R[i][j] = accuracy on task j's test
// set after training task i (i, j in 0..T-1; entries not evaluated are NaN).
//   average accuracy after task i   A_i = mean_{j<=i} R[i][j]; final = A_{T-1}
//   average incremental accuracy    mean_i A_i
//   forgetting (Chaudhry et al.)    mean_{j<T-1} max_{j<=i<T-1} (R[i][j] - R[T-1][j])
//   BWT                             mean_{j<T-1} (R[T-1][j] - R[j][j])
//   FWT                             mean_{j>=1} (R[j-1][j] - b_j), b_j = accuracy at random init
// forgetting, BWT and FWT are undefined (nullopt) for a single task.
#pragma once
#include <optional>
#include <vector>

namespace cts {

using Matrix = std::vector<std::vector<double>>;

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
