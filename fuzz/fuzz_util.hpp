// Shared pieces of the libFuzzer targets: inputs reach the file-based parsers through an
// in-memory file (memfd, opened by path like any file), and the only accepted way for a
// parser to refuse an input is cts::InputError. Any other exception escapes the target
// and libFuzzer reports it as a crash (with the input), like ASan/UBSan findings.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "cts/core/error.hpp"

namespace cts::fuzz {

class MemFile {
 public:
  MemFile() : fd_(::memfd_create("cts-fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0) throw std::runtime_error("memfd_create failed");
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  const std::filesystem::path& set(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0) throw std::runtime_error("memfd truncate failed");
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) throw std::runtime_error("memfd write failed");
      done += static_cast<size_t>(n);
    }
    return path_;
  }

 private:
  int fd_;
  std::filesystem::path path_;
};

// Runs f; an InputError is the parser doing its job, anything else propagates.
template <class F>
void input_errors_only(F&& f) {
  try {
    f();
  } catch (const cts::InputError&) {
  }
}

// One intra-op thread: libtorch's pool would only add noise to a parser's profile.
inline void init_torch() { torch::set_num_threads(1); }

}  // namespace cts::fuzz
