// The sequential (class-incremental) trainer behind `cts run`: for each task, epochs over
// its new data with random token dropping plus a replay batch from memory every step
// (loss = CE(new) + CE(replay)), then evaluation on every task so far, then selection of
// that task's memory, then a checkpoint. Writes the run folder of docs/design.md.
#pragma once
#include <torch/types.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>

#include "cts/core/config.hpp"
#include "cts/report/run_record.hpp"

namespace cts {

struct RunOptions {
  std::filesystem::path out_dir;     // overrides output.dir when not empty
  std::filesystem::path resume_dir;  // continue this run folder from its last checkpoint
  std::string device;                // overrides config.device when not empty
  // Set (e.g. by a signal handler) to stop after the current step with a checkpoint.
  const std::atomic<bool>* stop_requested = nullptr;
  // Test hook: behave as if stop_requested became true after this many optimizer steps
  // of this process (< 0: never).
  int64_t stop_after_steps = -1;
};

struct RunSummary {
  std::filesystem::path dir;
  RunRecord record;
  bool completed = false;  // false when stopped early (checkpoint written; resume with --resume)
};

// Runs the whole experiment described by `config`. InputError for bad config/data,
// RunError for failures during the run.
RunSummary run_experiment(const Config& config, const RunOptions& options = {});

// Replay loss with memory.use_weights: Σ_b w_b · CE_b / Σ_b w_b over the replay batch
// (coreset weights: CRAIG cluster sizes, GradMatch weights).
torch::Tensor replay_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& weights);

// The folder a config writes to (output.dir or runs/<config name>).
std::filesystem::path run_directory(const Config& config, const RunOptions& options);

}  // namespace cts
