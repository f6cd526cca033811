// The one shared helper header of the test suite (tests/unit/<part>/ mirrors src/<part>/):
// temporary folders, files, JSON, error messages, binary formats written by hand, a tiny ViT,
// running the cts binary and Python.
#pragma once
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cts/core/error.hpp"
#include "cts/models/vit.hpp"

extern char** environ;

namespace cts::test {

// A fresh temporary folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    auto base = std::filesystem::temp_directory_path() / "cts-tests";
    std::filesystem::create_directories(base);
    std::string tmpl = (base / "XXXXXX").string();
    char* made = mkdtemp(tmpl.data());
    if (!made) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_text(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out << text;
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline nlohmann::json read_json(const std::filesystem::path& p) { return nlohmann::json::parse(read_text(p)); }

// The message of the InputError f() throws; "<accepted>" when f() throws nothing, and
// "<not an InputError: ...>" for any other exception.
template <class F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not an InputError: ") + e.what() + ">";
  }
  return "<accepted>";
}

// Binary formats by hand: big-endian 32 bit (idx headers), little-endian 64 bit (safetensors
// header length), an idx file of unsigned bytes (data as bytes or values).
inline std::string be32(uint32_t v) { return {char(v >> 24), char((v >> 16) & 255), char((v >> 8) & 255), char(v & 255)}; }
inline std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xFF);
  return s;
}
inline std::string idx_bytes(const std::vector<uint32_t>& dims, const std::string& data) {
  std::string s{char(0), char(0), char(8), char(dims.size())};
  for (auto d : dims) s += be32(d);
  return s + data;
}
inline std::string idx_file(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  return idx_bytes(dims, std::string(data.begin(), data.end()));
}

// A small ViT: 16 px RGB, patch 4 (16 tokens), D 32, 2 blocks of 4 heads, 5 classes.
inline ViTConfig tiny_vit_config() {
  ViTConfig c = vit_preset("vit_nano_patch4_28");
  c.img_size = 16, c.patch_size = 4, c.in_chans = 3, c.embed_dim = 32, c.depth = 2, c.num_heads = 4, c.num_classes = 5;
  return c;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

// Runs a shell command, capturing its output.
inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline CommandResult run_cts(const std::string& args) { return run_command(std::string(CTS_BINARY) + " " + args); }

// A child process without a shell: `argv` (argv[0] looked up in PATH) with this process's
// environment minus CTS_TEST_* hooks and the variables named in `unset`, plus `env`; stdout
// and stderr go to `log`. wait_child reports exactly how it ended (a shell would blur a signal).
struct ChildEnd {
  bool killed_by_signal = false;
  int signal = 0;
  int exit_code = -1;
  std::string output;  // the log's contents
};
inline pid_t start_child(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& env,
                         const std::filesystem::path& log, const std::vector<std::string>& unset = {}) {
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    bool drop = kv.rfind("CTS_TEST_", 0) == 0;
    for (const auto& u : unset) drop = drop || kv.rfind(u + "=", 0) == 0;
    if (!drop) env_s.push_back(kv);
  }
  for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
  std::vector<std::string> argv_s = argv;
  std::vector<char*> args, envp;
  for (auto& a : argv_s) args.push_back(a.data());
  args.push_back(nullptr);
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) ::dup2(fd, 1), ::dup2(fd, 2);
    ::execvpe(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}
inline ChildEnd wait_child(pid_t pid, const std::filesystem::path& log) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  ChildEnd c;
  if (WIFSIGNALED(status)) c.killed_by_signal = true, c.signal = WTERMSIG(status);
  if (WIFEXITED(status)) c.exit_code = WEXITSTATUS(status);
  c.output = read_text(log);
  return c;
}

inline std::string source_dir() { return CTS_SOURCE_DIR; }

// True if Debian's python3 with torch is usable for reference computations.
inline bool python_torch_available() {
  static int cached = -1;
  if (cached < 0) cached = run_command(std::string(CTS_PYTHON) + " -c 'import torch, numpy'").exit_code == 0 ? 1 : 0;
  return cached == 1;
}

inline CommandResult run_python(const std::string& script, const std::string& args) {
  return run_command(std::string(CTS_PYTHON) + " " + source_dir() + "/tests/python/" + script + " " + args);
}


// ---------------------------------------------------------------- hostile inputs
// Expects an InputError whose message holds every one of `parts`.
inline void expect_error(const std::string& what, const std::function<void()>& f, const std::vector<std::string>& parts) {
  const std::string msg = input_error(f);
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << what << ": '" << p << "' missing from: " << msg;
}

inline std::string gzip(const std::string& content) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, uLong(content.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(content.data()));
  z.avail_in = uInt(content.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// Truncation at every length (or a sample of lengths for long files) and seeded 1-4 byte
// flips: each variant is parsed, and anything but success or InputError fails the test.
inline void sweep(const std::string& what, const std::string& good, const std::function<void(const std::string&)>& parse) {
  const auto t0 = std::chrono::steady_clock::now();
  std::mt19937_64 rng(std::hash<std::string>{}(what));
  int accepted = 0, rejected = 0;
  auto one = [&](const std::string& bytes, const std::string& variant) {
    const std::string r = input_error([&] { parse(bytes); });
    if (r == "<accepted>") ++accepted;
    else if (r.rfind("<not an InputError", 0) == 0) ADD_FAILURE() << what << ", " << variant << ": " << r;
    else ++rejected;
  };
  const size_t step = std::max<size_t>(1, good.size() / 300);
  for (size_t n = 0; n < good.size(); n += step) one(good.substr(0, n), fmt::format("truncated to {} bytes", n));
  for (int i = 0; i < 2000; ++i) {
    std::string m = good;
    const int flips = 1 + int(rng() % 4);
    std::string desc = "flipped";
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % m.size();
      const char v = char(rng() & 0xFF);
      m[at] = v;
      desc += fmt::format(" [{}]={:02x}", at, static_cast<unsigned char>(v));
    }
    one(m, desc);
  }
  EXPECT_GT(rejected, 0) << what;  // the sweep reached the checks
  ::testing::Test::RecordProperty(what + "_accepted", accepted);
  ::testing::Test::RecordProperty(what + "_ms", int(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()));
}

// An in-memory file (memfd) reachable by path, so the file-based parsers read each variant
// without touching the disk.
class MemFile {
 public:
  MemFile() : fd_(::memfd_create("cts-hostile", MFD_CLOEXEC)) {
    if (fd_ < 0) throw std::runtime_error("memfd_create failed");
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  const std::filesystem::path& set(const std::string& bytes) {
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, bytes.data(), bytes.size(), 0) != ssize_t(bytes.size())) throw std::runtime_error("memfd write failed");
    return path_;
  }

 private:
  int fd_;
  std::filesystem::path path_;
};


}  // namespace cts::test
