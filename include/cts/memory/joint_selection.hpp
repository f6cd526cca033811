// Joint core tokenset selection (memory.selection = joint): one pass scores every
// (sample, token) pair of the finished task and keeps the best pairs of each class under
// its byte share, so important samples keep more tokens than others. Rule: top of
// src/memory/joint_selection.cpp.
#pragma once
#include <torch/types.h>

#include <vector>

#include "cts/memory/selection.hpp"

namespace cts {

// Pair scores of one class: sample weights w [N] (>= 0) times relevance shares rho [N, T]
// (each row sums to 1). Greedy over pairs by descending score (ties: lower sample, then
// lower token): a pair is taken when its bytes fit, a sample's first token also paying the
// sample's own bytes. Returns kept token positions [N, Kmax] with -1 padding; rows of
// samples that keep nothing are all -1.
torch::Tensor joint_top_pairs(const torch::Tensor& sample_weights, const torch::Tensor& relevance_share, int64_t budget_bytes,
                              int64_t token_bytes, int64_t sample_bytes);

// Per-sample weights of the rule: w_i = 1 + u_i / mean(u) with u_i = max(0, <g_i, Σ_j g_j>)
// over the class's last-layer gradients g [N, C] (w = 1 when every u_i is 0).
torch::Tensor joint_sample_weights(const torch::Tensor& class_gradients);

// Relevance [N, T] -> shares: negatives clipped to 0, rows normalised to sum 1 (uniform
// for an all-zero row).
torch::Tensor relevance_shares(const torch::Tensor& relevance);

SelectionReport select_task_memory_joint(MemoryModel& model, const Dataset& train, const TaskSplit& split, int64_t task,
                                         TokenSelector& tokens, const SelectionSettings& settings, int64_t budget_bytes,
                                         TokenBuffer& buffer);

}  // namespace cts
