// `cts report DIR`: for a run folder or a sweep folder, the plots (PNG, drawn by
// tools/plot_report.py with matplotlib) and report.md, a markdown summary linking them.
// `cts report SWEEP1 SWEEP2 ... --out DIR`: several sweeps (e.g. a coreset sweep, a core
// tokenset sweep and the baselines) in common plots, each sweep's table in DIR/report.md.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace cts {

struct ReportResult {
  std::filesystem::path markdown_path;
  std::vector<std::string> plots;
};

// Where tools/plot_report.py is: $CTS_TOOLS_DIR, else the source tree cts was built from.
std::filesystem::path plot_script();

// InputError if `dir` is neither a run (metrics.json) nor a sweep (sweep.csv + sweep.json);
// RunError naming the missing package if the plotting script fails.
// `python`: empty = $CTS_PYTHON, else /usr/bin/python3 (Debian, where python3-matplotlib is), else python3.
ReportResult write_report(const std::filesystem::path& dir, const std::string& python = "");

// InputError if `sweeps` has fewer than two folders, one is not a sweep folder, or `out` is
// one of them. Curves are labelled "<sweep folder name>: <other axes>"; sweeps without axes
// (baselines) are drawn as horizontal lines.
ReportResult write_comparison_report(const std::vector<std::filesystem::path>& sweeps, const std::filesystem::path& out,
                                     const std::string& python = "");

}  // namespace cts
