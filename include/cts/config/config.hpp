// The run configuration: the sections of every part (data/data_config.hpp,
// models/model_config.hpp, memory/memory_config.hpp, train and output here), every field
// declared exactly once in visit_config() (src/config/config.cpp) with its key, default,
// accepted values and description. YAML loading, --set overrides, the resolved config.yaml,
// `cts config keys` and docs/config.md are all generated from that one list. Unknown keys are
// errors. This part sits above the parts whose sections it holds and lists their choices.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cts/data/data_config.hpp"
#include "cts/learners/learner_settings.hpp"
#include "cts/memory/memory_config.hpp"
#include "cts/models/model_config.hpp"

namespace cts {

// "auto" or a number (e.g. train.token_drop).
struct AutoNumber {
  bool is_auto = true;
  double value = 0.0;
};

// Which new-data tokens survive token dropping.
enum class TokenDropPolicy { Random, MemoryTokens };
const std::vector<std::string>& token_drop_policy_names();  // random, memory-tokens

struct TrainConfig {
  int64_t epochs = 1;
  int64_t batch_size = 128;
  int64_t replay_batch_size = 128;
  std::string optimizer = "adamw";  // adamw | adam | sgd
  double lr = 1.0e-3;
  double min_lr = 0.0;
  double weight_decay = 0.05;
  double beta1 = 0.9, beta2 = 0.999;
  double momentum = 0.9;
  std::string schedule = "cosine";  // cosine | constant
  int64_t warmup_steps = 100;
  double grad_clip = 0.0;
  AutoNumber token_drop;  // auto = 1 - memory token fraction
  bool token_drop_rescale = false;
  TokenDropPolicy token_drop_policy = TokenDropPolicy::Random;
  double full_image_share = 0.0;      // token-drop guard: share of steps or samples of new data shown whole
  std::string full_image_unit = "samples";  // samples (that share of every batch) | steps
  bool drop_without_memory = false;  // drop new-data tokens also while nothing is replayed (task 0; the paper: true)
  int64_t eval_batch_size = 64;
  int64_t log_every = 50;
  int64_t checkpoint_every = 0;  // steps; 0: only at task ends
  std::string precision = "auto";  // auto | fp32 | bf16
};

struct OutputConfig {
  std::string dir;               // empty: runs/<config name>
  std::string progress = "auto";  // auto | bar | lines | none
  double progress_seconds = 10.0;
  bool save_model = true;
};

struct Config {
  int64_t seed = 0;
  std::string device = "auto";  // auto | cpu | cuda
  int64_t threads = 0;          // 0: all cores
  DataConfig data;
  ModelConfig model;
  TrainConfig train;
  MemoryConfig memory;
  LearnerSettings learners;  // sections named after a learner (dytox.*)
  OutputConfig output;
  std::string name = "run";  // the config file's stem; names the default output folder
};

// Description of one configuration key, for errors and documentation.
struct ConfigKeyDoc {
  std::string key, type, default_value, accepted, help;
};

// Loads a YAML file, applies `overrides` ("key=value"), validates. InputError names the
// file, the key and what is accepted.
Config load_config(const std::filesystem::path& path, const std::vector<std::string>& overrides = {});
// Parses YAML text (`origin` names it in errors).
Config parse_config(const std::string& yaml_text, const std::string& origin, const std::vector<std::string>& overrides = {});
// Applies one "key=value" override.
void apply_override(Config& config, const std::string& assignment);
// Cross-field checks (choices, ranges, combinations). Called by load/parse.
void validate_config(const Config& config);
// The resolved config as YAML, every key present.
std::string config_to_yaml(const Config& config);
// Every key with its default and description, in declaration order.
std::vector<ConfigKeyDoc> config_key_docs();
// docs/config.md: a markdown reference generated from config_key_docs().
std::string config_reference_markdown();

}  // namespace cts
