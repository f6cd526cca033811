// Console output of a run: log lines with a timestamp, and progress either as a bar
// redrawn in place (on a terminal) or as a plain line every few seconds (logs, CI).
#pragma once
#include <fmt/format.h>

#include <chrono>
#include <mutex>
#include <string>

namespace cts {

enum class ProgressMode { Bar, Lines, None };

// auto -> Bar if stderr is a terminal, else Lines.
ProgressMode parse_progress_mode(const std::string& name);

class Console {
 public:
  static Console& get();
  void set_mode(ProgressMode mode, double line_seconds);
  void set_quiet(bool quiet) { quiet_ = quiet; }
  ProgressMode mode() const { return mode_; }

  // A timestamped line on stderr (clears a progress bar first).
  void log(const std::string& text);
  template <typename... Args>
  void info(fmt::format_string<Args...> f, Args&&... args) {
    log(fmt::format(f, std::forward<Args>(args)...));
  }

  // Progress of a phase: `done` of `total` units, with a short status text.
  void progress_begin(const std::string& label, int64_t total);
  void progress_update(int64_t done, const std::string& status);
  void progress_end(const std::string& status);

 private:
  void clear_bar();
  std::mutex mutex_;
  ProgressMode mode_ = ProgressMode::Lines;
  double line_seconds_ = 10.0;
  bool quiet_ = false;
  bool bar_visible_ = false;
  std::string label_;
  int64_t total_ = 0;
  std::chrono::steady_clock::time_point start_, last_line_, last_draw_;
};

}  // namespace cts
