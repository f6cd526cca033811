// The learner interface: what the sequential loop (train/loop.hpp) asks of a model kind.
// The loop owns the task sequence, data order, token dropping, replay sampling, the
// optimizer and its schedule, mixed precision, checkpoints, memory selection, metrics and
// the run folder; a learner owns its network and says what a training step's loss, an
// evaluation, a coreset row and an explained score are. The loop calls the learner, never
// the reverse. A new model kind is one folder under src/learners/ plus one line in
// learners/registry.cpp (docs/design.md has the table of hooks: who calls what, when).
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cts/data/registry.hpp"
#include "cts/data/task_split.hpp"
#include "cts/eval/metrics.hpp"
#include "cts/learners/learner_settings.hpp"
#include "cts/memory/memory_model.hpp"
#include "cts/models/model_config.hpp"
#include "cts/models/vit.hpp"

namespace cts {

// What a learner is built from.
struct LearnerContext {
  const ModelConfig& model;    // the model section (model.learner names the kind)
  const LearnerSettings& settings;  // learner-specific sections (dytox.*)
  const DatasetSplits& data;   // train and test sets
  const TaskSplit& split;      // classes of each task, label -> head index
  std::string dataset;         // data.name, for messages
  torch::Device device{torch::kCPU};
  uint64_t seed = 0;
  // The run's memory strategy (memory.strategy) and new-data drop rate (train.token_drop after
  // `auto` is resolved), for learners that only make sense with some (mae: none, a rate > 0).
  std::string memory_strategy = "none";
  double token_drop = 0.0;
};

// A batch as the loop hands it to a learner: new data (full images, token dropping as
// `keep`) or replay (buffer samples rebuilt from their kept tokens, or whole past samples for
// the cumulative baseline). Tensors are on the CPU except where noted; the learner moves
// what it uses to its device.
struct Batch {
  torch::Tensor images;   // uint8 [B, C, H, W], missing patches 0; undefined when only `patches` is given
  torch::Tensor patches;  // uint8 [B, K, C, p, p]: only the kept patches, padding 0 (fill: drop); else undefined
  TokenKeep keep;         // kept positions [B, K] (-1 padding), fill, rescale; positions undefined = every token
  torch::Tensor labels;   // int64 [B] dataset class ids
  Payload payload;        // per-sample integer data (may be empty)
  torch::Tensor weights;  // float [B] replay loss weights (memory.use_weights); undefined = unweighted
  uint64_t stream = 0;    // a seed for this batch's random choices in the learner (augmentation), from the run seed and the step
  // Data-parallel runs (core/distributed.hpp): this process's share of a global batch of
  // `global_size` samples whose weights sum to `global_weight_sum`; the loop sums the ranks'
  // gradients, so a loss that is a mean over the batch divides by the global size (mean_of).
  // -1: not sharded (a single process).
  int64_t global_size = -1;
  double global_weight_sum = -1.0;
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  bool partial() const { return keep.positions.defined(); }
  bool sharded() const { return global_size >= 0; }
  // Samples of the whole batch (all ranks).
  int64_t total_size() const { return sharded() ? global_size : size(); }
  // The batch mean of per-sample values [B] (float): their mean, or, for a rank's share, their
  // sum over the global size (the ranks' parts add up to the global mean).
  torch::Tensor mean_of(const torch::Tensor& per_sample) const {
    return sharded() ? per_sample.sum() / double(std::max<int64_t>(global_size, 1)) : per_sample.mean();
  }
  // Σ w·v / Σ w over the whole batch (`w` = this share's weights on the values' device).
  torch::Tensor weighted_mean_of(const torch::Tensor& per_sample, const torch::Tensor& w) const {
    auto num = (per_sample * w.to(per_sample.dtype())).sum();
    return sharded() ? num / std::max(global_weight_sum, 1e-12) : num / w.sum().to(per_sample.dtype()).clamp_min(1e-12);
  }
};

// One named term of a step's loss, computed when the loop calls `compute` (an undefined tensor
// counts 0). The terms of a step are independent computations (no shared autograd graph): the
// loop computes them as parallel jobs (core/threads.hpp), each with its own backward, and
// adds their gradients in term order; it logs each term's mean as loss_<name>. A learner
// whose loss does not split returns one term.
struct LossTerm {
  std::string name;
  std::function<torch::Tensor()> compute;
};
using StepLoss = std::vector<LossTerm>;

// A training phase after a task's epochs (e.g. DyTox's balanced finetuning): `epochs` over a
// class-balanced set — the memory's samples of earlier tasks and, of each new class, as many
// of its samples (a seeded draw) as the memory holds per old class — at a constant `lr`.
struct FinetunePhase {
  int64_t epochs = 0;
  double lr = 0.0;
};

// Helpers of learners built from a ViT encoder and a module of their own (mae, vl-decoder).
// The encoder's parameters by timm name without the head (never used or saved by them).
std::vector<std::pair<std::string, torch::Tensor>> encoder_parameters_without_head(const VisionTransformer& encoder);
// A module's parameters by name, each prefixed with `prefix` (e.g. "decoder.").
std::vector<std::pair<std::string, torch::Tensor>> prefixed_parameters(const torch::nn::Module& module, const std::string& prefix);
// Copies every tensor of `into` from the same name in `from` (no autograd); InputError naming
// `who` for a missing tensor or a shape mismatch.
void copy_named_tensors(const std::map<std::string, torch::Tensor>& into, const std::map<std::string, torch::Tensor>& from, const std::string& who);

class Learner : public MemoryModel {
 public:
  ~Learner() override = default;
  virtual std::string kind() const = 0;

  // ---- structure
  // Patch size of the input grid (the buffer stores patches of this size).
  virtual int64_t patch_size() const = 0;
  // Names of the StepLoss terms, in order (the same every step).
  virtual std::vector<std::string> loss_terms() const = 0;
  // The metrics evaluate() reports, primary first.
  virtual std::vector<MetricSpec> metrics() const = 0;
  // Parameters the optimizer trains now (frozen ones left out), by stable name.
  virtual std::vector<std::pair<std::string, torch::Tensor>> trainable_parameters() = 0;
  virtual int64_t parameter_count() const = 0;
  // What loading model.weights adapted (empty without weights), for the run log.
  virtual std::vector<std::string> weight_notes() const { return {}; }

  // ---- the task loop
  // Before the first step of task t (grow heads, freeze parts, snapshot a teacher). Not called
  // when a run resumes in the middle of task t: the checkpointed state already includes it.
  virtual void begin_task(int64_t task) = 0;
  // The loss of one optimizer step as terms (train mode; the loop computes them under autocast,
  // back-propagates, clips and steps). `replay` is null when no memory is replayed; the
  // batches live until the loop has computed every term.
  virtual StepLoss step_loss(int64_t task, const Batch& new_data, const Batch* replay) = 0;
  // After the last step of task t, before its memory selection and evaluation.
  virtual void end_task(int64_t task) {}
  // The phase to run after task t's memory selection and before its evaluation, if any; the
  // loop calls begin_finetune(t), then for every batch finetune_loss (terms as step_loss; a
  // part may be empty: no new samples or no memory samples in the batch; its optimizer trains
  // trainable_parameters() as they are during the phase), then end_finetune(t).
  virtual std::optional<FinetunePhase> finetune_phase(int64_t task) { return std::nullopt; }
  virtual void begin_finetune(int64_t task) {}
  virtual StepLoss finetune_loss(int64_t task, const Batch& new_data, const Batch* memory) { return step_loss(task, new_data, memory); }
  virtual void end_finetune(int64_t task) {}
  // Scores on the test sets of `tasks` (ascending task ids) after `tasks_trained` tasks (0: the
  // initial model): one TaskScores per task of the run, by metric name; NaN where undefined
  // and for tasks not listed. Eval mode, no gradients. The loop lists what the metrics need
  // (eval/evaluate.hpp, tasks_to_evaluate): the tasks trained and the next one.
  virtual std::vector<TaskScores> evaluate(const Dataset& test, int64_t tasks_trained, const std::vector<int64_t>& tasks, int64_t batch_size) = 0;

  // ---- checkpoints and outputs
  // The state to checkpoint: tensors by name plus what rebuilds the structure (head size,
  // task tokens, ...). load_state() gets back exactly what state() gave.
  virtual std::map<std::string, torch::Tensor> state_tensors() const = 0;
  virtual nlohmann::json state_info() const = 0;
  virtual void load_state(const nlohmann::json& info, const std::map<std::string, torch::Tensor>& tensors) = 0;
  // The final weights for users (e.g. timm-named .safetensors), with `metadata` added.
  virtual void save_weights(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) const = 0;
};

}  // namespace cts
