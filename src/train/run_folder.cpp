// Run folder: location, lock, config.yaml with the config's name, log cut on resume.
#include "cts/train/run_folder.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"

namespace cts {
namespace {
// The first line of a run folder's config.yaml names the config (a YAML comment).
constexpr const char* kConfigNameLine = "# cts run: ";
}  // namespace

std::filesystem::path run_directory(const Config& config, const std::filesystem::path& out_dir, const std::filesystem::path& resume_dir) {
  if (!resume_dir.empty()) return resume_dir;
  if (!out_dir.empty()) return out_dir;
  if (!config.output.dir.empty()) return config.output.dir;
  return std::filesystem::path("runs") / config.name;
}

RunFolderLock::RunFolderLock(const std::filesystem::path& dir) {
  const auto path = dir / ".lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_run("cannot create {}: {} (is the run folder writable?)", path.string(), std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    const ssize_t n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
    ::close(fd_);
    fd_ = -1;
    throw_input("{} is in use by another cts process{}; wait for it to finish or stop it first", dir.string(),
                n > 0 ? fmt::format(" (pid {})", std::string(buf, size_t(n))) : std::string());
  }
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for the message above; the lock itself holds.
  }
}

RunFolderLock& RunFolderLock::operator=(RunFolderLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

RunFolderLock::~RunFolderLock() { release(); }

void RunFolderLock::release() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void write_run_config(const std::filesystem::path& dir, const Config& config) {
  write_file_atomic(dir / "config.yaml", fmt::format("{}{}\n{}", kConfigNameLine, config.name, config_to_yaml(config)));
}

std::string saved_config_name(const std::filesystem::path& dir, const std::string& fallback) {
  const auto config_yaml = dir / "config.yaml";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config_yaml, ec)) return fallback;
  const std::string text = read_file(config_yaml, "config file");
  const std::string prefix = kConfigNameLine;
  if (text.rfind(prefix, 0) != 0) return fallback;
  const size_t end = text.find('\n');
  const std::string name = text.substr(prefix.size(), end == std::string::npos ? std::string::npos : end - prefix.size());
  return name.empty() ? fallback : name;
}

nlohmann::json cut_log_to_checkpoint(const std::filesystem::path& log, int64_t bytes) {
  nlohmann::json dropped = nlohmann::json::array();
  std::error_code ec;
  if (bytes < 0 || !std::filesystem::is_regular_file(log, ec)) return dropped;
  repair_jsonl(log);
  const std::string text = read_file(log, "log");
  if (text.size() <= size_t(bytes)) return dropped;
  std::istringstream tail(text.substr(size_t(bytes)));
  std::string line;
  while (std::getline(tail, line)) {
    try {
      dropped.push_back(nlohmann::json::parse(line).value("event", "?"));
    } catch (const std::exception&) {
      dropped.push_back("?");
    }
  }
  truncate_jsonl(log, uint64_t(bytes));
  return dropped;
}

}  // namespace cts
