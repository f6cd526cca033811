// Atomic whole-file writes and crash-safe JSON-lines logging (POSIX).
#include "cts/core/fs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cts/core/crash_test.hpp"
#include "cts/core/error.hpp"

namespace cts {
namespace {

std::string errno_text() { return std::strerror(errno); }

void write_all(int fd, const char* data, size_t size, const fs::path& path) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_run("cannot write {}: {} (is the disk full or the folder read-only?)", path.string(), errno_text());
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
}

void fsync_directory(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some filesystems do not allow it
  ::fsync(fd);
  ::close(fd);
}

std::atomic<uint64_t> temp_counter{0};

}  // namespace

void write_file_atomic(const fs::path& path, std::string_view data) {
  const fs::path dir = path.parent_path();
  const fs::path tmp = path.string() + fmt::format(".tmp.{}.{}", ::getpid(), temp_counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw_run("cannot create {}: {} (check that {} exists and is writable)", tmp.string(), errno_text(),
              dir.empty() ? std::string(".") : dir.string());
  }
  try {
    write_all(fd, data.data(), data.size(), path);
    if (::fsync(fd) != 0) throw_run("cannot flush {}: {}", path.string(), errno_text());
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw_run("cannot close {}: {}", path.string(), errno_text());
  }
  if (crash_points_enabled()) crash_point("rename:" + path.filename().string());
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw_run("cannot move {} into place: {}", path.string(), why);
  }
  fsync_directory(dir);
}

std::string read_file(const fs::path& path, std::string_view what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw_input("{} not found: {}", what, path.string());
  if (fs::is_directory(path, ec)) throw_input("{} {} is a directory, expected a file", what, path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input("cannot open {} {}: {}", what, path.string(), errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw_input("cannot read {} {}", what, path.string());
  return ss.str();
}

bool is_atomic_temp_name(const std::string& name) {
  // <file>.tmp.<pid>.<counter>, as write_file_atomic names them.
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at == 0) return false;
  const std::string tail = name.substr(at + 5);
  const size_t dot = tail.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == tail.size()) return false;
  for (size_t i = 0; i < tail.size(); ++i)
    if (i != dot && !std::isdigit(static_cast<unsigned char>(tail[i]))) return false;
  return true;
}

int remove_stale_temp_files(const fs::path& dir) {
  int removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file(ec) || !is_atomic_temp_name(entry.path().filename().string())) continue;
    if (fs::remove(entry.path(), ec)) ++removed;
  }
  return removed;
}

void ensure_directory(const fs::path& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec || !fs::is_directory(path)) {
    throw_run("cannot create folder {}: {}", path.string(), ec ? ec.message() : std::string("not a folder"));
  }
}

void repair_jsonl(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  const std::string text = read_file(path, "log");
  const size_t last = text.find_last_of('\n');
  const size_t keep = last == std::string::npos ? 0 : last + 1;
  if (keep == text.size()) return;
  if (::truncate(path.c_str(), static_cast<off_t>(keep)) != 0) {
    throw_run("cannot repair torn log {}: {}", path.string(), errno_text());
  }
}

JsonlLog::JsonlLog(const fs::path& path) : path_(path) {
  repair_jsonl(path);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_run("cannot open log {}: {}", path.string(), errno_text());
}

JsonlLog::JsonlLog(JsonlLog&& other) noexcept : path_(std::move(other.path_)), fd_(other.fd_) { other.fd_ = -1; }

JsonlLog& JsonlLog::operator=(JsonlLog&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

JsonlLog::~JsonlLog() {
  if (fd_ >= 0) ::close(fd_);
}

void JsonlLog::append(const nlohmann::json& record) {
  if (fd_ < 0) return;
  std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  const off_t before = ::lseek(fd_, 0, SEEK_END);
  try {
    write_all(fd_, line.data(), line.size(), path_);
    if (::fdatasync(fd_) != 0 && errno != EINVAL) throw_run("cannot flush {}: {} (is the disk full?)", path_.string(), errno_text());
  } catch (...) {
    // A partly written line (disk full) is cut off again: the log keeps whole records only.
    if (before >= 0 && ::ftruncate(fd_, before) != 0) {
      // Nothing more can be done here; the next open drops the torn line (repair_jsonl).
    }
    throw;
  }
}

uint64_t JsonlLog::size() const {
  if (fd_ < 0) return 0;
  struct stat st;
  if (::fstat(fd_, &st) != 0) throw_run("cannot stat log {}: {}", path_.string(), errno_text());
  return static_cast<uint64_t>(st.st_size);
}

void truncate_jsonl(const fs::path& path, uint64_t size) {
  std::error_code ec;
  const uintmax_t have = fs::file_size(path, ec);
  if (ec || have <= size) return;
  if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0) {
    throw_run("cannot truncate log {} to {} bytes: {}", path.string(), size, errno_text());
  }
}

}  // namespace cts
