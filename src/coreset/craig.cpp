// craig (Mirzasoleiman, Bilmes, Leskovec 2020, "Coresets for data-efficient training").
//
//   D_ij = ||x_i − x_j||²          x_i: last-layer gradient of sample i (gradient_rows.hpp)
//   S_ij = c − D_ij,  c = max D    (similarity; S ≥ 0)
//   F(S) = Σ_i max_{j∈S} S_ij      (facility location; monotone submodular, F(∅) = 0)
//   greedy: S ← S ∪ argmax_j F(S ∪ {j}) − F(S), n times        (≥ (1 − 1/e) of the optimum)
//   γ_j = |{i : j = argmax_{j'∈S} S_ij'}|                        (cluster sizes, Σ_j γ_j = N)
//
// Gains. With m_i = min_{j∈S} D_ij the marginal gain of j is Σ_i max(0, m_i − D_ij) for
// non-empty S; for S = ∅ it is N·c − Σ_i D_ij. c therefore never changes which sample
// greedy picks (the first pick is argmin_j Σ_i D_ij whatever c is); it only bounds the
// initial gains. In matrix mode c = max D exactly; in column mode the cheap bound
// c = 4·max_i ||x_i||² ≥ max D is used, and Σ_i D_ij comes in closed form:
//   Σ_i D_ij = Σ_i ||x_i||² + N ||x_j||² − 2 <x_j, Σ_i x_i>.
//
// Lazy greedy (Minoux): a max-heap holds each candidate's last computed gain, an upper
// bound of its current gain (submodularity). Pop the top; if its gain is from this step it
// is the greedy choice, else recompute and push back. Ties go to the lower row index, so
// the selection equals plain greedy's. Column mode refreshes the `block` best stale
// candidates per round: their distance rows by the same GEMMs as the matrix, in column
// chunks (no N×N memory); fresh gains are exact, so the block size changes nothing but speed.
//
// Memory. The N×N float matrix is built (in row blocks) only when it fits matrix_bytes
// (memory.coreset_memory_mb); otherwise only [block, N] distance blocks are ever held.
// Cluster assignment is maintained during greedy (a point joins a new pick only when
// strictly nearer, so ties stay with the earlier pick).
#include "cts/coreset/craig.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <queue>

namespace cts {
namespace {

constexpr int64_t kColumnChunk = 4096;  // column-mode distance blocks are [block, kColumnChunk]

struct HeapEntry {
  double gain;
  int64_t index;
  int64_t step;  // the greedy step at which `gain` was computed
};
struct HeapOrder {  // max-heap on gain, then min index
  bool operator()(const HeapEntry& a, const HeapEntry& b) const {
    if (a.gain != b.gain) return a.gain < b.gain;
    return a.index > b.index;
  }
};

// Gain of one candidate from its distance row d[i] = D_ji.
double gain_from_row(const float* d, const std::vector<double>& m, int64_t n) {
  double g = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double diff = m[size_t(i)] - double(d[i]);
    if (diff > 0) g += diff;
  }
  return g;
}

}  // namespace

FacilityLocationResult facility_location_greedy(const GradientRows& rows, int64_t budget, int64_t matrix_bytes, int64_t block) {
  const int64_t n = rows.size();
  TORCH_CHECK(budget >= 0 && budget <= n, "facility location: cannot pick ", budget, " of ", n);
  TORCH_CHECK(block >= 1, "facility location: block must be >= 1");
  FacilityLocationResult out;
  out.cluster.assign(size_t(n), -1);
  if (budget == 0) return out;

  out.used_matrix = double(n) * double(n) * 4.0 <= double(matrix_bytes);
  torch::Tensor matrix;  // [N, N] float, row j = distances from j
  const int64_t row_block = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t(64) << 20) / std::max<int64_t>(1, 4 * n)));
  std::vector<double> initial(static_cast<size_t>(n));
  double c = 0.0;
  if (out.used_matrix) {
    matrix = torch::empty({n, n}, torch::kFloat32);
    for (int64_t r0 = 0; r0 < n; r0 += row_block) {
      const int64_t nr = std::min(row_block, n - r0);
      matrix.narrow(0, r0, nr).copy_(rows.slice(r0, nr).squared_distances(rows));
    }
    matrix.fill_diagonal_(0.0f);
    c = matrix.max().item<double>();
    auto sums = matrix.sum(1, false, torch::kFloat64).contiguous();
    const double* s = sums.data_ptr<double>();
    for (int64_t j = 0; j < n; ++j) initial[size_t(j)] = double(n) * c - s[j];
  } else {
    auto sq = rows.squared_norms().to(torch::kFloat64);                    // [N]
    c = 4.0 * sq.max().item<double>();
    auto sum_dot = rows.inner_with_sum();  // [N] <x_j, Σ_i x_i>, O(N·C·D')
    const double total_sq = sq.sum().item<double>();
    auto s = (total_sq + double(n) * sq - 2.0 * sum_dot).contiguous();  // Σ_i D_ij
    const double* sp = s.data_ptr<double>();
    for (int64_t j = 0; j < n; ++j) initial[size_t(j)] = double(n) * c - sp[j];
  }

  const torch::Tensor sq_all = rows.squared_norms().contiguous();  // float [N]
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, HeapOrder> heap;
  for (int64_t j = 0; j < n; ++j) heap.push({initial[size_t(j)], j, 0});
  out.evaluations = n;

  std::vector<double> m(static_cast<size_t>(n), std::numeric_limits<double>::infinity());  // min distance to S
  std::vector<char> selected(static_cast<size_t>(n), 0);
  for (int64_t step = 0; step < budget; ++step) {
    HeapEntry pick{};
    while (true) {
      HeapEntry top = heap.top();
      if (top.step == step) {
        heap.pop();
        pick = top;
        break;
      }
      if (out.used_matrix) {
        heap.pop();
        top.gain = gain_from_row(matrix[top.index].data_ptr<float>(), m, n);
        top.step = step;
        heap.push(top);
        ++out.evaluations;
        continue;
      }
      // Column mode: refresh the `block` best stale candidates in one round, looking past
      // fresh entries, which go back unchanged: extra refreshes only tighten bounds.
      std::vector<HeapEntry> stale, fresh;
      while (!heap.empty() && int64_t(stale.size()) < block && int64_t(fresh.size()) < 4 * block) {
        (heap.top().step == step ? fresh : stale).push_back(heap.top());
        heap.pop();
      }
      for (const auto& e : fresh) heap.push(e);
      // The stale candidates' distances to all N points in chunks of columns: per chunk two
      // small GEMMs ([S, ·] × [·, chunk]) that read each gradient row once per round instead
      // of once per candidate (~10x faster than a row at a time), then the partial gains,
      // summed per candidate in chunk order. The partial gains of the S candidates run on
      // every torch thread (at::parallel_for over candidates): each candidate's sum is still
      // taken by one thread in the same order, so the result is bit-identical to one thread.
      // (Splitting the chunks, i.e. the GEMMs, over threads was measured slower on 2 cores:
      // OpenBLAS calls from two threads contend.)
      std::vector<int64_t> ids;
      for (const auto& e : stale) ids.push_back(e.index);
      const int64_t S = int64_t(ids.size());
      const auto stale_rows = rows.rows(torch::tensor(ids, torch::kInt64));
      std::vector<double> gain(size_t(S), 0.0);
      const float* sq = sq_all.data_ptr<float>();
      for (int64_t i0 = 0; i0 < n; i0 += kColumnChunk) {
        const int64_t w = std::min(kColumnChunk, n - i0);
        auto k = stale_rows.inner(rows.slice(i0, w)).contiguous();  // [S, w] <x_j, x_i>
        const float* kp = k.data_ptr<float>();
        at::parallel_for(0, S, /*grain_size=*/1, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t j = ids[size_t(r)];
            const float* kr = kp + r * w;
            double g = 0.0;
            for (int64_t t = 0; t < w; ++t) {
              const int64_t i = i0 + t;
              // D_ji with the float operations of squared_distances(): (−2·<x_j, x_i> + |x_j|²) + |x_i|², ≥ 0.
              const float d = i == j ? 0.0f : std::max(kr[t] * -2.0f + sq[j] + sq[i], 0.0f);
              const double diff = m[size_t(i)] - double(d);
              if (diff > 0) g += diff;
            }
            gain[size_t(r)] += g;
          }
        });
      }
      for (int64_t r = 0; r < S; ++r) stale[size_t(r)].gain = gain[size_t(r)];
      for (auto& e : stale) {
        e.step = step;
        heap.push(e);
      }
      out.evaluations += int64_t(stale.size());
    }
    const int64_t j = pick.index;
    selected[size_t(j)] = 1;
    out.order.push_back(j);
    out.gains.push_back(pick.gain);
    torch::Tensor pick_row;
    const float* row = nullptr;
    if (out.used_matrix) {
      row = matrix[j].data_ptr<float>();
    } else {
      pick_row = rows.rows(torch::tensor({j}, torch::kInt64)).squared_distances(rows).contiguous();
      pick_row.data_ptr<float>()[j] = 0.0f;
      row = pick_row.data_ptr<float>();
    }
    for (int64_t i = 0; i < n; ++i) {
      const double dij = double(row[i]);
      if (dij < m[size_t(i)]) {
        m[size_t(i)] = dij;
        out.cluster[size_t(i)] = j;
      }
    }
  }
  return out;
}

CoresetResult CraigCoreset::select(const CoresetInput& in) {
  check_coreset_input(in, *this);
  const auto rows = GradientRows::from_input(in, opt_.gradient);
  const auto fl = facility_location_greedy(rows, in.budget, opt_.craig_matrix_bytes);
  std::vector<int64_t> picked = fl.order;
  std::sort(picked.begin(), picked.end());
  std::vector<float> gamma(picked.size(), 0.0f);
  for (int64_t a : fl.cluster) {
    const auto it = std::lower_bound(picked.begin(), picked.end(), a);
    gamma[size_t(it - picked.begin())] += 1.0f;
  }
  CoresetResult r;
  r.indices = torch::tensor(picked, torch::kInt64);
  r.weights = torch::tensor(gamma, torch::kFloat32);
  return r;
}

}  // namespace cts
