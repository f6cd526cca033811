// Per-sample last-layer gradients for the gradient-based coreset methods, kept factored.
// Row i is x_i = g_i ⊗ ẽ_i with g_i = softmax(z_i) − onehot(y_i) ∈ R^C and
//   ẽ_i = [1]         ("logits": x_i = g_i, the gradient of the head bias), or
//   ẽ_i = [1, e_i]    ("logits-embedding": x_i = [g_i, g_i ⊗ e_i], head bias and weight).
// Inner products factor, <x_i, x_j> = (g_i·g_j)(ẽ_i·ẽ_j), so pairwise distances never need
// the C·(D+1) columns; dense() materialises them when a method needs explicit rows.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>

#include "cts/coreset/sample_selector.hpp"

namespace cts {

class GradientRows {
 public:
  GradientRows() = default;
  // g: [N, C]; e: [N, D] embeddings, or undefined for plain logits gradients.
  explicit GradientRows(torch::Tensor g, torch::Tensor e = {});
  // The rows a selector sees for `input` with options.gradient ("logits" | "logits-embedding").
  static GradientRows from_input(const CoresetInput& input, const std::string& gradient);

  int64_t size() const { return g_.size(0); }
  int64_t dim() const { return g_.size(1) * (has_embedding() ? e_.size(1) : 1); }  // C·D' with ẽ of D' numbers
  bool has_embedding() const { return e_.defined(); }

  // Rows [start, start + count).
  GradientRows slice(int64_t start, int64_t count) const;
  // Rows at int64 indices.
  GradientRows rows(const torch::Tensor& indices) const;

  torch::Tensor squared_norms() const;                       // [N] ||x_i||²
  torch::Tensor inner(const GradientRows& other) const;      // [N, M] <x_i, y_j>
  torch::Tensor squared_distances(const GradientRows& other) const;  // [N, M] ||x_i − y_j||², clamped at 0
  torch::Tensor dense() const;
  // [N] <x_j, Σ_i x_i> in double, via Σ_i g_i ẽ_iᵀ (O(N·C·D'), no N×N pass).
  torch::Tensor inner_with_sum() const;                               // [N, C·D'] explicit rows (row-major g ⊗ ẽ)

 private:
  torch::Tensor g_;  // float [N, C]
  torch::Tensor e_;  // float [N, D+1] = [1, e_i], or undefined (ẽ = [1])
  torch::Tensor sq_;  // float [N] ||x_i||², computed once
};

}  // namespace cts
