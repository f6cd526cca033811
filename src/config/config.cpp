// Config: the single declaration of every key (visit_config), YAML parsing with
// line-accurate errors, --set overrides, validation, resolved YAML and the reference doc.
// This file knows every part's choices (datasets, presets, learners, selectors); the parts
// below it know only their own section.
#include "cts/config/config.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <type_traits>

#include "cts/attribution/registry.hpp"
#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"
#include "cts/coreset/registry.hpp"
#include "cts/data/registry.hpp"
#include "cts/learners/registry.hpp"
#include "cts/models/vit.hpp"

namespace cts {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Field {
  const char* key;
  const char* help;
  std::function<std::vector<std::string>()> choices = nullptr;  // accepted strings, if restricted
  double min = -kInf;
  double max = kInf;
  bool min_exclusive = false;
};

std::function<std::vector<std::string>()> one_of(std::vector<std::string> v) {
  return [v] { return v; };
}

// The one list of configuration keys. Order here is the order of config.yaml and docs.
template <class V>
void visit_config(Config& c, V&& v) {
  v(c.seed, Field{"seed", "Seed of every random stream of the run: initialisation, class order, data order, token dropping, replay sampling, selection.", nullptr, 0});
  v(c.device, Field{"device", "Where to train: auto (cuda if available), cpu or cuda.", one_of({"auto", "cpu", "cuda"})});
  v(c.threads, Field{"threads", "CPU threads for tensor math; 0 uses every core.", nullptr, 0});

  v(c.data.name, Field{"data.name", "Dataset.", dataset_names});
  v(c.data.root, Field{"data.root", "Folder of the dataset files; empty uses the dataset's default (see `cts datasets`)."});
  v(c.data.tasks, Field{"data.tasks", "Number of class-incremental tasks; the classes are split into equal groups.", nullptr, 1});
  v(c.data.class_order, Field{"data.class_order", "Order in which classes arrive: seeded (a permutation drawn from seed), natural (0, 1, 2, ...) or an explicit list of class ids."});
  v(c.data.image_size, Field{"data.image_size", "Side of the square images fed to the model; 0 keeps the dataset's native size (ImageFolder needs a size).", nullptr, 0});
  v(c.data.class_list, Field{"data.class_list", "ImageFolder: text file naming the class folders to use, one per line in label order (optional second column: a readable name), e.g. the ImageNet-100 list."});
  v(c.data.train_split, Field{"data.train_split", "ImageFolder: sub-folder of root with the training images."});
  v(c.data.test_split, Field{"data.test_split", "ImageFolder: sub-folder of root with the test images."});
  v(c.data.crop_fraction, Field{"data.crop_fraction", "ImageFolder: resize the short side to image_size / crop_fraction, then centre-crop image_size.", nullptr, 0.0, 1.0, true});
  v(c.data.train_per_class, Field{"data.train_per_class", "Use at most this many training samples per class (seeded choice); 0 uses all.", nullptr, 0});
  v(c.data.train_subset, Field{"data.train_subset", "Use all training samples, or part a or b of a fixed split of every class (data.subset_fraction in a, drawn from data.subset_seed, not from the run seed): pretrain on a, run the continual stream on b, and the two never share a sample. Applied before data.train_per_class. The test set is not split.", one_of({"all", "a", "b"})});
  v(c.data.subset_fraction, Field{"data.subset_fraction", "data.train_subset: share of each class's training samples in part a (rounded per class); b holds the rest.", nullptr, 0.0, 1.0, true});
  v(c.data.subset_seed, Field{"data.subset_seed", "data.train_subset: seed of the a/b split; keep it equal in the pretraining and the continual config.", nullptr, 0});
  v(c.data.test_per_class, Field{"data.test_per_class", "Use at most this many test samples per class (seeded choice); 0 uses all.", nullptr, 0});
  v(c.data.num_classes, Field{"data.num_classes", "synthetic: number of classes.", nullptr, 1, 65535});
  v(c.data.channels, Field{"data.channels", "synthetic: image channels (1 or 3).", nullptr, 1, 3});
  v(c.data.workers, Field{"data.workers", "Threads decoding ImageFolder files.", nullptr, 1, 256});

  v(c.model.learner, Field{"model.learner", "The model kind the sequential loop trains: vit-classifier (a ViT with one growing class-incremental head), linear-probe (a linear head on frozen, seeded random patch features; a small learner for tests and baselines) or dytox (DyTox: shared self-attention blocks, a task-attention block with one task token per task, a classifier per task; settings in dytox.*; the model.* preset gives patch geometry, width, heads, and depth = SABs + 1 TAB) or mae (MAE-style self-supervised pretraining: the encoder sees the kept patches, train.token_drop is the mask ratio, a decoder (mae.*) rebuilds the dropped ones; no labels, memory.strategy: none; model.safetensors is the encoder for model.weights) or vl-decoder (vision-language: the ViT encoder plus a causal text decoder with cross-attention that generates answers / captions; data.name sort-of-clevr-vqa or sort-of-clevr-caption; settings in vl.*).", learner_names});
  v(c.model.preset, Field{"model.preset", "Architecture preset (timm names for the 224-px models).", vit_preset_names});
  v(c.model.weights, Field{"model.weights", "A .safetensors file with timm-named weights to start from; empty: random init. A head of another class count is re-created."});
  v(c.model.img_size, Field{"model.img_size", "Override the preset's input size; 0 keeps it (data.image_size must match).", nullptr, 0});
  v(c.model.patch_size, Field{"model.patch_size", "Override the preset's patch size; 0 keeps it.", nullptr, 0});
  v(c.model.in_chans, Field{"model.in_chans", "Override the preset's input channels; 0 keeps it. Gray images are repeated to 3 channels when the model wants 3.", nullptr, 0});
  v(c.model.embed_dim, Field{"model.embed_dim", "Override the preset's width D; 0 keeps it.", nullptr, 0});
  v(c.model.depth, Field{"model.depth", "Override the preset's number of blocks; 0 keeps it.", nullptr, 0});
  v(c.model.num_heads, Field{"model.num_heads", "Override the preset's attention heads; 0 keeps it.", nullptr, 0});
  v(c.model.mlp_ratio, Field{"model.mlp_ratio", "Override the preset's MLP width ratio; 0 keeps it.", nullptr, 0});
  v(c.model.attention, Field{"model.attention", "Attention kernel for training: auto (fused when available and no maps are needed), fused, explicit.", one_of({"auto", "fused", "explicit"})});

  v(c.train.epochs, Field{"train.epochs", "Epochs over each task's new data.", nullptr, 1});
  v(c.train.batch_size, Field{"train.batch_size", "New-data samples per step.", nullptr, 1});
  v(c.train.replay_batch_size, Field{"train.replay_batch_size", "Memory samples replayed per step (the buffer is cycled, never exhausted).", nullptr, 1});
  v(c.train.optimizer, Field{"train.optimizer", "Optimizer: adamw (decoupled decay), adam (L2 decay), sgd (momentum).", one_of({"adamw", "adam", "sgd"})});
  v(c.train.lr, Field{"train.lr", "Peak learning rate.", nullptr, 0.0, kInf, true});
  v(c.train.min_lr, Field{"train.min_lr", "Learning rate at the end of the cosine schedule.", nullptr, 0.0});
  v(c.train.weight_decay, Field{"train.weight_decay", "Weight decay (matrices only; biases, norms, pos_embed and cls_token are not decayed).", nullptr, 0.0});
  v(c.train.beta1, Field{"train.beta1", "Adam beta1.", nullptr, 0.0, 1.0});
  v(c.train.beta2, Field{"train.beta2", "Adam beta2.", nullptr, 0.0, 1.0});
  v(c.train.momentum, Field{"train.momentum", "SGD momentum.", nullptr, 0.0, 1.0});
  v(c.train.schedule, Field{"train.schedule", "Learning-rate schedule within each task: cosine (after linear warmup) or constant.", one_of({"cosine", "constant"})});
  v(c.train.warmup_steps, Field{"train.warmup_steps", "Linear warmup steps at the start of each task.", nullptr, 0});
  v(c.train.grad_clip, Field{"train.grad_clip", "Clip the global gradient norm to this value; 0 disables.", nullptr, 0.0});
  v(c.train.token_drop, Field{"train.token_drop", "Probability of dropping each patch token of new-data samples during training: auto = 1 - memory token fraction (0 when the memory keeps whole samples).", nullptr, 0.0, 1.0});
  v(c.train.token_drop_rescale, Field{"train.token_drop_rescale", "Scale kept token embeddings by 1/(1-p) when dropping, like input dropout (the authors' code).", nullptr});
  v(c.train.token_drop_policy, Field{"train.token_drop_policy", "Which new-data tokens survive dropping: random (the paper: a fresh uniform choice per sample and step) or memory-tokens (the tokens memory.tokens would keep, scored with the current model on every batch; makes new data look like replayed data, see docs/results.md).", token_drop_policy_names});
  v(c.train.full_image_share, Field{"train.full_image_share", "Token-drop guard: this share of new data is shown whole, without token dropping (see train.full_image_unit); the rest drops at train.token_drop. 0 is the paper's recipe (every new sample drops); with heavy dropping a task may never be learned on whole images (see docs/results.md).", nullptr, 0.0, 1.0});
  v(c.train.full_image_unit, Field{"train.full_image_unit", "What train.full_image_share counts: samples (that share of every new-data batch keeps all its tokens; with fill drop the batch is padded to the whole sequence) or steps (that share of each task's steps, spread evenly, shows the whole batch whole).", one_of({"samples", "steps"})});
  v(c.train.drop_without_memory, Field{"train.drop_without_memory", "With train.token_drop: auto, drop new-data tokens also while the memory is empty (the first task), as the paper does (true). The default false trains such tasks on whole images (an explicit train.token_drop always drops from the first step): there is no replay yet for new data to look like, and with heavy dropping and little data the first task may otherwise never be learned on whole images (measured in docs/results.md, \"Token-drop guard\").", nullptr});
  v(c.train.eval_batch_size, Field{"train.eval_batch_size", "Batch size of evaluation (batches run as parallel jobs, one per thread; small batches stay in cache: 64 measured fastest for vit_nano on 2 cores, see docs/performance.md).", nullptr, 1});
  v(c.train.log_every, Field{"train.log_every", "Steps between loss read-outs (the step itself never syncs with the device).", nullptr, 1});
  v(c.train.checkpoint_every, Field{"train.checkpoint_every", "Steps between mid-task checkpoints; 0 checkpoints only at task ends.", nullptr, 0});
  v(c.train.precision, Field{"train.precision", "auto (bf16 autocast with fp32 master weights on CUDA, fp32 on CPU), fp32, or bf16 (autocast on CPU too; fast only on CPUs with AMX/AVX512-BF16).", one_of({"auto", "fp32", "bf16"})});

  v(c.memory.strategy, Field{"memory.strategy", "none (finetune, lower bound), cumulative (replay all past data, upper bound), coreset (s of samples, all tokens), core-tokens (all samples, k of tokens), core-tokenset (s of samples x k of tokens).", memory_strategy_names});
  v(c.memory.retention, Field{"memory.retention", "Fraction r of the training tokens kept in memory. core-tokenset splits it as s = k = sqrt(r) unless sample_fraction / token_fraction are given.", nullptr, 0.0, 1.0, true});
  v(c.memory.sample_fraction, Field{"memory.sample_fraction", "s: fraction of each class's samples kept (null: from retention).", nullptr, 0.0, 1.0, true});
  v(c.memory.token_fraction, Field{"memory.token_fraction", "k: fraction of each kept sample's patch tokens kept (null: from retention).", nullptr, 0.0, 1.0, true});
  v(c.memory.budget_bytes, Field{"memory.budget_bytes", "Byte budget of the whole buffer after the last task, instead of fractions (retention is then ignored). Each task gets a share proportional to its training samples (plus what earlier tasks left unused); coreset keeps as many whole samples as fit, core-tokens as many tokens per sample as fit, core-tokenset picks the tokens per sample on a grid (T, T/2, T/4, ..., 1) by the lowest held-out loss of a linear probe trained on the candidate memory as it would be replayed (see README). Null: use the fractions.", nullptr, 0.0, kInf, true});
  v(c.memory.size_policy, Field{"memory.size_policy", "grow: each task adds its own memory (its fraction of the data, or its share of budget_bytes) and nothing is removed. fixed: the memory holds memory.samples samples (or memory.budget_bytes) from the first task on, split evenly over the classes seen; when new classes arrive each old class keeps the first of its samples in the coreset method's order (iCaRL, DyTox; coreset or core-tokenset with memory.token_fraction).", size_policy_names});
  v(c.memory.samples, Field{"memory.samples", "size_policy fixed: samples the memory holds at every moment (e.g. 2000, DyTox's and iCaRL's CIFAR-100 memory); 0: size it by memory.budget_bytes instead.", nullptr, 0});
  v(c.memory.selection, Field{"memory.selection", "two-stage: coreset per class, then the top tokens of each kept sample (the paper). joint: one pass scores every (sample, token) pair as (1 + gradient-matching gain of the sample) x (token relevance share of memory.tokens) and keeps the top pairs of each class under its byte share, so samples keep different numbers of tokens; new data then keeps as many tokens as a randomly drawn memory sample, so the count does not mark replay (core-tokenset only; memory.coreset is not used; experimental, see docs/results.md).", selection_mode_names});
  v(c.memory.coreset, Field{"memory.coreset", "Sample (coreset) selection method: random, herding (iCaRL, normalised pre-logits features), craig (facility location on last-layer gradients, weights = cluster sizes), gradmatch (non-negative OMP matching the class gradient sum).", sample_selector_names});
  v(c.memory.tokens, Field{"memory.tokens", "Token selection (attribution) method.", token_selector_names});
  v(c.memory.fill, Field{"memory.fill", "How missing tokens are filled, for replay and for token dropping alike: zero-embedding (token embedding 0 before pos_embed), zero-pixel (pixels 0 after normalisation, i.e. mid-gray), drop (removed from the sequence), black (raw pixel 0 in pixel space: mask-free for data on a black background such as (Fashion-)MNIST; the rebuilt image looks like an ordinary one).", fill_mode_names});
  v(c.memory.target, Field{"memory.target", "Class that attribution explains: label (true label) or predicted.", explain_target_names});
  v(c.memory.use_weights, Field{"memory.use_weights", "Weight the replay loss of each stored sample by its coreset weight (CRAIG cluster size, GradMatch weight).", nullptr});
  v(c.memory.coreset_gradient, Field{"memory.coreset_gradient", "Per-sample gradient for craig and gradmatch: logits (softmax(z) - onehot(y), the head-bias gradient) or logits-embedding ([g, g x pre-logits embedding], the head bias and weight gradient).", coreset_gradient_names});
  v(c.memory.gradmatch_lambda, Field{"memory.gradmatch_lambda", "GradMatch: ridge lambda of the weight solve (CORDS default 0.5).", nullptr, 0.0, kInf, true});
  v(c.memory.gradmatch_tolerance, Field{"memory.gradmatch_tolerance", "GradMatch: stop adding samples when ||residual|| / ||class gradient sum|| falls below this; the rest of the budget is filled at random.", nullptr, 0.0, 1.0});
  v(c.memory.coreset_memory_mb, Field{"memory.coreset_memory_mb", "CRAIG: largest N x N float distance matrix (MiB) held per class; bigger classes compute distance blocks on the fly.", nullptr, 0.0});
  v(c.memory.budget_holdout, Field{"memory.budget_holdout", "budget_bytes with core-tokenset: fraction of each class's samples held out to score the candidate sample x token splits.", nullptr, 0.0, 0.5, true});
  v(c.memory.selection_batch_size, Field{"memory.selection_batch_size", "Batch size for attribution during memory selection.", nullptr, 1});
  v(c.memory.feature_batch_size, Field{"memory.feature_batch_size", "Batch size of memory selection's forward passes without attribution (coreset features and gradients, the byte-budget split search's features).", nullptr, 1});
  v(c.memory.atman_factor, Field{"memory.atman_factor", "AtMan: factor f multiplying the (row-min shifted) pre-softmax scores of the suppressed token's key column (0.1 suppresses to 10 %).", nullptr, 0.0, 0.999999});
  v(c.memory.atman_kappa, Field{"memory.atman_kappa", "AtMan: tokens whose patch embeddings have cosine similarity >= kappa with the suppressed token are suppressed too, with factor (1-f)(1-cos)+f.", nullptr, 0.0, 1.0});
  v(c.memory.atman_similarity_rank, Field{"memory.atman_similarity_rank", "AtMan: rank tokens by cosine similarity to the single most relevant token (the paper's appendix variant).", nullptr});
  v(c.memory.atman_chunk, Field{"memory.atman_chunk", "AtMan: perturbed image copies per forward batch (memory vs. speed).", nullptr, 1});

  v(c.learners.classifier.bias_correction, Field{"classifier.bias_correction", "vit-classifier: class-IL bias correction after each task from the second on: none, or weight-aligning (Weight Aligning, Zhao et al. 2020: the head rows of the task's new classes are multiplied by gamma = mean norm of the old classes' rows / mean norm of the new rows; biases unchanged). Applied before the task's memory selection and evaluation.", one_of({"none", "weight-aligning"})});
  v(c.learners.dytox.divergence_weight, Field{"dytox.divergence_weight", "DyTox: weight of the divergence-head loss (binary cross-entropy of an auxiliary classifier on the newest task embedding over 'old' + the new classes); 0 turns it off.", nullptr, 0.0});
  v(c.learners.dytox.kd_temperature, Field{"dytox.kd_temperature", "DyTox: temperature of the distillation from the model of the previous task (weight alpha = old classes / all classes).", nullptr, 0.0, kInf, true});
  v(c.learners.dytox.finetune_epochs, Field{"dytox.finetune_epochs", "DyTox: epochs of the balanced finetuning after each task from the second on (memory plus as many new samples per class as the memory holds per old class; patch embedding, positions and SABs frozen, everything else trained, no distillation or divergence loss, as the original); 0 turns it off.", nullptr, 0});
  v(c.learners.dytox.finetune_lr, Field{"dytox.finetune_lr", "DyTox: the constant learning rate of the balanced finetuning (the original: 5e-5 x batch / 512).", nullptr, 0.0, kInf, true});
  v(c.learners.dytox.task_token_init, Field{"dytox.task_token_init", "DyTox: a new task's token is trunc-normal (std 0.02, what the original code does: its deep copy of the previous token is redrawn) or copy (the previous task's token, as the paper's text suggests).", one_of({"trunc-normal", "copy"})});
  v(c.learners.mae.decoder_dim, Field{"mae.decoder_dim", "mae: width of the MAE decoder; 0: half the encoder's width (rounded to a multiple of mae.decoder_heads).", nullptr, 0});
  v(c.learners.mae.decoder_depth, Field{"mae.decoder_depth", "mae: transformer blocks of the MAE decoder (the reconstruction head, discarded after pretraining).", nullptr, 1});
  v(c.learners.mae.decoder_heads, Field{"mae.decoder_heads", "mae: attention heads of the MAE decoder (must divide its width).", nullptr, 1});
  v(c.learners.mae.norm_pix_loss, Field{"mae.norm_pix_loss", "mae: reconstruct each patch's pixels normalised by the patch's own mean and variance (MAE's default: better features) instead of the normalised pixels themselves.", nullptr});
  v(c.learners.vl.decoder_dim, Field{"vl.decoder_dim", "vl-decoder: width of the text decoder; 0: the image encoder's width.", nullptr, 0});
  v(c.learners.vl.decoder_depth, Field{"vl.decoder_depth", "vl-decoder: decoder blocks (causal self-attention over the text, cross-attention to the image tokens, MLP).", nullptr, 1});
  v(c.learners.vl.decoder_heads, Field{"vl.decoder_heads", "vl-decoder: attention heads of the decoder (must divide its width).", nullptr, 1});
  v(c.learners.vl.max_length, Field{"vl.max_length", "vl-decoder: most tokens generated for an answer or caption (<eos> included).", nullptr, 1});
  v(c.learners.vl.beam_size, Field{"vl.beam_size", "vl-decoder: 1 = greedy decoding; k > 1 = beam search keeping the k most likely hypotheses (sequence log-likelihood, no length penalty).", nullptr, 1});
  v(c.learners.dytox.mixup_alpha, Field{"dytox.mixup_alpha", "DyTox+: MixUp of the new data with lambda ~ Beta(alpha, alpha) per batch and soft targets; 0: off (the original DyTox+ uses 0.8).", nullptr, 0.0});
  v(c.output.dir, Field{"output.dir", "Run folder; empty: runs/<config file name>."});
  v(c.output.progress, Field{"output.progress", "Progress output: auto (a bar on a terminal, periodic lines otherwise), bar, lines, none.", one_of({"auto", "bar", "lines", "none"})});
  v(c.output.progress_seconds, Field{"output.progress_seconds", "Seconds between progress lines when not on a terminal.", nullptr, 0.0, kInf, true});
  v(c.output.save_model, Field{"output.save_model", "Write model.safetensors (timm names) at the end of the run.", nullptr});
}

// ---------------------------------------------------------------- formatting
std::string format_number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{:.1f}", v);
  return fmt::format("{}", v);
}
std::string to_text(const int64_t& v) { return std::to_string(v); }
std::string to_text(const double& v) { return format_number(v); }
std::string to_text(const bool& v) { return v ? "true" : "false"; }
std::string to_text(const std::string& v) { return v.empty() ? "\"\"" : v; }
std::string to_text(const std::optional<double>& v) { return v ? format_number(*v) : "null"; }
std::string to_text(const AutoNumber& v) { return v.is_auto ? "auto" : format_number(v.value); }
std::string to_text(const ClassOrder& v) {
  if (v.mode != "list") return v.mode;
  return fmt::format("[{}]", fmt::join(v.classes, ", "));
}

const char* name_of(FillMode v) { return fill_mode_name(v); }
using cts::name_of;
const char* name_of(TokenDropPolicy v) { return token_drop_policy_names().at(static_cast<size_t>(v)).c_str(); }
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
std::string to_text(const E& v) {
  return name_of(v);
}

const char* type_name(const int64_t*) { return "integer"; }
const char* type_name(const double*) { return "number"; }
const char* type_name(const bool*) { return "true/false"; }
const char* type_name(const std::string*) { return "string"; }
const char* type_name(const std::optional<double>*) { return "number or null"; }
const char* type_name(const AutoNumber*) { return "auto or number"; }
const char* type_name(const ClassOrder*) { return "seeded, natural or list of integers"; }
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
const char* type_name(const E*) {
  return "string";
}

// ---------------------------------------------------------------- parsing
struct Located {
  YAML::Node node;
  std::string where;  // "FILE line L" or "--set key=value"
};

[[noreturn]] void bad_value(const Located& at, const Field& f, const std::string& expected) {
  std::string got = at.node.IsScalar() ? "'" + at.node.Scalar() + "'" : (at.node.IsSequence() ? "a list" : (at.node.IsMap() ? "a mapping" : "null"));
  throw_input("{}: {} must be {}, got {}", at.where, f.key, expected, got);
}

void check_range(double v, const Located& at, const Field& f, const std::string& shown = "") {
  if (!std::isfinite(v)) bad_value(at, f, "a finite number");
  const bool low_bad = f.min_exclusive ? !(v > f.min) : v < f.min;
  if (low_bad || v > f.max) {
    std::string range;
    if (std::isfinite(f.min) && std::isfinite(f.max)) range = fmt::format("{}{}, {}]", f.min_exclusive ? "(" : "[", f.min, f.max);
    else if (std::isfinite(f.min)) range = fmt::format("{} {}", f.min_exclusive ? ">" : ">=", f.min);
    else range = fmt::format("<= {}", f.max);
    throw_input("{}: {} = {} is out of range; accepted: {}", at.where, f.key, shown.empty() ? fmt::format("{}", v) : shown, range);
  }
}

double parse_double(const Located& at, const Field& f) {
  if (!at.node.IsScalar()) bad_value(at, f, "a number");
  try {
    return at.node.as<double>();
  } catch (const YAML::Exception&) {
    bad_value(at, f, "a number");
  }
}

void parse(const Located& at, const Field& f, int64_t& out) {
  if (!at.node.IsScalar()) bad_value(at, f, "an integer");
  int64_t v;
  try {
    v = at.node.as<int64_t>();
  } catch (const YAML::Exception&) {
    bad_value(at, f, "an integer");
  }
  check_range(static_cast<double>(v), at, f, std::to_string(v));
  out = v;
}

void parse(const Located& at, const Field& f, double& out) {
  double v = parse_double(at, f);
  check_range(v, at, f);
  out = v;
}

void parse(const Located& at, const Field& f, bool& out) {
  if (!at.node.IsScalar()) bad_value(at, f, "true or false");
  try {
    out = at.node.as<bool>();
  } catch (const YAML::Exception&) {
    bad_value(at, f, "true or false");
  }
}

void parse(const Located& at, const Field& f, std::string& out) {
  if (at.node.IsNull()) {
    if (f.choices) bad_value(at, f, "one of: " + fmt::format("{}", fmt::join(f.choices(), ", ")));
    out.clear();
    return;
  }
  if (!at.node.IsScalar()) bad_value(at, f, "a string");
  std::string v = at.node.Scalar();
  if (f.choices) {
    auto accepted = f.choices();
    if (std::find(accepted.begin(), accepted.end(), v) == accepted.end()) {
      throw_input("{}: {} = '{}' is not accepted; accepted: {}", at.where, f.key, v, fmt::join(accepted, ", "));
    }
  }
  out = v;
}

// An enum key: one of f.choices(), which lists the names in enum order.
template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
void parse(const Located& at, const Field& f, E& out) {
  const auto accepted = f.choices();
  if (!at.node.IsScalar()) bad_value(at, f, "one of: " + fmt::format("{}", fmt::join(accepted, ", ")));
  const std::string v = at.node.Scalar();
  const auto it = std::find(accepted.begin(), accepted.end(), v);
  if (it == accepted.end()) throw_input("{}: {} = '{}' is not accepted; accepted: {}", at.where, f.key, v, fmt::join(accepted, ", "));
  out = static_cast<E>(it - accepted.begin());
}

void parse(const Located& at, const Field& f, std::optional<double>& out) {
  if (at.node.IsNull() || (at.node.IsScalar() && (at.node.Scalar() == "null" || at.node.Scalar() == "~"))) {
    out.reset();
    return;
  }
  double v = parse_double(at, f);
  check_range(v, at, f);
  out = v;
}

void parse(const Located& at, const Field& f, AutoNumber& out) {
  if (at.node.IsScalar() && at.node.Scalar() == "auto") {
    out = AutoNumber{};
    return;
  }
  if (!at.node.IsScalar()) bad_value(at, f, "auto or a number");
  double v;
  try {
    v = at.node.as<double>();
  } catch (const YAML::Exception&) {
    bad_value(at, f, "auto or a number");
  }
  check_range(v, at, f);
  out = AutoNumber{false, v};
}

void parse(const Located& at, const Field& f, ClassOrder& out) {
  if (at.node.IsScalar() && (at.node.Scalar() == "seeded" || at.node.Scalar() == "natural")) {
    out = ClassOrder{at.node.Scalar(), {}};
    return;
  }
  if (!at.node.IsSequence()) bad_value(at, f, "seeded, natural or a list of class ids");
  ClassOrder order{"list", {}};
  for (const auto& item : at.node) {
    try {
      order.classes.push_back(item.as<int64_t>());
    } catch (const YAML::Exception&) {
      bad_value(at, f, "a list of integer class ids");
    }
  }
  if (order.classes.empty()) bad_value(at, f, "a non-empty list of class ids");
  out = order;
}

// Levenshtein distance for "did you mean".
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> all_keys() {
  std::vector<std::string> keys;
  Config c;
  visit_config(c, [&](auto&, const Field& f) { keys.emplace_back(f.key); });
  return keys;
}

std::set<std::string> section_names() {
  std::set<std::string> s;
  for (const auto& k : all_keys()) {
    auto dot = k.find('.');
    if (dot != std::string::npos) s.insert(k.substr(0, dot));
  }
  return s;
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& where) {
  const auto keys = all_keys();
  std::string best;
  size_t best_d = 1000;
  std::vector<std::string> candidates = keys;
  for (const auto& sec : section_names()) candidates.push_back(sec);
  for (const auto& k : candidates) {
    size_t d = edit_distance(key, k);
    const auto dot = k.rfind('.');
    if (dot != std::string::npos) d = std::min(d, edit_distance(key, k.substr(dot + 1)) + 1);
    if (d < best_d) best_d = d, best = k;
  }
  std::string section = key.substr(0, key.find('.'));
  std::vector<std::string> siblings;
  for (const auto& k : keys)
    if (k.rfind(section + ".", 0) == 0) siblings.push_back(k.substr(section.size() + 1));
  std::string hint = best_d <= 3 ? fmt::format(" (did you mean '{}'?)", best) : "";
  if (!siblings.empty()) {
    throw_input("{}: unknown key '{}'{}; keys of {}: {}", where, key, hint, section, fmt::join(siblings, ", "));
  }
  throw_input("{}: unknown key '{}'{}; top-level keys: seed, device, threads and the sections {}", where, key, hint,
              fmt::join(section_names(), ", "));
}

void set_key(Config& c, const std::string& key, const Located& at) {
  bool found = false;
  visit_config(c, [&](auto& value, const Field& f) {
    if (!found && key == f.key) {
      parse(at, f, value);
      found = true;
    }
  });
  if (!found) unknown_key(key, at.where);
}

void flatten(const YAML::Node& node, const std::string& prefix, const std::string& origin,
             std::vector<std::pair<std::string, Located>>& out) {
  const auto sections = section_names();
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) throw_input("{} line {}: keys must be plain names", origin, it->first.Mark().line + 1);
    const std::string key = prefix.empty() ? it->first.Scalar() : prefix + "." + it->first.Scalar();
    const std::string where = fmt::format("{} line {}", origin, it->first.Mark().line + 1);
    if (prefix.empty() && sections.count(key)) {
      if (it->second.IsNull()) continue;  // an empty section
      if (!it->second.IsMap()) {
        std::vector<std::string> sub;
        for (const auto& k : all_keys())
          if (k.rfind(key + ".", 0) == 0) sub.push_back(k.substr(key.size() + 1));
        throw_input("{}: '{}' must be a mapping of keys ({})", where, key, fmt::join(sub, ", "));
      }
      flatten(it->second, key, origin, out);
      continue;
    }
    out.push_back({key, Located{it->second, where}});
  }
}

void apply_yaml(Config& c, const YAML::Node& root, const std::string& origin) {
  if (!root || root.IsNull()) return;  // an empty file: all defaults
  if (!root.IsMap()) throw_input("{}: a config must be a YAML mapping of keys (seed, data, model, train, memory, output)", origin);
  std::vector<std::pair<std::string, Located>> leaves;
  flatten(root, "", origin, leaves);
  std::set<std::string> seen;
  for (const auto& [key, at] : leaves) {
    if (!seen.insert(key).second) throw_input("{}: key '{}' is given twice", at.where, key);
    set_key(c, key, at);
  }
}

}  // namespace

void apply_override(Config& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw_input("--set {}: expected key=value, e.g. --set memory.tokens=gradlrp", assignment);
  }
  const std::string key = assignment.substr(0, eq);
  const std::string value = assignment.substr(eq + 1);
  YAML::Node node;
  try {
    node = value.empty() ? YAML::Node(YAML::NodeType::Null) : YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw_input("--set {}: cannot parse value '{}': {}", assignment, value, e.msg);
  }
  set_key(config, key, Located{node, "--set " + assignment});
}

Config parse_config(const std::string& yaml_text, const std::string& origin, const std::vector<std::string>& overrides) {
  Config c;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw_input("{} line {}: invalid YAML: {}", origin, e.mark.line + 1, e.msg);
  }
  apply_yaml(c, root, origin);
  for (const auto& o : overrides) apply_override(c, o);
  validate_config(c);
  return c;
}

Config load_config(const std::filesystem::path& path, const std::vector<std::string>& overrides) {
  const std::string text = read_file(path, "config file");
  Config c = parse_config(text, path.string(), overrides);
  c.name = path.stem().string();
  return c;
}

const std::vector<std::string>& token_drop_policy_names() {
  static const std::vector<std::string> names = {"random", "memory-tokens"};
  return names;
}

void validate_config(const Config& c) {
  if (c.data.name == "imagefolder" && c.data.root.empty()) throw_input("data.root: imagefolder needs the dataset folder (with {}/ and {}/ inside)", c.data.train_split, c.data.test_split);
  if (c.data.name == "imagefolder" && c.data.image_size == 0) throw_input("data.image_size: imagefolder needs a size (e.g. 224)");
  if (c.model.weights.size() && c.model.weights.find(".safetensors") == std::string::npos) {
    throw_input("model.weights = '{}': expected a .safetensors file", c.model.weights);
  }
  if (c.train.min_lr > c.train.lr) throw_input("train.min_lr = {} must not exceed train.lr = {}", c.train.min_lr, c.train.lr);
  resolve_memory_fractions(c.memory);  // throws on impossible combinations
}

std::string config_to_yaml(const Config& config) {
  Config c = config;
  std::ostringstream out;
  out << "# resolved cts configuration: every key, defaults filled in\n";
  std::string section;
  visit_config(c, [&](auto& value, const Field& f) {
    std::string key = f.key;
    const auto dot = key.find('.');
    if (dot == std::string::npos) {
      out << key << ": " << to_text(value) << "\n";
      return;
    }
    const std::string sec = key.substr(0, dot);
    if (sec != section) {
      section = sec;
      out << sec << ":\n";
    }
    out << "  " << key.substr(dot + 1) << ": " << to_text(value) << "\n";
  });
  return out.str();
}

std::vector<ConfigKeyDoc> config_key_docs() {
  std::vector<ConfigKeyDoc> docs;
  Config c;
  visit_config(c, [&](auto& value, const Field& f) {
    ConfigKeyDoc d;
    d.key = f.key;
    d.type = type_name(&value);
    d.default_value = to_text(value);
    if (f.choices) d.accepted = fmt::format("{}", fmt::join(f.choices(), " \\| "));
    else if (std::isfinite(f.min) || std::isfinite(f.max)) {
      if (std::isfinite(f.min) && std::isfinite(f.max)) d.accepted = fmt::format("{}{}, {}]", f.min_exclusive ? "(" : "[", f.min, f.max);
      else d.accepted = fmt::format("{} {}", f.min_exclusive ? ">" : ">=", f.min);
    }
    d.help = f.help;
    docs.push_back(d);
  });
  return docs;
}

std::string config_reference_markdown() {
  std::ostringstream out;
  out << "# Configuration reference\n\n"
      << "Generated by `cts config keys --markdown` from the one list of keys in `src/config/config.cpp`;\n"
      << "a test fails if this file and the code disagree. Every key can be set in the YAML file\n"
      << "(nested by section) or on the command line with `--set section.key=value`. Unknown keys,\n"
      << "wrong types and values out of range stop the run with exit code 2.\n\n"
      << "| key | type | default | accepted | description |\n|---|---|---|---|---|\n";
  for (const auto& d : config_key_docs()) {
    out << "| `" << d.key << "` | " << d.type << " | `" << d.default_value << "` | " << d.accepted << " | " << d.help << " |\n";
  }
  return out.str();
}

}  // namespace cts
