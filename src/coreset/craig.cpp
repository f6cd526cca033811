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
#include <atomic>
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

// Runs work(0), ..., work(count - 1) on every torch thread, each index taken by the next free
// thread (dynamic scheduling: pieces of unequal size still keep both threads busy).
template <class F>
void parallel_pieces(int64_t count, const F& work) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(count, at::get_num_threads()), /*grain_size=*/1, [&](int64_t, int64_t) {
    for (int64_t p = next++; p < count; p = next++) work(p);
  });
}

// Partial gains over columns i0 .. i0 + w of `rows` candidates: kp [rows, w] holds <x_j, x_i>,
// out[r] = Σ_t max(0, m_i − D_ji) with D_ji = max((−2·<x_j, x_i> + |x_j|²) + |x_i|², 0) in
// float (squared_distances()' operations) and 0 for i = j. Each candidate's sum runs over t in
// order; G candidates are summed side by side so their additions overlap in the pipeline (one
// chain of dependent double additions per candidate is what bounds this loop), which changes
// no sum.
template <int G>
void partial_gains_group(const float* kp, int64_t w, const int64_t* ids, int64_t i0, const float* sq, const double* m, double* out) {
  double g[G] = {};
  float sqj[G];
  const float* kr[G];
  for (int q = 0; q < G; ++q) sqj[q] = sq[ids[q]], kr[q] = kp + q * w;
  for (int64_t t = 0; t < w; ++t) {
    const int64_t i = i0 + t;
    const double mi = m[i];
    const float sqi = sq[i];
    for (int q = 0; q < G; ++q) {
      const float d = i == ids[q] ? 0.0f : std::max(kr[q][t] * -2.0f + sqj[q] + sqi, 0.0f);
      const double diff = mi - double(d);
      if (diff > 0) g[q] += diff;
    }
  }
  for (int q = 0; q < G; ++q) out[q] = g[q];
}

void partial_gains(const float* kp, int64_t w, const int64_t* ids, int64_t rows, int64_t i0, const float* sq, const double* m, double* out) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) partial_gains_group<4>(kp + r * w, w, ids + r, i0, sq, m, out + r);
  for (; r < rows; ++r) partial_gains_group<1>(kp + r * w, w, ids + r, i0, sq, m, out + r);
}

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
      // of once per candidate (~10x faster than a row at a time), then each candidate's
      // partial gain over the chunk. The (chunk, half of the candidates) pieces run on every
      // torch thread (at::parallel_for; a single-threaded GEMM each: a GEMM's rows do not
      // depend on how its rows are split, checked in the tests), and the partial gains are then
      // added per candidate in chunk order: the same sums as on one thread, bit for bit.
      std::vector<int64_t> ids;
      for (const auto& e : stale) ids.push_back(e.index);
      const int64_t S = int64_t(ids.size());
      const auto stale_rows = rows.rows(torch::tensor(ids, torch::kInt64));
      const int64_t chunks = (n + kColumnChunk - 1) / kColumnChunk;
      const int64_t half = (S + 1) / 2, pieces = chunks * 2;
      std::vector<double> partial(size_t(chunks * S), 0.0);  // [chunk][candidate]
      const float* sq = sq_all.data_ptr<float>();
      parallel_pieces(pieces, [&](int64_t piece) {
        {
          const int64_t c = piece / 2, r0 = (piece % 2) * half, nr = std::min(S, r0 + half) - r0;
          if (nr <= 0) return;
          const int64_t i0 = c * kColumnChunk, w = std::min(kColumnChunk, n - i0);
          auto k = stale_rows.slice(r0, nr).inner(rows.slice(i0, w)).contiguous();  // [nr, w] <x_j, x_i>
          partial_gains(k.data_ptr<float>(), w, ids.data() + r0, nr, i0, sq, m.data(), partial.data() + c * S + r0);
        }
      });
      std::vector<double> gain(size_t(S), 0.0);
      for (int64_t c = 0; c < chunks; ++c)
        for (int64_t r = 0; r < S; ++r) gain[size_t(r)] += partial[size_t(c * S + r)];
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
    // Every point's distance to its nearest pick and its cluster: independent per point, so
    // the column chunks run on every torch thread (the pick's distances to a chunk are one
    // chunk of the same single-row product: the same numbers as the whole row at once).
    const GradientRows pick_row = out.used_matrix ? GradientRows() : rows.rows(torch::tensor({j}, torch::kInt64));
    const int64_t update_chunks = (n + kColumnChunk - 1) / kColumnChunk;
    parallel_pieces(update_chunks, [&](int64_t c) {
      {
        const int64_t i0 = c * kColumnChunk, w = std::min(kColumnChunk, n - i0);
        torch::Tensor d;
        const float* row = nullptr;
        if (out.used_matrix) {
          row = matrix[j].data_ptr<float>() + i0;
        } else {
          d = pick_row.squared_distances(rows.slice(i0, w)).contiguous();  // [1, w]
          row = d.data_ptr<float>();
        }
        for (int64_t t = 0; t < w; ++t) {
          const int64_t i = i0 + t;
          const double dij = i == j ? 0.0 : double(row[t]);
          if (dij < m[size_t(i)]) {
            m[size_t(i)] = dij;
            out.cluster[size_t(i)] = j;
          }
        }
      }
    });
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
  sort_with_rank(torch::tensor(fl.order, torch::kInt64), r);
  r.weights = torch::tensor(gamma, torch::kFloat32);
  return r;
}

}  // namespace cts
