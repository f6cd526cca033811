// Accuracy-matrix metrics (formulas in the header).
#include "cts/eval/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace cts {

ContinualMetrics compute_metrics(const Matrix& R, const Matrix& fwt_R, const std::vector<double>& b) {
  ContinualMetrics m;
  const size_t T = R.size();
  if (T == 0) return m;
  for (const auto& row : R)
    if (row.size() != T) throw std::invalid_argument("accuracy matrix must be square");
  for (size_t i = 0; i < T; ++i) {
    double sum = 0.0;
    for (size_t j = 0; j <= i; ++j) sum += R[i][j];
    m.average_accuracy.push_back(sum / double(i + 1));
  }
  m.final_average_accuracy = m.average_accuracy.back();
  double inc = 0.0;
  for (double a : m.average_accuracy) inc += a;
  m.average_incremental_accuracy = inc / double(T);
  if (T >= 2) {
    double f = 0.0, bwt = 0.0;
    for (size_t j = 0; j + 1 < T; ++j) {
      double best = -INFINITY;
      for (size_t i = j; i + 1 < T; ++i) best = std::max(best, R[i][j] - R[T - 1][j]);
      f += best;
      bwt += R[T - 1][j] - R[j][j];
    }
    m.forgetting = f / double(T - 1);
    m.bwt = bwt / double(T - 1);
    if (fwt_R.size() == T && b.size() == T) {
      double fwt = 0.0;
      for (size_t j = 1; j < T; ++j) fwt += fwt_R[j - 1][j] - b[j];
      m.fwt = fwt / double(T - 1);
    }
  }
  return m;
}

}  // namespace cts
