// Multi-head attention for CPU inference with the BLAS gemm called directly (see header).
#include "cts/models/cpu_attention.hpp"

#include <dlfcn.h>

#include <atomic>
#include <climits>

namespace cts {
namespace {

// The reference BLAS interface (OpenBLAS, Debian's libblas.so.3): column-major, 32-bit ints.
using Sgemm = void (*)(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha, const float* a,
                       const int* lda, const float* b, const int* ldb, const float* beta, float* c, const int* ldc);

Sgemm find_sgemm() {
  static const Sgemm f = reinterpret_cast<Sgemm>(dlsym(RTLD_DEFAULT, "sgemm_"));
  return f;
}

std::atomic<bool> enabled{true};

// Rows of x [B, R, Hd, dh] as BLAS operands: last dimension contiguous, heads side by side.
bool blas_rows(const torch::Tensor& x, int64_t dh) {
  return x.dim() == 4 && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.size(3) == dh && x.stride(3) == 1 &&
         (x.size(2) == 1 || x.stride(2) == dh) && x.stride(1) >= x.size(2) * dh && x.stride(1) < INT_MAX;
}

}  // namespace

bool cpu_attention_available() { return find_sgemm() != nullptr; }
void set_cpu_attention_enabled(bool on) { enabled = on; }

torch::Tensor cpu_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
  const Sgemm gemm = find_sgemm();
  if (!gemm || !enabled) return {};
  if (q.requires_grad() || k.requires_grad() || v.requires_grad()) return {};
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return {};
  const int64_t B = q.size(0), M = q.size(1), H = q.size(2), dh = q.size(3), N = k.size(1);
  if (k.size(0) != B || v.size(0) != B || k.size(2) != H || v.size(2) != H || v.size(1) != N) return {};
  if (!blas_rows(q, dh) || !blas_rows(k, dh) || !blas_rows(v, dh)) return {};
  // ATen's batched matmul loops over small products itself below this size (not the gemm).
  if (B == 0 || M == 0 || N == 0 || dh * M * N < 400 || M * N >= INT_MAX || H * dh >= INT_MAX) return {};

  const float one = 1.0f, zero = 0.0f;
  const int n = int(N), m = int(M), d = int(dh), D = int(H * dh);
  const int ldq = int(q.stride(1)), ldk = int(k.stride(1)), ldv = int(v.stride(1));
  auto scores = torch::empty({B, H, M, N}, q.options());  // [B, Hd, M, N]
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* sp = scores.data_ptr<float>();
  // S_bh (row-major M × N) = q_bh k_bhᵀ, i.e. column-major Sᵀ = k_bh q_bhᵀ: gemm('T', 'N').
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      gemm("T", "N", &n, &m, &d, &one, kp + b * k.stride(0) + h * dh, &ldk, qp + b * q.stride(0) + h * dh, &ldq, &zero, sp + (b * H + h) * M * N, &n);
  const auto attn = torch::softmax(scores * scale, -1);  // the torch path's ops, in its order
  auto out = torch::empty({B, M, H * dh}, q.options());  // [B, M, D]
  const float* ap = attn.data_ptr<float>();
  float* op = out.data_ptr<float>();
  // O_bh (row-major M × dh, row stride D) = A_bh v_bh, i.e. column-major Oᵀ = v_bhᵀ A_bhᵀ: gemm('N', 'N').
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      gemm("N", "N", &d, &m, &n, &one, vp + b * v.stride(0) + h * dh, &ldv, ap + (b * H + h) * M * N, &n, &zero, op + b * M * D + h * dh, &D);
  return out;
}

}  // namespace cts
