// Run and sweep reports: plots through tools/plot_report.py, and report.md.
#include "cts/report/report.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"
#include "cts/core/launcher.hpp"
#include "cts/report/sweep.hpp"

#ifndef CTS_TOOLS_DIR_DEFAULT
#define CTS_TOOLS_DIR_DEFAULT "tools"
#endif

namespace cts {
namespace {

// Runs tools/plot_report.py with `args`; returns what it printed (one written file per line).
std::string run_plot_script(const std::string& python, const std::vector<std::string>& args) {
  namespace fs = std::filesystem;
  std::string py = python;
  if (py.empty()) {
    // Debian's python3 is where python3-matplotlib installs; a python3 earlier on PATH
    // (pyenv, venv) usually lacks it. $CTS_PYTHON overrides.
    const char* env = std::getenv("CTS_PYTHON");
    py = env && *env ? env : (fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
  }
  const auto script = plot_script();
  if (!fs::exists(script)) throw_input("{}: the plotting script is missing (set CTS_TOOLS_DIR to the tools/ folder of the cts sources)", script.string());
  std::vector<std::string> argv = {py, script.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessOutput r;
  try {
    r = run_and_capture(argv);
  } catch (const RunError& e) {
    throw_run("cts report: {} (it needs python3 with matplotlib: apt-get install python3-matplotlib)", e.what());
  }
  if (r.exit_code != 0) {
    throw_run("cts report: the plotting script failed (it needs python3 with matplotlib: apt-get install python3-matplotlib):\n{}", r.output);
  }
  return r.output;
}

// The PNG paths printed by the script, as markdown image links relative to `base`.
std::string plot_links(const std::string& out, const std::filesystem::path& base, std::vector<std::string>& plots) {
  std::string md;
  size_t pos = 0;
  while (pos < out.size()) {
    auto end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    std::string line = out.substr(pos, end - pos);
    pos = end + 1;
    if (line.size() < 4 || line.substr(line.size() - 4) != ".png") continue;
    plots.push_back(line);
    auto rel = std::filesystem::relative(std::filesystem::path(line), base).string();
    md += fmt::format("![{}]({})\n\n", std::filesystem::path(line).stem().string(), rel);
  }
  return md;
}

bool is_sweep_folder(const std::filesystem::path& dir) {
  return std::filesystem::exists(dir / "sweep.csv") && std::filesystem::exists(dir / "sweep.json");
}

std::string sweep_markdown(const std::filesystem::path& dir, const std::string& heading) {
  auto spec = nlohmann::json::parse(read_file(dir / "sweep.json"));
  std::vector<GridAxis> axes;
  for (const auto& a : spec["axes"]) axes.push_back({a["key"].get<std::string>(), a["values"].get<std::vector<std::string>>()});
  return heading + std::filesystem::absolute(dir).lexically_normal().filename().string() + "\n\n" +
         summarize_sweep(dir, axes, spec["seeds"].get<std::vector<int64_t>>());
}

}  // namespace

std::filesystem::path plot_script() {
  const char* env = std::getenv("CTS_TOOLS_DIR");
  return std::filesystem::path(env && *env ? env : CTS_TOOLS_DIR_DEFAULT) / "plot_report.py";
}

ReportResult write_report(const std::filesystem::path& dir, const std::string& python) {
  namespace fs = std::filesystem;
  const bool sweep = is_sweep_folder(dir);
  const bool run = fs::exists(dir / "metrics.json");
  if (!sweep && !run) throw_input("{}: neither a run folder (metrics.json) nor a sweep folder (sweep.csv, sweep.json)", dir.string());
  std::string md;
  if (sweep) {
    md = sweep_markdown(dir, "# Sweep ");
  } else {
    md = fs::exists(dir / "summary.md") ? read_file(dir / "summary.md") : std::string("# Run\n");
  }
  const std::string out = run_plot_script(python, {dir.string()});
  ReportResult r;
  md += "\n## Plots\n\n" + plot_links(out, dir, r.plots);
  r.markdown_path = dir / "report.md";
  write_file_atomic(r.markdown_path, md);
  return r;
}

ReportResult write_comparison_report(const std::vector<std::filesystem::path>& sweeps, const std::filesystem::path& out,
                                     const std::string& python) {
  namespace fs = std::filesystem;
  if (sweeps.size() < 2) throw_input("cts report: --out compares two or more sweep folders; for one folder leave --out away");
  std::vector<std::string> args{"--compare", out.string()};
  std::string md = "# Comparison\n\nSweeps: ";
  for (size_t i = 0; i < sweeps.size(); ++i) {
    const auto& d = sweeps[i];
    if (!is_sweep_folder(d)) {
      throw_input("{}: not a sweep folder (sweep.csv, sweep.json); cts report compares only sweeps (a single run: cts sweep CONFIG --seeds 0)", d.string());
    }
    if (fs::exists(out) && fs::equivalent(d, out)) throw_input("{}: --out must not be one of the compared sweep folders", out.string());
    args.push_back(d.string());
    md += (i ? ", " : "") + fmt::format("`{}`", d.string());
  }
  fs::create_directories(out);
  const std::string printed = run_plot_script(python, args);
  ReportResult r;
  md += "\n\n## Plots\n\n" + plot_links(printed, out, r.plots);
  for (const auto& d : sweeps) md += sweep_markdown(d, "## ") + "\n";
  r.markdown_path = out / "report.md";
  write_file_atomic(r.markdown_path, md);
  return r;
}

}  // namespace cts
