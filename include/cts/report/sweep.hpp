// `cts sweep`: the cross product of config settings (× seeds) as one run folder per cell,
// resumable (finished runs are skipped, interrupted ones resumed from their checkpoint), run
// by N worker processes; then sweep.csv (one row per run) and sweep.md (mean ± std over seeds).
#pragma once
#include <atomic>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace cts {

struct GridAxis {
  std::string key;                  // a config key, e.g. memory.retention
  std::vector<std::string> values;  // as written after key=
};

// "key=v1,v2,..." -> axis; InputError for a malformed spec.
GridAxis parse_grid_axis(const std::string& spec);

struct SweepCell {
  std::vector<std::pair<std::string, std::string>> settings;  // key, value (axis order)
  std::string name;                                           // folder name, e.g. "strategy-coreset_retention-0.1"
};

// The cross product, first axis varying slowest. Folder names use the last key component
// (the full key where two axes share it) and keep only [A-Za-z0-9.-].
std::vector<SweepCell> expand_grid(const std::vector<GridAxis>& axes);

struct SweepOptions {
  std::filesystem::path config;     // base config
  std::vector<std::string> sets;    // --set overrides applied to every cell
  std::vector<GridAxis> axes;
  std::vector<int64_t> seeds;       // empty: the config's seed only
  int64_t jobs = 1;
  std::filesystem::path out;        // default: runs/<config stem>-sweep
  std::filesystem::path executable;  // the cts binary the runs use
  bool summarize_only = false;       // start nothing: tables from the runs finished so far
  // Hand the cells to a scheduler instead of running them here: write one shell command per
  // unfinished run (new, or --resume of an interrupted one) to `commands_file`, and, if set,
  // a Slurm array script running line $SLURM_ARRAY_TASK_ID + 1 of it. `launcher` prefixes
  // every command (e.g. "torchrun --nproc_per_node 4 --no_python" for data-parallel cells).
  std::filesystem::path commands_file;
  std::filesystem::path slurm_script;
  std::string launcher;
};

struct SweepRun {
  SweepCell cell;
  int64_t seed = 0;
  std::filesystem::path dir;
  std::string status;  // done | failed | skipped (already done) | not run | handed out (written for a scheduler)
};

// Validates every cell's config first (InputError before anything runs), then runs what is
// not finished. Returns every run with its status; writes sweep.csv and sweep.md in `out`.
std::vector<SweepRun> run_sweep(const SweepOptions& options, const std::atomic<bool>* stop = nullptr);

// A word for a POSIX shell command line: as is when it is made of safe characters, else in
// single quotes (a quote inside as '\'').
std::string shell_quote(const std::string& word);

// Reads the run folders of a sweep (out/<cell>/seed-<s>) and writes sweep.csv and sweep.md.
// Returns the markdown table.
std::string summarize_sweep(const std::filesystem::path& out, const std::vector<GridAxis>& axes, const std::vector<int64_t>& seeds);

// A run folder is finished when its metrics.json says tasks_done == num_tasks.
bool run_finished(const std::filesystem::path& run_dir);

}  // namespace cts
