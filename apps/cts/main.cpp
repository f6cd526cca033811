// cts command-line tool: a thin shell over the library. Parses arguments, validates, calls
// the library; exit 0 ok, 1 run failed, 2 bad usage / config / input.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <unistd.h>

#include "cts/attribution/explain.hpp"
#include "cts/attribution/registry.hpp"
#include "cts/config/config.hpp"
#include "cts/core/fs.hpp"
#include "cts/data/image_codec.hpp"
#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/registry.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/core/console.hpp"
#include "cts/report/overlay.hpp"
#include "cts/report/report.hpp"
#include "cts/report/sweep.hpp"
#include "cts/train/loop.hpp"

namespace {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signals{0};

extern "C" void on_signal(int sig) {
  if (g_signals.fetch_add(1) >= 1) {
    // Second signal: leave at once (the last checkpoint is intact: writes are atomic).
    const char msg[] = "\ncts: stopped immediately\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)ignored;
    std::_Exit(128 + sig);
  }
  g_stop = true;
  const char msg[] = "\ncts: stopping after this step and writing a checkpoint (press Ctrl-C again to quit at once)\n";
  ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
  (void)ignored;
}

int cmd_run(const std::string& config_path, const std::vector<std::string>& sets, const std::string& out, const std::string& resume,
            const std::string& device, const std::string& progress, int64_t stop_after_steps) {
  std::string path = config_path;
  if (!resume.empty()) {
    if (!path.empty()) throw cts::InputError("cts run --resume DIR takes the configuration from DIR/config.yaml; give no CONFIG file");
    if (!sets.empty()) throw cts::InputError("cts run --resume DIR cannot change settings with --set; the run continues as configured");
    path = (std::filesystem::path(resume) / "config.yaml").string();
  }
  if (path.empty()) throw cts::InputError("cts run needs a CONFIG.yaml file (or --resume RUN_DIR)");
  cts::Config config = cts::load_config(path, sets);
  if (!resume.empty()) config.name = std::filesystem::path(resume).filename().string();
  if (!progress.empty()) cts::apply_override(config, "output.progress=" + progress);
  cts::Console::get().set_mode(cts::parse_progress_mode(config.output.progress), config.output.progress_seconds);

  cts::RunOptions options;
  options.out_dir = out;
  options.resume_dir = resume;
  options.device = device;
  options.stop_requested = &g_stop;
  options.stop_after_steps = stop_after_steps;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  auto summary = cts::run_experiment(config, options);
  if (!summary.completed) return 130;
  if (!summary.main_rank) return 0;
  std::cout << cts::summary_markdown(summary.record, config, cts::resolve_memory_fractions(config.memory));
  return 0;
}

int cmd_buffer_inspect(const std::string& file, bool as_json) {
  auto buffer = cts::TokenBuffer::load(file);
  const int64_t n = buffer.size();
  nlohmann::json j;
  j["file"] = file;
  j["samples"] = n;
  j["tokens"] = buffer.tokens();
  j["bytes"] = buffer.bytes();
  j["tokens_per_image"] = buffer.num_tokens();
  j["image"] = {{"channels", buffer.channels()}, {"size", buffer.image_size()}, {"patch_size", buffer.patch_size()}};
  j["has_weights"] = buffer.has_weights();
  j["metadata"] = buffer.metadata();
  std::map<int64_t, int64_t> per_task, per_class;
  for (int64_t i = 0; i < n; ++i) {
    per_task[buffer.tasks()[i].item<int64_t>()]++;
    per_class[buffer.labels()[i].item<int64_t>()]++;
  }
  nlohmann::json pt = nlohmann::json::object(), pc = nlohmann::json::object();
  for (auto [k, v] : per_task) pt[std::to_string(k)] = v;
  for (auto [k, v] : per_class) pc[std::to_string(k)] = v;
  j["samples_per_task"] = pt;
  j["samples_per_class"] = pc;
  if (n > 0) {
    auto counts = buffer.counts().to(torch::kFloat64);
    j["tokens_per_sample"] = {{"min", counts.min().item<double>()}, {"mean", counts.mean().item<double>()}, {"max", counts.max().item<double>()}};
  }
  if (as_json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{}\n  samples        {}\n  tokens         {} ({} per image of {}x{}x{}, patch {})\n  bytes          {}\n", file, n,
                           buffer.tokens(), buffer.num_tokens(), buffer.channels(), buffer.image_size(), buffer.image_size(), buffer.patch_size(),
                           buffer.bytes());
  if (n > 0) {
    std::cout << fmt::format("  tokens/sample  min {} mean {:.2f} max {}\n", j["tokens_per_sample"]["min"].get<double>(),
                             j["tokens_per_sample"]["mean"].get<double>(), j["tokens_per_sample"]["max"].get<double>());
  }
  std::cout << "  per task      ";
  for (auto [k, v] : per_task) std::cout << fmt::format(" {}:{}", k, v);
  std::cout << "\n  per class     ";
  for (auto [k, v] : per_class) std::cout << fmt::format(" {}:{}", k, v);
  std::cout << "\n  metadata\n";
  for (const auto& [k, v] : buffer.metadata()) std::cout << fmt::format("    {:<16} {}\n", k, v);
  return 0;
}

int cmd_buffer_render(const std::string& file, const std::string& out_dir, int64_t limit, int64_t scale) {
  if (out_dir.empty()) throw cts::InputError("cts buffer render needs --out DIR");
  auto buffer = cts::TokenBuffer::load(file);
  const int64_t n = cts::render_buffer(buffer, out_dir, limit, scale);
  std::cout << fmt::format("wrote {} partial images of {} ({} samples) to {}/ (+ grid.png)\n", n, file, buffer.size(), out_dir);
  return 0;
}

struct ExplainArgs {
  std::string weights, run_dir, preset, image, dataset, root, split = "test", methods = "rollout,gradcam,gradlrp,chefer-generic,atman,random";
  std::string target = "auto", out, scores;
  int64_t index = -1;
  double token_fraction = 0.2;
  // AtMan settings: the memory section's defaults (one place: attribution/token_selector.hpp).
  double atman_factor = cts::MemoryConfig{}.atman_factor, atman_kappa = cts::MemoryConfig{}.atman_kappa;
};

int cmd_explain(const ExplainArgs& a) {
  namespace fs = std::filesystem;
  if (a.out.empty() && a.scores.empty()) throw cts::InputError("cts explain needs --out FIGURE.png and/or --scores SCORES.json");
  std::string weights = a.weights;
  cts::Config run_config;
  bool have_run_config = false;
  if (!a.run_dir.empty()) {
    if (!weights.empty()) throw cts::InputError("cts explain: give --weights or --run, not both");
    weights = (fs::path(a.run_dir) / "model.safetensors").string();
    if (fs::exists(fs::path(a.run_dir) / "config.yaml")) {
      run_config = cts::load_config((fs::path(a.run_dir) / "config.yaml").string(), {});
      have_run_config = true;
    }
  }
  if (weights.empty()) throw cts::InputError("cts explain needs --weights MODEL.safetensors or --run RUN_DIR");
  if (!fs::exists(weights)) throw cts::InputError(fmt::format("{}: no such weights file", weights));
  auto lm = cts::load_model_for_inference(weights, a.preset);
  for (const auto& n : lm.notes) std::cerr << "cts: " << n << "\n";
  const auto& mc = lm.model->config();

  cts::ExplainRequest rq;
  if (!a.image.empty() == (a.index >= 0)) throw cts::InputError("cts explain needs exactly one of --image FILE or --index N (with --dataset or --run)");
  if (!a.image.empty()) {
    if (!fs::exists(a.image)) throw cts::InputError(fmt::format("{}: no such image file", a.image));
    auto img = cts::read_image(a.image, mc.in_chans == 1 ? 1 : 3);
    if (img.size(1) != mc.img_size || img.size(2) != mc.img_size) img = cts::resize_center_crop(img, mc.img_size, 1.0);
    rq.image = img;
    rq.sample_id = 0;
  } else {
    cts::DataConfig data;
    if (!a.dataset.empty()) {
      data.name = a.dataset;
      data.root = a.root;
    } else if (have_run_config) {
      data = run_config.data;
    } else {
      throw cts::InputError("cts explain --index N needs --dataset NAME (see `cts datasets`) or --run RUN_DIR");
    }
    if (!a.root.empty()) data.root = a.root;
    if (data.image_size == 0) data.image_size = mc.img_size;
    if (a.split != "train" && a.split != "test") throw cts::InputError(fmt::format("cts explain --split {}: accepted: train, test", a.split));
    auto splits = cts::open_dataset(data, mc.patch_size, have_run_config ? static_cast<uint64_t>(run_config.seed) : 0);
    auto ds = a.split == "train" ? splits.train : splits.test;
    if (a.index >= ds->size()) throw cts::InputError(fmt::format("cts explain --index {}: the {} split of {} has {} images (0..{})", a.index, a.split, data.name, ds->size(), ds->size() - 1));
    auto idx = torch::tensor({a.index}, torch::kInt64);
    rq.image = ds->images(idx)[0];
    if (rq.image.size(1) != mc.img_size) throw cts::InputError(fmt::format("{} images are {}x{}, the model takes {}x{}", data.name, rq.image.size(1), rq.image.size(2), mc.img_size, mc.img_size));
    rq.label = ds->labels()[a.index].item<int64_t>();
    rq.sample_id = a.index;
  }
  std::stringstream ss(a.methods);
  for (std::string m; std::getline(ss, m, ',');) {
    if (m.empty()) continue;
    const auto names = cts::token_selector_names();
    if (std::find(names.begin(), names.end(), m) == names.end()) {
      throw cts::InputError(fmt::format("cts explain --methods: '{}' is not a method; accepted: {}", m, fmt::join(names, ", ")));
    }
    rq.methods.push_back(m);
  }
  rq.token_fraction = a.token_fraction;
  rq.target = a.target;
  rq.options.atman_factor = a.atman_factor;
  rq.options.atman_kappa = a.atman_kappa;
  auto e = cts::explain_image(lm, rq);
  std::cout << fmt::format("explaining head class {} ({}), predicted {} (p = {:.3f}); keeping {} of {} tokens\n", e.target, e.target_source,
                           e.predicted, e.probabilities[e.predicted].item<double>(), e.kept_tokens, mc.num_patches());
  for (const auto& m : e.methods) {
    auto kept = m.kept.to(torch::kInt64).contiguous();
    std::cout << fmt::format("  {:<15} {:8.1f} ms   kept {}\n", m.method, m.seconds * 1e3,
                             fmt::join(std::vector<int64_t>(kept.data_ptr<int64_t>(), kept.data_ptr<int64_t>() + kept.numel()), " "));
  }
  if (!a.out.empty()) {
    cts::write_png(a.out, cts::explanation_figure(rq.image, e, mc.patch_size));
    std::cout << "wrote " << a.out << "\n";
  }
  if (!a.scores.empty()) {
    cts::write_file_atomic(a.scores, cts::explanation_json(lm, e));
    std::cout << "wrote " << a.scores << "\n";
  }
  return 0;
}

int cmd_sweep(const std::string& config, const std::vector<std::string>& sets, const std::vector<std::string>& grids, const std::string& seeds,
              int64_t jobs, const std::string& out, bool summarize_only, const std::string& commands, const std::string& slurm,
              const std::string& launcher) {
  namespace fs = std::filesystem;
  if (config.empty()) throw cts::InputError("cts sweep needs a CONFIG.yaml");
  if (!fs::exists(config)) throw cts::InputError(fmt::format("{}: no such config file", config));
  cts::SweepOptions o;
  o.config = config;
  o.sets = sets;
  for (const auto& g : grids) o.axes.push_back(cts::parse_grid_axis(g));
  if (!seeds.empty()) {
    std::stringstream ss(seeds);
    for (std::string s; std::getline(ss, s, ',');) {
      try {
        size_t used = 0;
        o.seeds.push_back(std::stoll(s, &used));
        if (used != s.size()) throw std::invalid_argument(s);
      } catch (const std::exception&) {
        throw cts::InputError(fmt::format("cts sweep --seeds {}: '{}' is not an integer; e.g. --seeds 0,1,2", seeds, s));
      }
    }
  }
  o.jobs = jobs;
  o.summarize_only = summarize_only;
  if ((!commands.empty() || !slurm.empty()) && summarize_only)
    throw cts::InputError("cts sweep: --summarize-only starts nothing and writes no commands; use it without --commands / --slurm");
  if (!launcher.empty() && commands.empty() && slurm.empty())
    throw cts::InputError("cts sweep --launcher applies to the commands written for a scheduler; add --commands FILE or --slurm FILE");
  o.out = out.empty() ? fs::path("runs") / (fs::path(config).stem().string() + "-sweep") : fs::path(out);
  o.executable = fs::read_symlink("/proc/self/exe");
  o.slurm_script = slurm;
  o.launcher = launcher;
  o.commands_file = !commands.empty() ? fs::path(commands) : !slurm.empty() ? o.out / "commands.txt" : fs::path();
  if (!o.commands_file.empty()) {
    auto runs = cts::run_sweep(o, nullptr);
    int64_t n = 0;
    for (const auto& r : runs) n += r.status == "handed out";
    std::cout << fmt::format("{} of {} runs written to {}{}; when they have finished: cts sweep {} (same --grid/--set/--seeds) --out {} --summarize-only\n", n,
                             runs.size(), o.commands_file.string(), slurm.empty() ? "" : fmt::format(" (Slurm: sbatch {})", slurm), config, o.out.string());
    return 0;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  auto runs = cts::run_sweep(o, &g_stop);
  int64_t failed = 0, missing = 0;
  for (const auto& r : runs) failed += r.status == "failed", missing += r.status == "not run";
  std::cout << cts::read_file(o.out / "sweep.md");
  std::cout << fmt::format("\n{} runs: {} failed, {} not run; table in {}/sweep.md and sweep.csv\n", runs.size(), failed, missing, o.out.string());
  if (g_stop) return 130;
  return failed ? 1 : 0;
}

int cmd_report(const std::vector<std::string>& dirs, const std::string& out) {
  if (dirs.size() > 1 && out.empty()) {
    throw cts::InputError("cts report: several folders are compared into one report: give --out DIR");
  }
  std::vector<std::filesystem::path> paths(dirs.begin(), dirs.end());
  auto r = out.empty() ? cts::write_report(paths.front()) : cts::write_comparison_report(paths, out);
  for (const auto& p : r.plots) std::cout << "wrote " << p << "\n";
  std::cout << "wrote " << r.markdown_path.string() << "\n";
  return 0;
}

int cmd_datasets() {
  std::cout << fmt::format("{:<16} {:<36} {}\n", "name", "default root", "status / format");
  for (const auto& d : cts::dataset_catalog()) {
    std::cout << fmt::format("{:<16} {:<36} {}\n{:<16} {:<36} {}\n", d.name, d.default_root.empty() ? "-" : d.default_root, d.status, "", "",
                             d.description);
  }
  return 0;
}

int cmd_config_keys(bool markdown) {
  if (markdown) {
    std::cout << cts::config_reference_markdown();
    return 0;
  }
  for (const auto& d : cts::config_key_docs()) {
    std::cout << fmt::format("{:<30} {:<16} default {}\n", d.key, d.type, d.default_value);
    if (!d.accepted.empty()) {
      std::string acc = d.accepted;
      for (size_t p; (p = acc.find("\\|")) != std::string::npos;) acc.replace(p, 2, "|");
      std::cout << fmt::format("{:<30} accepted: {}\n", "", acc);
    }
    std::cout << fmt::format("{:<30} {}\n", "", d.help);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cts: core tokensets for data-efficient sequential training of transformers"};
  app.set_version_flag("--version", std::string("cts ") + CTS_VERSION);
  app.require_subcommand(1);

  auto* run = app.add_subcommand("run", "Run a continual-learning experiment from a YAML config");
  std::string config_path, out, resume, device, progress;
  std::vector<std::string> sets;
  int64_t stop_after_steps = -1;
  run->add_option("config", config_path, "Experiment config (YAML); see `cts config keys`");
  run->add_option("--set", sets, "Override a key: --set memory.tokens=random (repeatable)")->take_all()->allow_extra_args(false);
  run->add_option("--out", out, "Run folder (default: output.dir or runs/<config name>)");
  run->add_option("--resume", resume, "Continue the run in this folder from its last checkpoint");
  run->add_option("--device", device, "cpu | cuda | auto (overrides the config)")->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  run->add_option("--progress", progress, "bar | lines | none | auto")->check(CLI::IsMember({"bar", "lines", "none", "auto"}));
  run->add_option("--stop-after-steps", stop_after_steps, "Stop with a checkpoint after this many steps (testing resume)")->group("");

  auto* buffer = app.add_subcommand("buffer", "Inspect or render a token buffer (buffer.safetensors)");
  buffer->require_subcommand(1);
  auto* inspect = buffer->add_subcommand("inspect", "Summarise a buffer file");
  std::string buffer_file;
  bool as_json = false;
  inspect->add_option("file", buffer_file, "buffer.safetensors")->required();
  inspect->add_flag("--json", as_json, "Print JSON");

  auto* render = buffer->add_subcommand("render", "Write the stored partial images of a buffer as PNGs");
  std::string render_out;
  int64_t render_limit = 64, render_scale = 0;
  render->add_option("file", buffer_file, "buffer.safetensors")->required();
  render->add_option("--out", render_out, "Folder for the PNGs")->required();
  render->add_option("--limit", render_limit, "Render the first N samples (0: all)")->capture_default_str();
  render->add_option("--scale", render_scale, "Integer upscaling (0: to at least 112 px)")->capture_default_str();

  auto* explain = app.add_subcommand("explain", "Score an image's tokens with attribution methods; write a figure and the scores");
  ExplainArgs ex;
  explain->add_option("--weights", ex.weights, "Model weights (.safetensors, timm names)");
  explain->add_option("--run", ex.run_dir, "A cts run folder (uses its model.safetensors and config.yaml)");
  explain->add_option("--preset", ex.preset, "Architecture (default: the file's cts.preset metadata)");
  explain->add_option("--image", ex.image, "A PNG or JPEG image (resized to the model's input)");
  explain->add_option("--dataset", ex.dataset, "Dataset name (see `cts datasets`), with --index");
  explain->add_option("--root", ex.root, "Dataset root folder (default: the dataset's default)");
  explain->add_option("--split", ex.split, "train | test")->capture_default_str();
  explain->add_option("--index", ex.index, "Image index in the dataset split");
  explain->add_option("--methods", ex.methods, "Comma-separated token methods")->capture_default_str();
  explain->add_option("--token-fraction", ex.token_fraction, "Fraction of tokens to keep")->capture_default_str();
  explain->add_option("--target", ex.target, "auto | label | predicted | a head index")->capture_default_str();
  explain->add_option("--atman-factor", ex.atman_factor, "AtMan suppression factor")->capture_default_str();
  explain->add_option("--atman-kappa", ex.atman_kappa, "AtMan cosine threshold")->capture_default_str();
  explain->add_option("--out", ex.out, "Figure (PNG): image, heat map and kept patches per method");
  explain->add_option("--scores", ex.scores, "Raw scores (JSON)");

  auto* sweep = app.add_subcommand("sweep", "Run the cross product of config values (x seeds); resumable; writes sweep.csv / sweep.md");
  std::string sweep_config, sweep_seeds, sweep_out;
  std::vector<std::string> sweep_sets, sweep_grids;
  int64_t sweep_jobs = 1;
  bool sweep_summarize_only = false;
  std::string sweep_commands, sweep_slurm, sweep_launcher;
  sweep->add_option("config", sweep_config, "Base config (YAML)")->required();
  sweep->add_option("--grid", sweep_grids, "key=v1,v2,... (repeatable; the cross product is run)")->take_all()->allow_extra_args(false);
  sweep->add_option("--set", sweep_sets, "Override a key in every run (repeatable)")->take_all()->allow_extra_args(false);
  sweep->add_option("--seeds", sweep_seeds, "Comma-separated seeds, e.g. 0,1,2 (default: the config's seed)");
  sweep->add_option("--jobs", sweep_jobs, "Runs at the same time (each gets cores / jobs threads)")->capture_default_str();
  sweep->add_option("--out", sweep_out, "Sweep folder (default: runs/<config stem>-sweep)");
  sweep->add_flag("--summarize-only", sweep_summarize_only,
                  "Start nothing: write sweep.csv / sweep.md from the runs finished so far (the others count as missing)");

  sweep->add_option("--commands", sweep_commands,
                     "Run nothing here: write one shell command per unfinished run to FILE (for a scheduler, a cluster, GNU parallel)");
  sweep->add_option("--slurm", sweep_slurm, "Run nothing here: write a Slurm array script (one task per command; commands in <out>/commands.txt unless --commands)");
  sweep->add_option("--launcher", sweep_launcher, "Prefix of every written command, e.g. \"torchrun --nproc_per_node 4 --no_python\"");
  auto* report = app.add_subcommand("report", "Plots (PNG) and report.md for a run or sweep folder, or several sweeps compared (--out)");
  std::vector<std::string> report_dirs;
  std::string report_out;
  report->add_option("dirs", report_dirs, "Run or sweep folder; or two or more sweep folders with --out")->required();
  report->add_option("--out", report_out, "Folder for the comparison of several sweeps (plots/ and report.md)");

  auto* datasets = app.add_subcommand("datasets", "List the datasets cts knows and whether they are present here");

  auto* config = app.add_subcommand("config", "Configuration reference");
  config->require_subcommand(1);
  auto* keys = config->add_subcommand("keys", "Every config key with its default, accepted values and meaning");
  bool markdown = false;
  keys->add_flag("--markdown", markdown, "Print docs/config.md");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    if (run->parsed()) return cmd_run(config_path, sets, out, resume, device, progress, stop_after_steps);
    if (inspect->parsed()) return cmd_buffer_inspect(buffer_file, as_json);
    if (render->parsed()) return cmd_buffer_render(buffer_file, render_out, render_limit, render_scale);
    if (explain->parsed()) return cmd_explain(ex);
    if (sweep->parsed()) return cmd_sweep(sweep_config, sweep_sets, sweep_grids, sweep_seeds, sweep_jobs, sweep_out, sweep_summarize_only, sweep_commands,
                                          sweep_slurm, sweep_launcher);
    if (report->parsed()) return cmd_report(report_dirs, report_out);
    if (datasets->parsed()) return cmd_datasets();
    if (keys->parsed()) return cmd_config_keys(markdown);
  } catch (const cts::InputError& e) {
    std::fprintf(stderr, "cts: error: %s\n", e.what());
    return 2;
  } catch (const cts::RunError& e) {
    std::fprintf(stderr, "cts: run failed: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "cts: run failed: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cts: run failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
