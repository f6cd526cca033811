// Sweeps: grid expansion, worker processes running `cts run`, and the summary tables.
#include "cts/report/sweep.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cts/config/config.hpp"
#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"
#include "cts/core/launcher.hpp"
#include "cts/core/console.hpp"


namespace cts {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    auto next = s.find(sep, pos);
    out.push_back(s.substr(pos, next == std::string::npos ? std::string::npos : next - pos));
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return out;
}

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '-';
  return out;
}

std::string seed_dir(int64_t seed) { return fmt::format("seed-{}", seed); }

struct Stats {
  double mean = NAN, std = NAN;
  int64_t n = 0;
};

Stats stats(const std::vector<double>& v) {
  Stats s;
  std::vector<double> x;
  for (double d : v)
    if (std::isfinite(d)) x.push_back(d);
  s.n = int64_t(x.size());
  if (x.empty()) return s;
  double sum = 0;
  for (double d : x) sum += d;
  s.mean = sum / double(x.size());
  if (x.size() > 1) {
    double ss = 0;
    for (double d : x) ss += (d - s.mean) * (d - s.mean);
    s.std = std::sqrt(ss / double(x.size() - 1));
  }
  return s;
}

double number(const nlohmann::json& j, const char* key) { return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN; }

std::string csv_num(double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : ""; }

std::string pct(const Stats& s) {
  if (s.n == 0) return "–";
  if (s.n == 1 || !std::isfinite(s.std)) return fmt::format("{:.2f}", 100 * s.mean);
  return fmt::format("{:.2f} ± {:.2f}", 100 * s.mean, 100 * s.std);
}

bool is_number(const std::string& v) {
  try {
    size_t used = 0;
    std::stod(v, &used);
    return used == v.size();
  } catch (const std::exception&) {
    return false;
  }
}

// Final average accuracy as a table with the last numeric axis of two or more values as columns
// and the other varying axes as rows (the layout of the paper's Table 1); "" when no axis fits.
// `acc[i]` holds cell i's final accuracies (one per finished seed).
std::string pivot_markdown(const std::vector<GridAxis>& axes, const std::vector<SweepCell>& cells,
                           const std::vector<std::vector<double>>& acc, size_t num_seeds, const std::string& title) {
  int col = -1;
  for (size_t a = 0; a < axes.size(); ++a) {
    bool numeric = axes[a].values.size() > 1;
    for (const auto& v : axes[a].values) numeric = numeric && is_number(v);
    if (numeric) col = int(a);
  }
  if (col < 0) return "";
  std::vector<size_t> row_axes;
  for (size_t a = 0; a < axes.size(); ++a)
    if (int(a) != col && axes[a].values.size() > 1) row_axes.push_back(a);
  std::vector<std::string> row_names;
  std::map<std::string, std::map<std::string, std::string>> table;
  for (size_t i = 0; i < cells.size(); ++i) {
    std::string row;
    for (size_t a : row_axes) row += (row.empty() ? "" : ", ") + cells[i].settings[a].second;
    if (row.empty()) row = "all";
    if (!table.count(row)) row_names.push_back(row);
    const auto st = stats(acc[i]);
    std::string text = pct(st);
    if (st.n > 0 && size_t(st.n) < num_seeds) text += fmt::format(" (n = {})", st.n);
    table[row][cells[i].settings[size_t(col)].second] = text;
  }
  std::string head;
  for (size_t a : row_axes) head += (head.empty() ? "" : ", ") + axes[a].key;
  std::string md = fmt::format("\n{} (%), mean ± std over {} seed(s); \"(n = k)\": only k of them finished.\n\n| {} \\ {} |",
                               title, num_seeds, head.empty() ? std::string("runs") : head, axes[size_t(col)].key);
  for (const auto& v : axes[size_t(col)].values) md += " " + v + " |";
  md += "\n|---|";
  for (size_t k = 0; k < axes[size_t(col)].values.size(); ++k) md += "---|";
  md += "\n";
  for (const auto& r : row_names) {
    md += "| " + r + " |";
    for (const auto& v : axes[size_t(col)].values) md += " " + table[r][v] + " |";
    md += "\n";
  }
  return md;
}

}  // namespace

GridAxis parse_grid_axis(const std::string& spec) {
  auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
    throw_input("--grid {}: expected key=v1,v2,..., e.g. --grid memory.retention=0.01,0.1", spec);
  }
  GridAxis a;
  a.key = spec.substr(0, eq);
  a.values = split(spec.substr(eq + 1), ',');
  std::set<std::string> seen;
  for (const auto& v : a.values) {
    if (v.empty()) throw_input("--grid {}: empty value in the list", spec);
    if (!seen.insert(v).second) throw_input("--grid {}: value '{}' appears twice", spec, v);
  }
  return a;
}

std::vector<SweepCell> expand_grid(const std::vector<GridAxis>& axes) {
  std::map<std::string, int> last_count;
  for (const auto& a : axes) last_count[a.key.substr(a.key.rfind('.') + 1)]++;
  std::set<std::string> keys;
  for (const auto& a : axes)
    if (!keys.insert(a.key).second) throw_input("--grid {} is given twice", a.key);
  std::vector<SweepCell> cells(1);
  for (const auto& a : axes) {
    const std::string last = a.key.substr(a.key.rfind('.') + 1);
    const std::string label = last_count[last] > 1 ? a.key : last;
    std::vector<SweepCell> next;
    for (const auto& c : cells) {
      for (const auto& v : a.values) {
        SweepCell n = c;
        n.settings.emplace_back(a.key, v);
        n.name += (n.name.empty() ? "" : "_") + sanitize(label) + "-" + sanitize(v);
        next.push_back(n);
      }
    }
    cells = std::move(next);
  }
  if (cells.size() == 1 && cells[0].name.empty()) cells[0].name = "base";
  return cells;
}

bool run_finished(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir / "metrics.json", ec)) return false;
  try {
    auto j = nlohmann::json::parse(read_file(dir / "metrics.json"));
    return j.value("tasks_done", -1) >= 1 && j.value("tasks_done", -1) == j.value("num_tasks", -2);
  } catch (const std::exception&) {
    return false;
  }
}

std::string shell_quote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.,/:=+@%") == std::string::npos)
    return word;
  std::string q = "'";
  for (char c : word) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

namespace {

// cts sweep --commands / --slurm: the unfinished runs as shell commands (each line starts or
// resumes one run and appends its output to the run's .log, like a local sweep), plus a
// Slurm array script over those lines. Nothing runs here.
std::vector<SweepRun> hand_out(const SweepOptions& o, std::vector<SweepRun>& runs, const std::vector<int64_t>& seeds,
                               const std::function<std::vector<std::string>(const SweepRun&, bool)>& run_args) {
  std::string lines;
  int64_t n = 0;
  for (auto& r : runs) {
    if (run_finished(r.dir)) {
      r.status = "skipped";
      continue;
    }
    ensure_directory(r.dir.parent_path());
    std::string line = o.launcher.empty() ? "" : o.launcher + " ";
    const auto args = run_args(r, false);
    for (size_t i = 0; i < args.size(); ++i) line += (i ? " " : "") + shell_quote(args[i]);
    line += " >> " + shell_quote(std::filesystem::absolute(r.dir.parent_path() / (seed_dir(r.seed) + ".log")).lexically_normal().string()) + " 2>&1";
    lines += line + "\n";
    r.status = "handed out";
    ++n;
  }
  write_file_atomic(o.commands_file, lines);
  Console::get().info("sweep: {} commands in {} ({} runs already done)", n, o.commands_file.string(), int64_t(runs.size()) - n);
  if (!o.slurm_script.empty()) {
    if (n == 0) throw_input("cts sweep --slurm {}: every run of the sweep is finished; nothing to schedule", o.slurm_script.string());
    const std::string commands = std::filesystem::absolute(o.commands_file).string();
    const std::string script = fmt::format(
        "#!/bin/bash\n"
        "# cts sweep of {config}: one array task per line of {commands} (written by cts sweep --commands).\n"
        "# Submit: sbatch {self}   (add --cpus-per-task / --gres / --time as your cluster needs, here or on\n"
        "# the sbatch command line). A task that stops early keeps its checkpoint: run cts sweep --commands\n"
        "# again to write the commands of the unfinished runs (resumes), then resubmit. When all are done:\n"
        "#   cts sweep {config} ... --summarize-only --out {out}\n"
        "#SBATCH --job-name=cts-sweep\n"
        "#SBATCH --array=0-{last}\n"
        "#SBATCH --output={out}/slurm-%A_%a.out\n"
        "set -euo pipefail\n"
        "line=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {commands_q})\n"
        "[ -n \"$line\" ] || {{ echo \"no command for array task $SLURM_ARRAY_TASK_ID in {commands}\" >&2; exit 2; }}\n"
        "exec bash -c \"$line\"\n",
        fmt::arg("config", o.config.string()), fmt::arg("commands", commands), fmt::arg("commands_q", shell_quote(commands)),
        fmt::arg("self", o.slurm_script.string()), fmt::arg("last", n - 1), fmt::arg("out", std::filesystem::absolute(o.out).string()));
    write_file_atomic(o.slurm_script, script);
    std::filesystem::permissions(o.slurm_script, std::filesystem::perms::owner_exec | std::filesystem::perms::group_exec, std::filesystem::perm_options::add);
    Console::get().info("sweep: Slurm array script {} ({} tasks): sbatch {}", o.slurm_script.string(), n, o.slurm_script.string());
  }
  summarize_sweep(o.out, o.axes, seeds);
  return runs;
}

}  // namespace

std::vector<SweepRun> run_sweep(const SweepOptions& o, const std::atomic<bool>* stop) {
  auto& con = Console::get();
  if (o.jobs < 1) throw_input("cts sweep --jobs {}: accepted: >= 1", o.jobs);
  const auto cells = expand_grid(o.axes);
  std::vector<int64_t> seeds = o.seeds;
  if (seeds.empty()) seeds.push_back(load_config(o.config, o.sets).seed);
  // Validate every cell before anything runs.
  for (const auto& c : cells) {
    auto sets = o.sets;
    for (const auto& [k, v] : c.settings) sets.push_back(k + "=" + v);
    for (auto s : seeds) {
      auto with_seed = sets;
      with_seed.push_back(fmt::format("seed={}", s));
      load_config(o.config, with_seed);
    }
  }
  ensure_directory(o.out);
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const int64_t threads = std::max<int64_t>(1, int64_t(cores) / o.jobs);
  bool user_threads = false;
  for (const auto& s : o.sets) user_threads |= s.rfind("threads=", 0) == 0;

  std::vector<SweepRun> runs;
  for (const auto& c : cells) {
    for (auto s : seeds) runs.push_back({c, s, o.out / c.name / seed_dir(s), ""});
  }
  std::map<pid_t, size_t> running;
  size_t next = 0, finished = 0;
  // `local`: run here (threads shared among the jobs); else for a scheduler's machine.
  auto run_args = [&](const SweepRun& r, bool local) {
    std::vector<std::string> args = {o.executable.string(), "run"};
    const bool resume = std::filesystem::exists(r.dir / "checkpoint" / "checkpoint.json");
    // A scheduler may start the command in another folder: absolute paths.
    const auto path = [local](const std::filesystem::path& p) { return local ? p.string() : std::filesystem::absolute(p).lexically_normal().string(); };
    if (resume) {
      args.insert(args.end(), {"--resume", path(r.dir)});
    } else {
      args.push_back(path(o.config));
      for (const auto& s : o.sets) args.insert(args.end(), {"--set", s});
      for (const auto& [k, v] : r.cell.settings) args.insert(args.end(), {"--set", k + "=" + v});
      args.insert(args.end(), {"--set", fmt::format("seed={}", r.seed)});
      if (local && !user_threads) args.insert(args.end(), {"--set", fmt::format("threads={}", threads)});
      args.insert(args.end(), {"--out", path(r.dir)});
    }
    args.insert(args.end(), {"--progress", "lines"});
    return args;
  };
  if (!o.commands_file.empty()) return hand_out(o, runs, seeds, run_args);
  auto launch = [&](size_t i) {
    auto& r = runs[i];
    ensure_directory(r.dir.parent_path());
    const auto args = run_args(r, true);
    const bool resume = args[2] == "--resume";
    const auto log = r.dir.parent_path() / (seed_dir(r.seed) + ".log");
    const pid_t pid = start_process(args, log);
    running[pid] = i;
    con.info("sweep: started {} / {} ({}) -> {}", r.cell.name, seed_dir(r.seed), resume ? "resumed" : "new", log.string());
  };
  auto stopping = [&] { return stop && stop->load(); };
  if (o.summarize_only) {  // a partial table of a long grid, e.g. while it runs elsewhere
    for (auto& r : runs) r.status = run_finished(r.dir) ? "skipped" : "not run";
    summarize_sweep(o.out, o.axes, seeds);
    return runs;
  }
  while (finished < runs.size()) {
    while (!stopping() && int64_t(running.size()) < o.jobs && next < runs.size()) {
      auto& r = runs[next];
      if (run_finished(r.dir)) {
        r.status = "skipped";
        ++finished;
        con.info("sweep: {} / {} already done", r.cell.name, seed_dir(r.seed));
      } else {
        launch(next);
      }
      ++next;
    }
    if (running.empty()) break;
    const ChildExit child = wait_for_child();
    if (child.interrupted) {
      for (const auto& [p, i] : running) kill(p, SIGINT);  // the runs checkpoint and stop
      continue;
    }
    auto it = running.find(child.pid);
    if (it == running.end()) continue;
    auto& r = runs[it->second];
    running.erase(it);
    ++finished;
    const bool ok = child.success && run_finished(r.dir);
    r.status = ok ? "done" : "failed";
    con.info("sweep: {} / {} {} ({} of {} finished)", r.cell.name, seed_dir(r.seed), ok ? "done" : "FAILED (see its .log)", finished, runs.size());
  }
  for (auto& r : runs)
    if (r.status.empty()) r.status = "not run";
  summarize_sweep(o.out, o.axes, seeds);
  return runs;
}

std::string summarize_sweep(const std::filesystem::path& out, const std::vector<GridAxis>& axes, const std::vector<int64_t>& seeds) {
  const auto cells = expand_grid(axes);
  std::string csv;
  for (const auto& a : axes) csv += a.key + ",";
  csv += "seed,status,final_average_accuracy,final_task_il_accuracy,average_incremental_accuracy,forgetting,bwt,fwt,memory_fraction,memory_bytes_fraction,memory_bytes,memory_samples,memory_tokens,seconds,run_dir\n";
  // The runs' primary metric (metrics.json primary_metric; class-IL accuracy when absent).
  std::string metric = "class-IL accuracy";
  bool found = false;
  for (const auto& c : cells) {
    for (auto seed : seeds) {
      const auto dir = out / c.name / seed_dir(seed);
      if (found || !run_finished(dir)) continue;
      const auto j = nlohmann::json::parse(read_file(dir / "metrics.json"));
      if (j.contains("primary_metric") && j["primary_metric"].contains("title")) metric = j["primary_metric"]["title"].get<std::string>();
      found = true;
    }
  }
  const std::string short_name = metric == "class-IL accuracy" ? "acc." : metric;
  std::string md = "| ";
  for (const auto& a : axes) md += a.key + " | ";
  md += fmt::format("seeds | final avg. {} (%) | final task-IL acc. (%) | avg. incr. {} (%) | forgetting (%) | memory (tokens %) | memory (bytes) | time (s) |\n|",
                    short_name, short_name);
  for (size_t i = 0; i < axes.size() + 8; ++i) md += "---|";
  md += "\n";
  std::vector<std::vector<double>> final_acc, task_il;
  for (const auto& c : cells) {
    std::vector<double> fa, ti, aia, fg, sec;
    double frac = NAN, bytes = NAN;
    for (auto s : seeds) {
      const auto dir = out / c.name / seed_dir(s);
      for (const auto& kv : c.settings) csv += kv.second + ",";
      csv += fmt::format("{},", s);
      if (!run_finished(dir)) {
        csv += "missing,,,,,,,,,,,,," + dir.string() + "\n";
        continue;
      }
      auto j = nlohmann::json::parse(read_file(dir / "metrics.json"));
      const auto& m = j["memory"];
      const double f = number(j, "final_average_accuracy"), a = number(j, "average_incremental_accuracy"), g = number(j, "forgetting");
      const double t = j.contains("timing") ? number(j["timing"], "total_seconds") : NAN;
      // Task-IL (the task's own classes only) where the learner reports it.
      const double til = j.contains("task_il") && j["task_il"].is_object() ? number(j["task_il"], "final_average_accuracy") : NAN;
      fa.push_back(f), aia.push_back(a), fg.push_back(g), sec.push_back(t);
      if (std::isfinite(til)) ti.push_back(til);
      frac = number(m, "fraction"), bytes = number(m, "bytes");
      csv += fmt::format("done,{},{},{},{},{},{},{},{},{},{},{},{},{}\n", csv_num(f), csv_num(til), csv_num(a), csv_num(g), csv_num(number(j, "bwt")),
                         csv_num(number(j, "fwt")), csv_num(frac), csv_num(number(m, "bytes_fraction")), csv_num(bytes),
                         csv_num(number(m, "samples")), csv_num(number(m, "tokens")), csv_num(t), dir.string());
    }
    final_acc.push_back(fa);
    task_il.push_back(ti);
    md += "| ";
    for (const auto& kv : c.settings) md += kv.second + " | ";
    const auto sf = stats(fa), st = stats(sec);
    md += fmt::format("{} | {} | {} | {} | {} | {} | {} | {} |\n", sf.n, pct(sf), ti.empty() ? std::string("–") : pct(stats(ti)), pct(stats(aia)), pct(stats(fg)),
                      std::isfinite(frac) ? fmt::format("{:.3f}", 100 * frac) : "–", std::isfinite(bytes) ? fmt::format("{:.0f}", bytes) : "–",
                      st.n ? fmt::format("{:.0f}", st.mean) : "–");
  }
  md += pivot_markdown(axes, cells, final_acc, seeds.size(), "Final average " + metric);
  bool any_task_il = false;
  for (const auto& t : task_il) any_task_il = any_task_il || !t.empty();
  if (any_task_il) md += pivot_markdown(axes, cells, task_il, seeds.size(), "Final average task-IL accuracy");
  write_file_atomic(out / "sweep.csv", csv);
  nlohmann::json spec;
  for (const auto& a : axes) spec["axes"].push_back({{"key", a.key}, {"values", a.values}});
  spec["seeds"] = seeds;
  write_file_atomic(out / "sweep.json", spec.dump(1) + "\n");
  write_file_atomic(out / "sweep.md", md);
  return md;
}

}  // namespace cts
