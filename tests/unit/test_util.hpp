// Shared helpers for the test suite: temporary folders, running the cts binary, Python.
#pragma once
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

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

}  // namespace cts::test
