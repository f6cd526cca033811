// The sequential loop behind `cts run`, the same for every model kind (learners/learner.hpp):
// for each task, the learner's begin_task, epochs over the task's new data (token dropping at
// the memory's rate) with a replay batch from memory every step (the learner says the loss),
// end_task, evaluation on every task's test set, selection of the task's memory
// (memory/selection.hpp, through the learner's MemoryModel side), a checkpoint. Writes the
// run folder of docs/design.md; resumes bit-identically on CPU.
#pragma once
#include <torch/types.h>

#include <atomic>
#include <filesystem>
#include <string>

#include "cts/config/config.hpp"
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
  bool main_rank = true;   // false on the ranks > 0 of a data-parallel run (they write nothing)
};

// Token-drop guard (train.full_image_share): whether step `step_in_task` (0-based) of a task
// shows new data whole. Steps s with floor((s + 1) share) > floor(s share) are chosen, so
// the whole steps are spread evenly and a task of n steps has floor(n share) of them.
bool full_image_step(double share, int64_t step_in_task);

// Runs the whole experiment described by `config`. InputError for bad config/data,
// RunError for failures during the run.
RunSummary run_experiment(const Config& config, const RunOptions& options = {});

}  // namespace cts
