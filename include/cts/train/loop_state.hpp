// What the sequential loop carries from step to step besides the learner, the optimizer and
// the buffer, and its round trip through a checkpoint's progress record (checkpoint.hpp):
// the run record, the running loss sums, the token-drop rate and memory fractions that byte
// budgets adjust per task, the wall time so far and the cumulative baseline's replay indices.
#pragma once
#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cts/config/config.hpp"
#include "cts/report/run_record.hpp"
#include "cts/train/checkpoint.hpp"

namespace cts {

struct LoopState {
  RunRecord record;
  std::vector<double> loss_sums;     // per loss term (the learner's loss_terms() order), this epoch so far
  int64_t loss_count = 0;            // steps in loss_sums
  torch::Tensor loss_acc;            // [terms] float64 on the device: sums not yet folded into loss_sums
  int64_t loss_acc_steps = 0;        // steps in loss_acc
  double token_drop = 0.0;           // drop rate of new-data tokens
  double replay_token_fraction = 1.0;  // token fraction of the memory (replay rescale)
  MemoryFractions fractions;         // s, k, r (byte budgets update them per task)
  double seconds_before = 0.0;       // wall time of the processes before this one
  torch::Tensor cumulative_indices;  // cumulative strategy: dataset indices of past tasks (int64)
};

// Stores `state` in `ck` (progress record and loop.* tensors; the unfolded loss sums only
// mid-task), with the run's resolved config and its wall time so far.
void save_loop_state(const LoopState& state, const Config& config, double seconds, CheckpointData& ck);
// Restores what save_loop_state stored (loss_acc onto `device`). Reads checkpoints written
// before named loss terms (loss_new_sum, loss_replay_sum).
void load_loop_state(const CheckpointData& ck, const torch::Device& device, LoopState& state);

// InputError unless the checkpoint's configuration is the run's (output and device may
// differ); `dir` names the run in the message.
void check_same_experiment(const CheckpointData& ck, const Config& config, const std::filesystem::path& dir);

}  // namespace cts
