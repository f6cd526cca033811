// The run configuration: one struct per section, every field declared exactly once in
// visit_config() (config.cpp) with its key, default, accepted values and description.
// YAML loading, --set overrides, the resolved config.yaml, `cts config keys` and
// docs/config.md are all generated from that one list. Unknown keys are errors.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cts {

// "auto" or a number (e.g. train.token_drop).
struct AutoNumber {
  bool is_auto = true;
  double value = 0.0;
};

// "seeded" (a permutation drawn from the run seed), "natural" (0, 1, 2, ...) or an
// explicit list of class ids.
struct ClassOrder {
  std::string mode = "seeded";  // seeded | natural | list
  std::vector<int64_t> classes;
};

struct DataConfig {
  std::string name = "fashion-mnist";
  std::string root;  // empty: the dataset's default location
  int64_t tasks = 5;
  ClassOrder class_order;
  int64_t image_size = 0;  // 0: the dataset's native size
  std::string class_list;  // ImageFolder: file with the class folders to use, in label order
  std::string train_split = "train";
  std::string test_split = "val";
  double crop_fraction = 0.875;
  int64_t train_per_class = 0;  // 0: all
  int64_t test_per_class = 0;   // 0: all
  int64_t num_classes = 10;     // synthetic only
  int64_t channels = 1;         // synthetic only
  int64_t workers = 4;
};

struct ModelConfig {
  std::string preset = "vit_nano_patch4_28";
  std::string weights;  // empty: random init
  int64_t img_size = 0, patch_size = 0, in_chans = 0, embed_dim = 0, depth = 0, num_heads = 0;
  double mlp_ratio = 0.0;
  std::string attention = "auto";  // auto | fused | explicit
};

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
  std::string token_drop_policy = "random";  // random | memory-tokens
  int64_t eval_batch_size = 512;
  int64_t log_every = 50;
  int64_t checkpoint_every = 0;  // steps; 0: only at task ends
  std::string precision = "auto";  // auto | fp32 | bf16
};

struct MemoryConfig {
  std::string strategy = "core-tokenset";  // none | cumulative | coreset | core-tokens | core-tokenset
  double retention = 0.01;
  std::optional<double> sample_fraction;
  std::optional<double> token_fraction;
  std::optional<double> budget_bytes;  // total buffer bytes after the last task, instead of fractions
  std::string selection = "two-stage";  // two-stage | joint
  std::string coreset = "random";
  std::string tokens = "random";
  std::string fill = "zero-embedding";  // zero-embedding | zero-pixel | drop
  std::string target = "label";         // label | predicted
  bool use_weights = false;
  std::string coreset_gradient = "logits";  // logits | logits-embedding (craig, gradmatch)
  double gradmatch_lambda = 0.5;            // ridge λ of GradMatch's weight solve
  double gradmatch_tolerance = 1.0e-4;      // GradMatch stops when ||residual|| / ||target|| < this
  double coreset_memory_mb = 1024.0;        // largest N×N distance matrix CRAIG may hold
  double budget_holdout = 0.1;              // budget_bytes: held-out fraction of each class for the split search
  int64_t selection_batch_size = 64;
  double atman_factor = 0.1;         // AtMan suppression factor f
  double atman_kappa = 0.7;          // AtMan cosine threshold for conceptually similar tokens
  bool atman_similarity_rank = false;  // rank by similarity to the most relevant token
  int64_t atman_chunk = 256;         // perturbed copies per forward batch
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

// Memory fractions after resolving retention / sample_fraction / token_fraction.
struct MemoryFractions {
  double sample_fraction = 0.0;  // s: fraction of each class's samples kept
  double token_fraction = 0.0;   // k: fraction of each kept sample's tokens
  double retention = 0.0;        // s * k
  bool uses_memory = false;
  // memory.budget_bytes: the buffer's total bytes after the last task. The split between
  // samples and tokens is chosen per task at selection time (memory/budget.hpp); the
  // fractions above are then only the starting guess (core-tokenset: s = k = sqrt of the
  // implied retention, set by the trainer once the data is known).
  std::optional<int64_t> budget_bytes;
  bool joint = false;  // memory.selection = joint
};
MemoryFractions resolve_memory_fractions(const MemoryConfig& memory);

}  // namespace cts
