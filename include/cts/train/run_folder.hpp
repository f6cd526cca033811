// The run folder of docs/design.md as the sequential loop owns it: where it is, the lock that
// keeps a second process out, the resolved config.yaml (first line names the config), and
// cutting log.jsonl back to the last checkpoint on resume.
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "cts/config/config.hpp"

namespace cts {

// The folder a run writes to: the resumed folder, else --out, else output.dir, else
// runs/<config name>.
std::filesystem::path run_directory(const Config& config, const std::filesystem::path& out_dir, const std::filesystem::path& resume_dir);

// An exclusive lock on <run>/.lock for the life of the run: a second `cts run` (or --resume) on
// the same folder stops with an InputError naming the holder's pid instead of interleaving
// checkpoints. The kernel releases it when the process ends, however it ends.
class RunFolderLock {
 public:
  RunFolderLock() = default;
  explicit RunFolderLock(const std::filesystem::path& dir);
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;
  RunFolderLock& operator=(RunFolderLock&& other) noexcept;
  ~RunFolderLock();

 private:
  void release();
  int fd_ = -1;
};

// Writes <dir>/config.yaml: a first line "# cts run: <name>" (so a resumed run keeps its
// name), then the resolved configuration.
void write_run_config(const std::filesystem::path& dir, const Config& config);
// The config name that line records, or `fallback` when the file or the line is missing.
std::string saved_config_name(const std::filesystem::path& dir, const std::string& fallback);

// Cuts log.jsonl back to its size at the checkpoint (`bytes` < 0: unknown, keep all) and
// returns the event names of the records removed.
nlohmann::json cut_log_to_checkpoint(const std::filesystem::path& log, int64_t bytes);

}  // namespace cts
