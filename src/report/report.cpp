// Run and sweep reports: plots through tools/plot_report.py, and report.md.
#include "cts/report/report.hpp"

#include <fmt/format.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"
#include "cts/report/sweep.hpp"

#ifndef CTS_TOOLS_DIR_DEFAULT
#define CTS_TOOLS_DIR_DEFAULT "tools"
#endif

namespace cts {
namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::filesystem::path plot_script() {
  const char* env = std::getenv("CTS_TOOLS_DIR");
  return std::filesystem::path(env && *env ? env : CTS_TOOLS_DIR_DEFAULT) / "plot_report.py";
}

ReportResult write_report(const std::filesystem::path& dir, const std::string& python) {
  namespace fs = std::filesystem;
  const bool sweep = fs::exists(dir / "sweep.csv") && fs::exists(dir / "sweep.json");
  const bool run = fs::exists(dir / "metrics.json");
  if (!sweep && !run) throw_input("{}: neither a run folder (metrics.json) nor a sweep folder (sweep.csv, sweep.json)", dir.string());
  std::string md;
  if (sweep) {
    auto spec = nlohmann::json::parse(read_file(dir / "sweep.json"));
    std::vector<GridAxis> axes;
    for (const auto& a : spec["axes"]) axes.push_back({a["key"].get<std::string>(), a["values"].get<std::vector<std::string>>()});
    md = "# Sweep " + fs::absolute(dir).filename().string() + "\n\n" + summarize_sweep(dir, axes, spec["seeds"].get<std::vector<int64_t>>());
  } else {
    md = fs::exists(dir / "summary.md") ? read_file(dir / "summary.md") : std::string("# Run\n");
  }
  std::string py = python;
  if (py.empty()) {
    // Debian's python3 is where python3-matplotlib installs; a python3 earlier on PATH
    // (pyenv, venv) usually lacks it. $CTS_PYTHON overrides.
    const char* env = std::getenv("CTS_PYTHON");
    py = env && *env ? env : (fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
  }
  const auto script = plot_script();
  if (!fs::exists(script)) throw_input("{}: the plotting script is missing (set CTS_TOOLS_DIR to the tools/ folder of the cts sources)", script.string());
  const std::string cmd = shell_quote(py) + " " + shell_quote(script.string()) + " " + shell_quote(dir.string()) + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw_run("cts report: cannot run {}", py);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw_run("cts report: the plotting script failed (it needs python3 with matplotlib: apt-get install python3-matplotlib):\n{}", out);
  }
  ReportResult r;
  md += "\n## Plots\n\n";
  size_t pos = 0;
  while (pos < out.size()) {
    auto end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    std::string line = out.substr(pos, end - pos);
    pos = end + 1;
    if (line.size() < 4 || line.substr(line.size() - 4) != ".png") continue;
    r.plots.push_back(line);
    auto rel = fs::relative(fs::path(line), dir).string();
    md += fmt::format("![{}]({})\n\n", fs::path(line).stem().string(), rel);
  }
  r.markdown_path = dir / "report.md";
  write_file_atomic(r.markdown_path, md);
  return r;
}

}  // namespace cts
