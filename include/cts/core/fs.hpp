// File helpers with the guarantees a long run needs: whole-file writes are atomic
// (temp file + fsync + rename + directory fsync, so a crash leaves the old or the new
// file, never a torn one) and JSON-lines logs never keep a half-written record.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace cts {

namespace fs = std::filesystem;

// Writes `data` to `path` atomically. Throws RunError naming the path on any failure
// (disk full, read-only folder, ...); the previous file at `path` is left intact.
void write_file_atomic(const fs::path& path, std::string_view data);

// Reads a whole file. Throws InputError naming the path if it is missing or unreadable.
std::string read_file(const fs::path& path, std::string_view what = "file");

// True for the temporary names write_file_atomic uses (<file>.tmp.<pid>.<n>).
bool is_atomic_temp_name(const std::string& name);

// Removes the temporary files that write_file_atomic calls of a killed process left in
// `dir` (only call it while no other process writes there). Returns how many.
int remove_stale_temp_files(const fs::path& dir);

// Creates a directory (and parents). Throws RunError naming the path on failure.
void ensure_directory(const fs::path& path);

// Append-only JSON-lines log. Each record is written with one write() of the whole line
// followed by fdatasync; opening an existing log drops a torn last line left by a crash.
class JsonlLog {
 public:
  JsonlLog() = default;
  explicit JsonlLog(const fs::path& path);
  JsonlLog(const JsonlLog&) = delete;
  JsonlLog& operator=(const JsonlLog&) = delete;
  JsonlLog(JsonlLog&& other) noexcept;
  JsonlLog& operator=(JsonlLog&& other) noexcept;
  ~JsonlLog();

  // Throws RunError naming the path when the line cannot be written and synced (disk
  // full); a partly written line is cut off again.
  void append(const nlohmann::json& record);
  // Bytes in the log now (every record appended so far is complete).
  uint64_t size() const;
  bool is_open() const { return fd_ >= 0; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  int fd_ = -1;
};

// Keeps only the complete lines of a JSON-lines file (used on open and on resume).
void repair_jsonl(const fs::path& path);

// Cuts a log back to its first `size` bytes (no-op if it is not longer): on resume the
// records written after the last checkpoint describe work that is done again.
void truncate_jsonl(const fs::path& path, uint64_t size);

}  // namespace cts
