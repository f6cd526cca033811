// Loop state <-> checkpoint progress record.
#include "cts/train/loop_state.hpp"

#include <torch/torch.h>

#include <sstream>

#include "cts/core/error.hpp"

namespace cts {
namespace {

// The resolved YAML without the keys a resumed run may change (output section, device).
std::string experiment_yaml(const Config& config) {
  std::string out, line;
  std::istringstream in(config_to_yaml(config));
  bool in_output = false;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] != ' ') in_output = line.rfind("output:", 0) == 0;
    if (!in_output && line.rfind("device:", 0) != 0) out += line + "\n";
  }
  return out;
}

}  // namespace

void save_loop_state(const LoopState& s, const Config& config, double seconds, CheckpointData& ck) {
  if (s.cumulative_indices.defined()) ck.tensors["cumulative_indices"] = s.cumulative_indices;
  if (!ck.task_complete && s.loss_acc.defined()) ck.tensors["loss_acc"] = s.loss_acc;
  ck.progress = {{"record", s.record.to_json()},
                 {"loss_sums", s.loss_sums},
                 {"loss_count", s.loss_count},
                 {"loss_acc_steps", ck.task_complete ? 0 : s.loss_acc_steps},
                 {"token_drop", s.token_drop},
                 {"replay_token_fraction", s.replay_token_fraction},
                 {"fractions", {s.fractions.sample_fraction, s.fractions.token_fraction}},
                 {"seconds", seconds},
                 {"config_yaml", config_to_yaml(config)}};
}

void load_loop_state(const CheckpointData& ck, const torch::Device& device, LoopState& s) {
  const auto& p = ck.progress;
  s.record = RunRecord::from_json(p.at("record"));
  if (p.contains("loss_sums")) {
    s.loss_sums = p.at("loss_sums").get<std::vector<double>>();
  } else {  // before named loss terms: the classifier's two
    s.loss_sums = {p.at("loss_new_sum").get<double>(), p.at("loss_replay_sum").get<double>()};
  }
  s.loss_count = p.at("loss_count");
  s.loss_acc_steps = p.value("loss_acc_steps", int64_t{0});
  if (auto acc = ck.tensors.find("loss_acc"); acc != ck.tensors.end() && !ck.task_complete) {
    s.loss_acc = acc->second.to(device, torch::kFloat64);
  } else {
    s.loss_acc = torch::Tensor();
    s.loss_acc_steps = 0;
  }
  if (p.contains("token_drop")) s.token_drop = p.at("token_drop");
  if (p.contains("replay_token_fraction")) s.replay_token_fraction = p.at("replay_token_fraction");
  if (p.contains("fractions")) {
    s.fractions.sample_fraction = p.at("fractions").at(0);
    s.fractions.token_fraction = p.at("fractions").at(1);
    s.fractions.retention = s.fractions.sample_fraction * s.fractions.token_fraction;
  }
  s.seconds_before = p.at("seconds");
  if (auto cum = ck.tensors.find("cumulative_indices"); cum != ck.tensors.end()) s.cumulative_indices = cum->second.to(torch::kInt64);
}

void check_same_experiment(const CheckpointData& ck, const Config& config, const std::filesystem::path& dir) {
  // The saved YAML is read with today's keys, so a key added since (with its default) does
  // not make an old checkpoint look like another experiment.
  Config saved;
  try {
    saved = parse_config(ck.progress.at("config_yaml").get<std::string>(), (dir / "checkpoint").string());
  } catch (const InputError& e) {
    throw_input("--resume {}: the checkpoint's configuration cannot be read by this cts ({}); finish it with the cts that started it",
                dir.string(), e.what());
  }
  saved.name = config.name;
  if (experiment_yaml(saved) != experiment_yaml(config)) {
    throw_input("--resume {}: the checkpoint was made with a different configuration than {}/config.yaml; resume without --set or start a new run",
                dir.string(), dir.string());
  }
}

}  // namespace cts
