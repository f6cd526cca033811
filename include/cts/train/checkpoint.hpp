// Crash-safe checkpoints in <run>/checkpoint/. Each checkpoint is a generation:
// state-<g>.safetensors (model "model.*" and optimizer "optim.*" tensors) and
// buffer-<g>.safetensors, each written atomically, then checkpoint.json (the commit
// point, written atomically) names generation g; older generations are removed after.
// A crash at any moment leaves the previous or the new checkpoint whole.
#pragma once
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace cts {

struct CheckpointData {
  // Position: the next thing to do is step `step` of epoch `epoch` of task `task`; when
  // `task_complete`, task `task` is finished (evaluated, memory selected).
  int64_t task = 0, epoch = 0, step = 0;
  bool task_complete = false;
  nlohmann::json learner;  // the learner's state_info() (head size, task tokens, ...)
  // Size of log.jsonl when this checkpoint was made (its "checkpoint" record included);
  // on resume the log is cut back to it. -1: unknown (older checkpoints).
  int64_t log_bytes = -1;
  nlohmann::json progress;                      // record, loss sums, memory bookkeeping
  std::map<std::string, torch::Tensor> tensors;  // model.* (the learner's tensors), optim.*, loop.*
  std::filesystem::path buffer_file;             // buffer of this generation (empty if none)
};

// Writes generation (previous + 1). `write_buffer` saves the buffer file given its path.
// On failure (disk full, read-only folder) throws RunError naming the path, removes the
// new generation's files and leaves the previous checkpoint as the committed one.
void save_checkpoint(const std::filesystem::path& run_dir, const CheckpointData& data,
                     const std::function<void(const std::filesystem::path&)>& write_buffer);

bool has_checkpoint(const std::filesystem::path& run_dir);
// Reads the committed generation. InputError when missing or inconsistent.
CheckpointData load_checkpoint(const std::filesystem::path& run_dir);

}  // namespace cts
