// Multi-head attention for CPU inference with the BLAS gemm called directly.
//
//   S_bh = q_bh k_bhᵀ              [M, N] per sample b and head h (q_bh: M × dh, k_bh: N × dh)
//   A_bh = softmax(scale · S_bh)   over the keys (row-wise)
//   O_bh = A_bh v_bh               [M, dh], written as O[b, :, h·dh : (h+1)·dh]
//
// torch::matmul on [B, Hd, N, dh] views copies each operand contiguous and then runs one BLAS
// sgemm per (sample, head) through ATen's per-matrix dispatch: at vit_nano's size (N = 50,
// dh = 16) the two products took a quarter of an evaluation forward, most of it outside the
// gemm itself (docs/performance.md). Here the same sgemm runs on the q, k, v columns of the
// qkv projection where they lie (leading dimension = their row stride: no copies) and writes
// straight into the [B, M, D] layout the output projection reads. The operands and the kernel
// are those ATen's matmul ends in, so the numbers are the same bit for bit (test against
// torch::matmul); where ATen would not use the gemm (dh · M · N < 400: its own small-matrix
// loop), or the BLAS has no `sgemm_` symbol, this returns an undefined tensor and the caller
// keeps its torch path.
#pragma once
#include <torch/torch.h>

namespace cts {

// q [B, M, Hd, dh], k and v [B, N, Hd, dh]: float32 CPU tensors whose last dimension is
// contiguous and whose heads lie side by side (stride(2) == dh), as slices of a qkv
// projection are; no autograd. Returns O [B, M, Hd·dh] (contiguous), or an undefined tensor
// where the direct path does not apply (the caller computes it with torch ops instead).
torch::Tensor cpu_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale);

// Whether cpu_attention may run (the BLAS sgemm was found). Tests switch it off to compare.
bool cpu_attention_available();
void set_cpu_attention_enabled(bool enabled);

}  // namespace cts
