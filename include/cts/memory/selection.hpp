// Composition of a task's memory.
//   Fractions (the paper): per class, a coreset method keeps ceil(s · N_c) samples (s = 1
//   keeps all); of each kept sample an attribution method keeps round(k · T) tokens.
//   Byte budget (memory.budget_bytes): the task's byte share decides the split (budget.hpp):
//     coreset        as many whole samples as fit;
//     core-tokens    every sample, as many tokens each as fit;
//     core-tokenset  token count t from token_grid(T), samples n(t) = share / cost(t);
//                    each t is tried on the task minus a held-out slice, and the t whose
//                    candidate memory, replayed as training would replay it, trains the
//                    linear probe with the lowest held-out loss wins (ties: more tokens).
//   Joint (memory.selection = joint): see joint_selection.hpp.
#pragma once
#include <torch/types.h>

#include <string>
#include <vector>

#include "cts/attribution/token_selector.hpp"
#include "cts/coreset/sample_selector.hpp"
#include "cts/data/dataset.hpp"
#include "cts/data/task_split.hpp"
#include "cts/memory/memory_config.hpp"
#include "cts/memory/memory_model.hpp"
#include "cts/memory/token_buffer.hpp"

namespace cts {

struct SelectionSettings {
  MemoryFractions fractions;
  MemoryStrategy strategy = MemoryStrategy::CoreTokenset;  // coreset | core-tokens | core-tokenset (byte-budget rules)
  int64_t budget_bytes = 0;         // > 0: this task's byte share (budget mode); joint derives one from the fractions when 0
  bool joint = false;               // memory.selection = joint
  double holdout_fraction = MemoryConfig{}.budget_holdout;
  FillMode fill = FillMode::ZeroEmbedding;  // how the split search replays candidate memories
  bool rescale_tokens = false;      // train.token_drop_rescale (replay scales kept embeddings by 1/k)
  ExplainTarget target = ExplainTarget::Label;  // memory.target
  bool store_weights = false;       // memory.use_weights
  int64_t batch_size = MemoryConfig{}.selection_batch_size;  // attribution batch
  int64_t feature_batch_size = MemoryConfig{}.feature_batch_size;
  uint64_t seed = 0;
};

// The settings of a run's memory section (the task's byte share, budget_bytes, is per task).
SelectionSettings selection_settings(const MemoryConfig& memory, const MemoryFractions& fractions, uint64_t seed, bool rescale_tokens);

// One candidate of the core-tokenset split search.
struct SplitTrial {
  int64_t tokens = 0;   // tokens per sample
  int64_t samples = 0;  // samples the held-out search kept (on the task minus the held-out slice)
  int64_t bytes = 0;
  double holdout_loss = 0.0;  // probe cross-entropy on the held-out slice
};

struct SelectionReport {
  int64_t samples = 0, tokens = 0, bytes = 0;  // bytes: the whole buffer after adding
  int64_t added_bytes = 0;                     // bytes this task added
  int64_t budget_bytes = 0;                    // the task's byte budget (0: fractions)
  int64_t tokens_per_sample = 0;               // 0 when samples keep different counts (joint)
  double coreset_seconds = 0.0, attribution_seconds = 0.0, split_seconds = 0.0;
  std::vector<int64_t> per_class;  // samples kept per class of the task (task's class order)
  std::vector<SplitTrial> trials;  // core-tokenset byte budget: the grid that was scored
  int64_t removed = 0;             // size_policy fixed: samples of old classes removed to make room
};

// Per-class budget n_c = ceil(s * N_c), clamped to [1, N_c] (0 for an empty class).
int64_t class_budget(double sample_fraction, int64_t class_size);

// Selects task `task`'s memory from `train` with `model` (the learner that just finished the
// task) and adds it to `buffer`. InputError for a budget the task cannot meet.
SelectionReport select_task_memory(MemoryModel& model, const Dataset& train, const TaskSplit& split, int64_t task, SampleSelector& coreset,
                                   TokenSelector& tokens, const SelectionSettings& settings, TokenBuffer& buffer);

// Token relevance [B, T] (float, CPU) of dataset samples `ids` for what `model` explains.
torch::Tensor sample_relevance(MemoryModel& model, TokenSelector& tokens, const Dataset& data, const torch::Tensor& ids,
                               const torch::Tensor& images_u8, ExplainTarget target);

}  // namespace cts
