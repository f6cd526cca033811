// cts command-line tool: a thin shell over the library. Parses arguments, validates, calls
// the library; exit 0 ok, 1 run failed, 2 bad usage / config / input.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <unistd.h>

#include "cts/core/config.hpp"
#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/registry.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/report/console.hpp"
#include "cts/train/trainer.hpp"

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

  auto* buffer = app.add_subcommand("buffer", "Inspect a token buffer (buffer.safetensors)");
  buffer->require_subcommand(1);
  auto* inspect = buffer->add_subcommand("inspect", "Summarise a buffer file");
  std::string buffer_file;
  bool as_json = false;
  inspect->add_option("file", buffer_file, "buffer.safetensors")->required();
  inspect->add_flag("--json", as_json, "Print JSON");

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
