// Byte budgets for the replay memory (memory.budget_bytes and joint selection): what a
// stored sample costs, each task's share of the budget, per-class allocation, the token
// grid searched for core-tokenset, and the held-out probe loss that scores a candidate split.
//
// Rules (also in README "Byte budgets"):
//   cost of a sample with t tokens = t·(C·p² + 2) + 8 (+ 4 with weights)     (exact buffer bytes)
//   share of task t = floor((B − bytes already used) · N_t / Σ_{u ≥ t} N_u)   (Σ shares ≤ B)
//   samples of n over classes: one per class, the rest proportional to (N_c − 1), largest
//   remainder, ties to the earlier class.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "cts/memory/memory_config.hpp"

namespace cts {

// The data a byte budget is planned over.
struct BudgetData {
  std::vector<int64_t> task_samples;  // training samples of each task
  std::vector<int64_t> task_classes;  // classes of each task
  int64_t channels = 1, patch_size = 1, num_tokens = 1;
  bool weights = false;  // memory.use_weights (4 more bytes per sample)
};

// memory.budget_bytes at the start of a run: checks that every task's share can hold its
// minimal memory (coreset: one whole sample per class; core-tokens: one token of every
// sample; core-tokenset: one token of one sample per class) and returns `fractions` with the
// starting split: coreset k = 1; core-tokens k = what task 0's share affords per sample;
// core-tokenset k = sqrt of the implied retention (budget / bytes of every sample stored
// whole). InputError names the smallest budget that works.
MemoryFractions plan_byte_budget(const MemoryFractions& fractions, MemoryStrategy strategy, const BudgetData& data);

// memory.size_policy = fixed: the samples each class keeps once `classes` classes have been
// seen: floor(fixed_samples / classes), or floor(floor(fixed_bytes / classes) / sample_bytes).
int64_t fixed_class_quota(const MemoryFractions& fractions, int64_t classes, int64_t sample_bytes);

// Buffer bytes of one stored sample that keeps `tokens` of the `grid_tokens` patch tokens of
// an image: its uint8 patches, a uint16 position per token only when it keeps fewer than all
// of them (a whole image, as a coreset stores it, needs none), uint16 count, int32 label,
// uint16 task and an optional float32 weight (token_buffer.hpp's layout).
int64_t stored_sample_bytes(int64_t channels, int64_t patch_size, int64_t tokens, bool weights, int64_t grid_tokens);

// Share of the byte budget for a task: floor((budget − used) · task_samples / remaining_samples).
int64_t task_byte_share(int64_t budget, int64_t used, int64_t task_samples, int64_t remaining_samples);

// Splits `total` units over groups of the given sizes in proportion to the sizes (largest
// remainder; ties to the lower group), never more than a group's size. With
// `at_least_one`, every non-empty group first gets 1 (total must cover that) and the rest
// is split in proportion to size − 1. Returns counts summing to min(total, Σ sizes).
std::vector<int64_t> allocate_proportional(int64_t total, const std::vector<int64_t>& sizes, bool at_least_one);

// Splits `total` (e.g. bytes) in proportion to `sizes` without caps: floors plus the
// remainder by largest fractional part (ties to the lower group). Sums to `total`.
std::vector<int64_t> share_proportional(int64_t total, const std::vector<int64_t>& sizes);

// Token counts tried by the core-tokenset split search: T, round(T/2), round(T/4), ..., 1
// (distinct, descending).
std::vector<int64_t> token_grid(int64_t num_tokens);

// Held-out loss of a multinomial logistic-regression probe: standardise features with the
// training rows' mean/std, fit W, b (zero init, 300 full-batch Adam steps, lr 0.05,
// L2 1e-3·||W||², optional per-row weights), return the mean cross-entropy on the test rows.
// features [n, D] float, labels int64 in [0, classes). Deterministic.
double probe_holdout_loss(const torch::Tensor& train_features, const torch::Tensor& train_labels, const torch::Tensor& train_weights,
                          const torch::Tensor& test_features, const torch::Tensor& test_labels, int64_t classes);

}  // namespace cts
