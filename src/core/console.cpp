// Console: timestamped logs and TTY-aware progress.
#include "cts/core/console.hpp"

#include <unistd.h>

#include <cstdio>
#include <ctime>

namespace cts {
namespace {
std::string clock_text() {
  std::time_t t = std::time(nullptr);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", std::localtime(&t));
  return buf;
}
std::string eta_text(double seconds) {
  if (!(seconds >= 0) || seconds > 360000) return "?";
  const int s = static_cast<int>(seconds + 0.5);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60) : fmt::format("{}:{:02}", s / 60, s % 60);
}
}  // namespace

ProgressMode parse_progress_mode(const std::string& name) {
  if (name == "bar") return ProgressMode::Bar;
  if (name == "lines") return ProgressMode::Lines;
  if (name == "none") return ProgressMode::None;
  return ::isatty(STDERR_FILENO) ? ProgressMode::Bar : ProgressMode::Lines;
}

Console& Console::get() {
  static Console console;
  return console;
}

void Console::set_mode(ProgressMode mode, double line_seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  mode_ = mode;
  line_seconds_ = line_seconds;
}

void Console::clear_bar() {
  if (bar_visible_) {
    std::fputs("\r\033[2K", stderr);
    bar_visible_ = false;
  }
}

void Console::log(const std::string& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (quiet_) return;
  clear_bar();
  std::fprintf(stderr, "[%s] %s\n", clock_text().c_str(), text.c_str());
  std::fflush(stderr);
}

void Console::progress_begin(const std::string& label, int64_t total) {
  std::lock_guard<std::mutex> lock(mutex_);
  label_ = label;
  total_ = total;
  start_ = last_line_ = last_draw_ = std::chrono::steady_clock::now();
}

void Console::progress_update(int64_t done, const std::string& status) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (quiet_ || mode_ == ProgressMode::None) return;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double eta = done > 0 ? elapsed * double(total_ - done) / double(done) : -1;
  if (mode_ == ProgressMode::Bar) {
    if (std::chrono::duration<double>(now - last_draw_).count() < 0.1 && done < total_) return;
    last_draw_ = now;
    const int width = 24;
    const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : 0;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r\033[2K%s [%s] %3d%% %lld/%lld %s eta %s", label_.c_str(), bar.c_str(),
                 total_ > 0 ? static_cast<int>(100 * done / total_) : 0, static_cast<long long>(done), static_cast<long long>(total_),
                 status.c_str(), eta_text(eta).c_str());
    std::fflush(stderr);
    bar_visible_ = true;
    return;
  }
  if (std::chrono::duration<double>(now - last_line_).count() < line_seconds_) return;
  last_line_ = now;
  std::fprintf(stderr, "[%s] %s %lld/%lld (%d%%) %s eta %s\n", clock_text().c_str(), label_.c_str(), static_cast<long long>(done),
               static_cast<long long>(total_), total_ > 0 ? static_cast<int>(100 * done / total_) : 0, status.c_str(), eta_text(eta).c_str());
  std::fflush(stderr);
}

void Console::progress_end(const std::string& status) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    clear_bar();
  }
  if (!status.empty()) log(label_ + " " + status);
}

}  // namespace cts
