// Generation-based atomic checkpoints.
#include "cts/train/checkpoint.hpp"

#include "cts/core/crash_test.hpp"
#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"
#include "cts/core/safetensors.hpp"

namespace cts {
namespace {
std::filesystem::path manifest_path(const std::filesystem::path& run_dir) { return run_dir / "checkpoint" / "checkpoint.json"; }
}  // namespace

bool has_checkpoint(const std::filesystem::path& run_dir) {
  std::error_code ec;
  return std::filesystem::is_regular_file(manifest_path(run_dir), ec);
}

void save_checkpoint(const std::filesystem::path& run_dir, const CheckpointData& data,
                     const std::function<void(const std::filesystem::path&)>& write_buffer) {
  const auto dir = run_dir / "checkpoint";
  ensure_directory(dir);
  int64_t generation = 1;
  if (has_checkpoint(run_dir)) {
    try {
      generation = nlohmann::json::parse(read_file(manifest_path(run_dir))).at("generation").get<int64_t>() + 1;
    } catch (const std::exception&) {
      generation = 1;
    }
  }
  const std::string state_name = fmt::format("state-{:06}.safetensors", generation);
  const std::string buffer_name = fmt::format("buffer-{:06}.safetensors", generation);
  std::vector<SafetensorsTensor> tensors;
  for (const auto& [name, t] : data.tensors) tensors.push_back({name, t.detach().to(torch::kCPU), ""});
  try {
    save_safetensors(dir / state_name, tensors, {{"format", "cts-checkpoint-v1"}});
    write_buffer(dir / buffer_name);
    if (crash_points_enabled()) crash_point("checkpoint-files");
    nlohmann::json manifest = {{"format", "cts-checkpoint-v1"},
                               {"generation", generation},
                               {"state", state_name},
                               {"buffer", buffer_name},
                               {"task", data.task},
                               {"epoch", data.epoch},
                               {"step", data.step},
                               {"task_complete", data.task_complete},
                               {"learner", data.learner},
                               {"log_bytes", data.log_bytes},
                               {"progress", data.progress}};
    write_file_atomic(manifest_path(run_dir), manifest.dump(1));
  } catch (const std::exception& e) {
    // Not committed: drop this generation's files (they may fill a full disk further) and
    // say that the previous checkpoint is still the one --resume uses.
    std::error_code ec;
    std::filesystem::remove(dir / state_name, ec);
    std::filesystem::remove(dir / buffer_name, ec);
    if (generation > 1 && has_checkpoint(run_dir)) {
      throw_run("{} (checkpoint {} not written; checkpoint {} in {} is intact: free space, then cts run --resume {})", e.what(), generation,
                generation - 1, dir.string(), run_dir.string());
    }
    throw_run("{} (no checkpoint has been written to {} yet)", e.what(), dir.string());
  }
  // The new generation is committed: remove every other generation's files.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == "checkpoint.json" || name == state_name || name == buffer_name) continue;
    if (name.rfind("state-", 0) == 0 || name.rfind("buffer-", 0) == 0 || name.find(".tmp.") != std::string::npos) {
      std::filesystem::remove(entry.path(), ec);
    }
  }
}

CheckpointData load_checkpoint(const std::filesystem::path& run_dir) {
  const auto path = manifest_path(run_dir);
  if (!has_checkpoint(run_dir)) throw_input("no checkpoint in {}: expected {} (was the run started with this folder?)", run_dir.string(), path.string());
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_file(path, "checkpoint"));
  } catch (const nlohmann::json::exception& e) {
    throw_input("{}: not valid JSON: {}", path.string(), e.what());
  }
  CheckpointData d;
  try {
    if (m.at("format") != "cts-checkpoint-v1") throw_input("{}: unknown checkpoint format {}", path.string(), m.at("format").dump());
    d.task = m.at("task");
    d.epoch = m.at("epoch");
    d.step = m.at("step");
    d.task_complete = m.at("task_complete");
    // Checkpoints written before the learner interface name only the ViT head's size.
    d.learner = m.contains("learner") ? m.at("learner") : nlohmann::json{{"head_classes", m.at("head_classes")}};
    d.progress = m.at("progress");
    d.log_bytes = m.value("log_bytes", int64_t{-1});
    auto state = load_safetensors(run_dir / "checkpoint" / m.at("state").get<std::string>());
    d.tensors = state.tensors;
    d.buffer_file = run_dir / "checkpoint" / m.at("buffer").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw_input("{}: missing or malformed field: {}", path.string(), e.what());
  }
  return d;
}

}  // namespace cts
