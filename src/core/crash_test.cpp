// CTS_TEST_KILL_AT: deterministic self-inflicted crashes for the kill-and-resume tests.
#include "cts/core/crash_test.hpp"

#include <csignal>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace cts {
namespace {

struct KillSpec {
  bool enabled = false;
  std::string point;
  long long count = 0;
  std::vector<int> signals{SIGKILL};
};

int signal_number(const std::string& name) {
  if (name == "KILL") return SIGKILL;
  if (name == "TERM") return SIGTERM;
  if (name == "INT") return SIGINT;
  return 0;
}

KillSpec read_spec() {
  KillSpec s;
  const char* at = std::getenv("CTS_TEST_KILL_AT");
  if (!at || !*at) return s;
  const std::string text = at;
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return s;
  try {
    s.count = std::stoll(text.substr(colon + 1));
  } catch (const std::exception&) {
    return s;
  }
  if (s.count < 1) return s;
  s.point = text.substr(0, colon);
  if (const char* sig = std::getenv("CTS_TEST_KILL_SIGNAL"); sig && *sig) {
    s.signals.clear();
    std::string list = sig;
    size_t start = 0;
    while (start <= list.size()) {
      const size_t comma = list.find(',', start);
      const int n = signal_number(list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (n == 0) return KillSpec{};
      s.signals.push_back(n);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  s.enabled = true;
  return s;
}

const KillSpec& spec() {
  static const KillSpec s = read_spec();
  return s;
}

}  // namespace

bool crash_points_enabled() { return spec().enabled; }

void crash_point(std::string_view point) {
  const KillSpec& s = spec();
  if (!s.enabled || point != s.point) return;
  static std::mutex mutex;
  static long long visits = 0;
  std::lock_guard<std::mutex> lock(mutex);
  if (++visits != s.count) return;
  for (int sig : s.signals) std::raise(sig);
}

}  // namespace cts
