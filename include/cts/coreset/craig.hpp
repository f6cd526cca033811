// craig (Mirzasoleiman et al. 2020): facility location on per-sample last-layer gradients,
// maximised by lazy greedy; weights are the sizes of the selected samples' clusters.
#pragma once
#include <vector>

#include "cts/coreset/gradient_rows.hpp"
#include "cts/coreset/sample_selector.hpp"

namespace cts {

struct FacilityLocationResult {
  std::vector<int64_t> order;    // selected rows in the order greedy picked them
  std::vector<double> gains;     // marginal gain of each pick (the first w.r.t. the offset used)
  std::vector<int64_t> cluster;  // [N] the selected row each row is assigned to (its nearest pick)
  bool used_matrix = false;      // true: the N×N distance matrix was held; false: column blocks
  int64_t evaluations = 0;       // gain evaluations (N initial ones included)
};

// Lazy-greedy facility location on the rows: maximise F(S) = Σ_i max_{j∈S} (c − D_ij),
// D_ij = ||x_i − x_j||². Holds D when N²·4 bytes <= matrix_bytes, otherwise computes
// distance columns in blocks of `block` candidates on the fly.
FacilityLocationResult facility_location_greedy(const GradientRows& rows, int64_t budget, int64_t matrix_bytes, int64_t block = 64);

class CraigCoreset : public SampleSelector {
 public:
  explicit CraigCoreset(SampleSelectorOptions options = {}) : opt_(std::move(options)) {}
  std::string name() const override { return "craig"; }
  bool needs_gradients() const override { return true; }
  bool needs_features() const override { return opt_.gradient == "logits-embedding"; }
  CoresetResult select(const CoresetInput& input) override;

 private:
  SampleSelectorOptions opt_;
};

}  // namespace cts
