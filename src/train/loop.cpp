// The sequential loop: task loop, new-data batches with token dropping, replay batches from
// the buffer (or past data for the cumulative baseline), the optimizer step, evaluation,
// memory selection, checkpoints and resume. Model specifics live in the learner
// (learners/learner.hpp); the run folder in run_folder.hpp; the loop's checkpointed state in
// loop_state.hpp.
#include "cts/train/loop.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <future>
#include <optional>
#include <thread>

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "cts/attribution/attention_record.hpp"
#include "cts/attribution/registry.hpp"
#include "cts/core/console.hpp"
#include "cts/core/crash_test.hpp"
#include "cts/core/distributed.hpp"
#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/core/threads.hpp"
#include "cts/coreset/registry.hpp"
#include "cts/data/patches.hpp"
#include "cts/data/registry.hpp"
#include "cts/data/task_split.hpp"
#include "cts/eval/evaluate.hpp"
#include "cts/learners/registry.hpp"
#include "cts/memory/budget.hpp"
#include "cts/memory/selection.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/train/checkpoint.hpp"
#include "cts/train/loop_state.hpp"
#include "cts/train/optimizer.hpp"
#include "cts/train/precision.hpp"
#include "cts/train/run_folder.hpp"

namespace cts {

bool full_image_step(double share, int64_t step_in_task) {
  if (share <= 0.0) return false;
  if (share >= 1.0) return true;
  return std::floor(double(step_in_task + 1) * share) > std::floor(double(step_in_task) * share);
}

namespace {

// Where model.weights came from: the file, its size and fnv1a64, and what the cts run that
// wrote it recorded in its metadata. Warns when that run trained on the samples this run's
// stream uses (data.train_subset).
nlohmann::json weights_provenance(const std::string& file, const DataConfig& data) {
  nlohmann::json w = {{"file", std::filesystem::absolute(file).lexically_normal().string()}};
  const std::string bytes = read_file(file);
  w["bytes"] = int64_t(bytes.size());
  w["fnv1a64"] = fmt::format("{:016x}", hash_tag(bytes));
  const auto header = read_safetensors_header(file);
  for (const auto& [key, value] : header.metadata)
    if (key.rfind("cts.", 0) == 0 && key != "cts.class_order") w[key.substr(4)] = value;
  if (w.contains("train_subset") && w.contains("data") && w["data"] == data.name) {
    const std::string part = w["train_subset"];
    const bool same_split = w.value("subset_seed", "") == std::to_string(data.subset_seed) && w.value("subset_fraction", "") == fmt::format("{}", data.subset_fraction);
    // Disjoint only when both sides are the two different halves of the same split.
    const bool disjoint = part != "all" && same_split && data.train_subset != "all" && data.train_subset != part;
    if (!disjoint) {
      Console::get().info("warning: model.weights {} were trained on data.train_subset {} of {}{}; this run's stream (data.train_subset {}, fraction {}, seed {}) "
                          "shares samples with it",
                          file, part, data.name, same_split ? "" : fmt::format(" (fraction {}, seed {})", w.value("subset_fraction", "?"), w.value("subset_seed", "?")),
                          data.train_subset, data.subset_fraction, data.subset_seed);
      w["overlaps_stream"] = true;
    }
  }
  return w;
}

// A data-parallel rank's private folder for files passed between ranks, in $TMPDIR. Folders
// of ranks that were killed (their process is gone) are removed first.
std::filesystem::path make_scratch_folder(int rank) {
  const auto tmp = std::filesystem::temp_directory_path();
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(tmp, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("cts-rank", 0) != 0 || name.find('-', 8) == std::string::npos) continue;
    const std::string pid = name.substr(name.rfind('-') + 1);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(pid_t(std::stoll(pid)), 0) != 0 && errno == ESRCH) std::filesystem::remove_all(e.path(), ec);
  }
  const auto dir = tmp / fmt::format("cts-rank{}-{}", rank, ::getpid());
  ensure_directory(dir);
  return dir;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string device_name(const torch::Device& d) { return d.is_cuda() ? "cuda" : "cpu"; }

class SequentialLoop {
 public:
  SequentialLoop(const Config& config, const RunOptions& options) : cfg_(config), opt_(options) {}
  ~SequentialLoop() {
    std::error_code ec;
    if (!scratch_.empty()) std::filesystem::remove_all(scratch_, ec);
  }
  RunSummary run();

 private:
  RunSummary run_steps();
  void setup();
  void restore(const CheckpointData& ck);
  void train_task(int64_t task, int64_t start_epoch, int64_t start_step);
  void finetune(int64_t task, const FinetunePhase& phase);
  // Buffer samples at `rows` as a Batch: kept tokens, the configured fill and rescale, weights.
  Batch buffer_batch(const torch::Tensor& rows) const;
  // One optimizer step on the loss terms (parallel jobs, gradients added); returns [terms] float64.
  torch::Tensor optimize(const StepLoss& terms, Optimizer& optimizer, double lr);
  torch::Tensor training_step(int64_t task, int64_t epoch, int64_t step, int64_t step_in_task, const torch::Tensor& images_u8,
                              const torch::Tensor& ids, double lr);
  // `phase`: the random streams of training (0) or of a finetuning phase (1).
  TokenKeep drop_tokens(int64_t task, int64_t epoch, int64_t step, const torch::Tensor& images_u8, const torch::Tensor& ids, int64_t phase = 0);
  std::optional<Batch> replay_batch(int64_t task, int64_t step_in_task);
  void evaluate(int64_t task);
  void select_memory(int64_t task);
  void update_memory_stats(int64_t tasks_done);
  void write_outputs(bool final);
  void checkpoint(int64_t task, int64_t epoch, int64_t step, bool task_complete);
  void fold_losses();
  bool should_stop();
  OptimizerOptions optimizer_options() const;
  torch::Tensor task_order(int64_t task, int64_t epoch, int64_t n) const;
  uint64_t seed() const { return static_cast<uint64_t>(cfg_.seed); }
  // Whether new data drops tokens at this step of a task (or of a finetuning phase): a drop
  // rate, not a whole step of the token-drop guard (full_image_unit: steps), and, for the rate
  // coupled to the memory (token_drop: auto), a memory to look like unless drop_without_memory.
  // An explicit rate (e.g. the Fig. 2 pretraining without any memory) drops from the first step.
  bool drops_new_data(int64_t step_in_task) const {
    if (st_.token_drop <= 0.0) return false;
    if (cfg_.train.full_image_unit == "steps" && full_image_step(cfg_.train.full_image_share, step_in_task)) return false;
    return cfg_.train.drop_without_memory || !cfg_.train.token_drop.is_auto || !buffer_.empty();
  }

  // The new-data drop rate train.token_drop asks for with memory fractions `f` (auto: 1 − k
  // for memories of partial samples, else 0).
  double configured_drop_rate(const MemoryFractions& f) const {
    if (!cfg_.train.token_drop.is_auto) return cfg_.train.token_drop.value;
    return keeps_partial_samples(cfg_.memory.strategy) ? 1.0 - f.token_fraction : 0.0;
  }
  // Buffer rows `rows` (a whole batch) as this process's Batch: buffer_batch(rows) in a single
  // process; a data-parallel rank's share, knowing the global size and weight sum.
  Batch buffer_share(const torch::Tensor& rows) const {
    if (!dist_.active()) return buffer_batch(rows);
    const auto mine = local_share(rows);
    Batch b;
    if (mine.size(0) > 0) b = buffer_batch(mine);
    else b.labels = torch::zeros({0}, torch::kInt64);
    b.global_size = rows.size(0);
    if (b.weights.defined()) b.global_weight_sum = buffer_.weights().index_select(0, rows).sum().item<double>();
    return b;
  }
  // log.jsonl is rank 0's (the other ranks of a data-parallel run never touch the run folder).
  void log(const nlohmann::json& record) {
    if (log_.is_open()) log_.append(record);
  }
  // Data-parallel runs: the ranks' scores of their test shards combined into the whole test
  // set's (each score is a mean over samples: weighted by the shard's samples of each task).
  std::vector<TaskScores> evaluate_tasks(Learner& learner, int64_t tasks_trained);
  // Rank 0's checkpoint (resume) on every rank: the files travel as bytes to a private folder.
  std::optional<CheckpointData> checkpoint_everywhere(bool resuming, std::optional<CheckpointData> ck);
  // Rank 0's buffer (and its selection's counts) on every rank after a task's selection.
  void share_buffer(SelectionReport& rep);
  // A rank's share of a global batch of dataset (or buffer) rows.
  torch::Tensor local_share(const torch::Tensor& rows) const {
    if (!dist_.active()) return rows;
    const auto [lo, hi] = dist_.share(rows.size(0));
    return rows.narrow(0, lo, hi - lo);
  }
  // The same stop decision on every rank: any rank asked to stop (agreed in the step's
  // all-reduce, or here between tasks).
  bool stop_agreed();

  Config cfg_;
  RunOptions opt_;
  Distributed dist_;
  std::shared_ptr<const Dataset> test_shard_;  // this rank's test samples (data-parallel runs)
  std::filesystem::path scratch_;              // private folder for files passed between ranks
  bool peer_stop_ = false;                     // the last step's agreed stop flag
  torch::Device device_{torch::kCPU};
  bool bf16_ = false;  // autocast forward passes (train.precision)
  std::filesystem::path dir_;
  DatasetSplits data_;
  TaskSplit split_;
  std::unique_ptr<LearnerContext> lctx_;  // what built learner_ (and builds the initial model's copy)
  std::unique_ptr<Learner> learner_;
  // The initial model's evaluation alongside task 0's training: signalled when its scores are
  // in st_.record (a checkpoint written during task 0 waits for them).
  std::shared_future<void> initial_eval_done_;
  // Whether the initial evaluation can run on a copy of the model alongside task 0's training.
  bool initial_eval_alongside() const;
  // A copy of the learner as it is now (state copied; the global generator untouched).
  std::unique_ptr<Learner> copy_of_learner() const;
  // FWT's b_j: evaluates `initial` (the initial model or its copy) and records its scores and seconds.
  void evaluate_initial(Learner& initial);
  std::vector<std::string> loss_terms_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<SampleSelector> coreset_;
  std::unique_ptr<TokenSelector> token_selector_;
  TokenBuffer buffer_;
  LoopState st_;
  JsonlLog log_;
  std::vector<int64_t> task_samples_;  // training samples of each task (byte-budget shares)
  int64_t num_tokens_ = 0;
  int64_t steps_this_process_ = 0;
  int64_t global_step_ = 0;  // optimizer steps of the whole run (checkpoint_every counts these)
  RunFolderLock lock_;
  bool stopped_ = false;
  Clock::time_point run_start_;
};

torch::Tensor SequentialLoop::task_order(int64_t task, int64_t epoch, int64_t n) const {
  auto gen = make_generator(seed(), "data_order", {task, epoch});
  return torch::randperm(n, gen, torch::kInt64);
}

OptimizerOptions SequentialLoop::optimizer_options() const {
  OptimizerOptions o;
  o.kind = cfg_.train.optimizer;
  o.weight_decay = cfg_.train.weight_decay;
  o.beta1 = cfg_.train.beta1;
  o.beta2 = cfg_.train.beta2;
  o.momentum = cfg_.train.momentum;
  return o;
}

bool SequentialLoop::should_stop() {
  if (opt_.stop_requested && opt_.stop_requested->load()) return true;
  return opt_.stop_after_steps >= 0 && steps_this_process_ >= opt_.stop_after_steps;
}

bool SequentialLoop::stop_agreed() {
  if (!dist_.active()) return should_stop();
  std::vector<torch::Tensor> flag{torch::full({1}, should_stop() ? 1.0f : 0.0f)};
  dist_.all_reduce_sum(flag);
  return flag[0].item<float>() > 0.0f;
}

void SequentialLoop::setup() {
  st_.fractions = resolve_memory_fractions(cfg_.memory);
  const DistributedEnv denv = distributed_env_from_environment();
  // threads: 0 means every core of the node; the processes of a data-parallel job on one node
  // (LOCAL_WORLD_SIZE, set by torchrun) share them.
  int64_t threads = cfg_.threads;
  if (threads == 0 && denv.world > 1) {
    const char* lws = std::getenv("LOCAL_WORLD_SIZE");
    const int64_t local_world = lws ? std::max<int64_t>(1, std::atoll(lws)) : 1;
    threads = std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()) / local_world);
  }
  configure_threads(threads);
  device_ = choose_device(opt_.device.empty() ? cfg_.device : opt_.device);
  if (denv.world > 1 && device_.is_cuda() && !device_.has_index()) device_ = torch::Device(torch::kCUDA, int8_t(denv.local_rank));
  dist_ = Distributed(denv, device_);
  if (!dist_.is_main()) Console::get().set_quiet(true);
  if (dist_.active()) scratch_ = make_scratch_folder(dist_.rank());
  bf16_ = use_bf16_autocast(cfg_.train.precision, device_);
  dir_ = run_directory(cfg_, opt_.out_dir, opt_.resume_dir);

  // Data and tasks.
  data_ = open_dataset(cfg_.data, vit_config(cfg_.model).patch_size, seed());
  split_ = make_task_split(data_.train->num_classes(), cfg_.data.tasks, cfg_.data.class_order, seed());
  if (dist_.active()) {  // test sample i belongs to rank i mod world
    test_shard_ = std::make_shared<SubsetDataset>(data_.test, torch::arange(dist_.rank(), data_.test->size(), dist_.world(), torch::kInt64));
  }
  for (int64_t t = 0; t < split_.num_tasks(); ++t) {
    if (split_.task_indices(*data_.train, t).size(0) == 0) throw_input("data: task {} has no training samples (classes {})", t, fmt::join(split_.task_classes[size_t(t)], ", "));
  }

  // The learner.
  lctx_ = std::make_unique<LearnerContext>(LearnerContext{cfg_.model, cfg_.learners, data_, split_, cfg_.data.name, device_, seed()});
  lctx_->memory_strategy = name_of(cfg_.memory.strategy);
  lctx_->token_drop = configured_drop_rate(st_.fractions);
  learner_ = make_learner(*lctx_);
  num_tokens_ = learner_->num_tokens();
  loss_terms_ = learner_->loss_terms();
  st_.loss_sums.assign(loss_terms_.size(), 0.0);

  // Memory.
  const MemoryStrategy strategy = cfg_.memory.strategy;
  const bool partial_memory = keeps_partial_samples(strategy);
  for (int64_t t = 0; t < split_.num_tasks(); ++t) task_samples_.push_back(split_.task_indices(*data_.train, t).size(0));
  const auto shape = data_.train->shape();
  st_.replay_token_fraction = st_.fractions.token_fraction;
  if (st_.fractions.budget_bytes) {
    BudgetData bd;
    bd.task_samples = task_samples_;
    for (const auto& classes : split_.task_classes) bd.task_classes.push_back(int64_t(classes.size()));
    bd.channels = shape.channels;
    bd.patch_size = learner_->patch_size();
    bd.num_tokens = num_tokens_;
    bd.weights = cfg_.memory.use_weights;
    st_.fractions = plan_byte_budget(st_.fractions, strategy, bd);
    st_.replay_token_fraction = st_.fractions.token_fraction;
  }
  if (st_.fractions.fixed_samples || st_.fractions.fixed_bytes) {
    // A fixed memory must hold a sample per class once every class has been seen.
    const int64_t classes = split_.classes_per_task * split_.num_tasks();
    const int64_t k = st_.fractions.token_fraction >= 1.0 ? num_tokens_ : std::max<int64_t>(1, std::llround(st_.fractions.token_fraction * double(num_tokens_)));
    const int64_t sample_bytes = stored_sample_bytes(shape.channels, learner_->patch_size(), k, cfg_.memory.use_weights, num_tokens_);
    if (fixed_class_quota(st_.fractions, classes, sample_bytes) < 1) {
      throw_input("memory.{} cannot hold one sample per class for the {} classes of the run; accepted: memory.samples >= {} or memory.budget_bytes >= {}",
                  st_.fractions.fixed_samples ? fmt::format("samples = {}", *st_.fractions.fixed_samples)
                                              : fmt::format("budget_bytes = {}", *st_.fractions.fixed_bytes),
                  classes, classes, classes * sample_bytes);
    }
  }
  st_.token_drop = configured_drop_rate(st_.fractions);
  if (st_.token_drop >= 1.0) throw_input("train.token_drop = {} drops every token; accepted: [0, 1)", st_.token_drop);
  if (st_.token_drop > 0.0 && cfg_.train.full_image_share > 0.0 && cfg_.train.full_image_unit == "samples" && cfg_.train.token_drop_rescale)
    throw_input("train.token_drop_rescale scales every kept token of a batch by 1/(1 - p), also those of the samples train.full_image_share shows whole; "
                "accepted: token_drop_rescale: false, full_image_share: 0, or full_image_unit: steps");
  if (partial_memory && !st_.fractions.budget_bytes && std::llround(st_.fractions.token_fraction * double(num_tokens_)) < 1) {
    throw_input("memory.token_fraction = {:.4g} keeps 0 of the {} tokens of an image; an impossible budget (need >= {:.4g})",
                st_.fractions.token_fraction, num_tokens_, 0.5 / double(num_tokens_));
  }
  coreset_ = make_sample_selector(cfg_.memory.coreset, sample_selector_options(cfg_.memory));
  token_selector_ = make_token_selector(cfg_.memory.tokens, token_selector_options(cfg_.memory, seed()));
  const bool selects_tokens = partial_memory || cfg_.train.token_drop_policy == TokenDropPolicy::MemoryTokens;
  if (selects_tokens && token_selector_->needs_encoder() && !learner_->has_encoder()) throw_needs_encoder(cfg_.memory.tokens, learner_->kind());
  buffer_ = TokenBuffer(shape.channels, shape.height, learner_->patch_size());
  buffer_.metadata() = {{"strategy", name_of(strategy)},
                        {"coreset_method", cfg_.memory.coreset},
                        {"token_method", cfg_.memory.tokens},
                        {"selection", name_of(cfg_.memory.selection)},
                        {"budget_bytes", st_.fractions.budget_bytes ? std::to_string(*st_.fractions.budget_bytes) : "null"},
                        {"fill", fill_mode_name(cfg_.memory.fill)},
                        {"sample_fraction", fmt::format("{}", st_.fractions.sample_fraction)},
                        {"token_fraction", fmt::format("{}", st_.fractions.token_fraction)},
                        {"retention", fmt::format("{}", st_.fractions.retention)},
                        {"dataset", cfg_.data.name},
                        {"class_order", fmt::format("{}", fmt::join(split_.class_order, ","))}};
  if (cfg_.memory.size_policy == SizePolicy::Fixed) {
    buffer_.metadata()["size_policy"] = "fixed";
    buffer_.metadata()["fixed_size"] = st_.fractions.fixed_samples ? fmt::format("{} samples", *st_.fractions.fixed_samples)
                                                                   : fmt::format("{} bytes", *st_.fractions.fixed_bytes);
  }

  auto& record = st_.record;
  record.start(learner_->metrics(), split_.num_tasks());
  record.device = device_name(device_);
  const auto names = data_.train->class_names();
  for (const auto& group : split_.task_classes) {
    std::vector<std::string> g;
    for (int64_t c : group) g.push_back(names.at(size_t(c)));
    record.task_classes.push_back(g);
  }
  if (!cfg_.model.weights.empty()) record.weights = weights_provenance(cfg_.model.weights, cfg_.data);
}

RunSummary SequentialLoop::run() {
  try {
    return run_steps();
  } catch (const std::exception& e) {
    // Best effort: the log says why the run ended (a later --resume drops this record with
    // the others written after the last checkpoint).
    try {
      if (log_.is_open()) log_.append({{"event", "failed"}, {"error", e.what()}});
    } catch (const std::exception&) {
    }
    throw;
  }
}

RunSummary SequentialLoop::run_steps() {
  run_start_ = Clock::now();
  setup();
  const bool resuming = !opt_.resume_dir.empty();
  std::optional<CheckpointData> ck;
  nlohmann::json dropped = nlohmann::json::array();
  if (dist_.is_main()) {
    ensure_directory(dir_);
    lock_ = RunFolderLock(dir_);
    // Holding the lock: temporary files here are from a killed process, never from a writer.
    remove_stale_temp_files(dir_);
    remove_stale_temp_files(dir_ / "checkpoint");
    if (resuming) {
      if (has_checkpoint(dir_)) ck = load_checkpoint(dir_);
      cfg_.name = saved_config_name(dir_, cfg_.name);
    } else {
      if (has_checkpoint(dir_)) {
        throw_input("{} already holds a run; continue it with --resume {} or choose another --out", dir_.string(), dir_.string());
      }
      write_run_config(dir_, cfg_);
      // A log left by a run that died before its first checkpoint (cts sweep restarts such
      // runs) describes nothing that survives: the new run's log starts empty.
      truncate_jsonl(dir_ / "log.jsonl", 0);
    }
  }
  if (dist_.active()) ck = checkpoint_everywhere(resuming, std::move(ck));
  if (ck) {
    restore(*ck);
  } else if (dist_.active()) {
    // Every rank starts from rank 0's initial model (the same seed gives the same one on CPU;
    // this makes it so on any device).
    auto tensors = learner_->state_tensors();
    for (auto& [name, t] : tensors) {
      auto c = t.detach().clone();
      dist_.broadcast(c);
      t = c;
    }
    learner_->load_state(learner_->state_info(), tensors);
  }
  if (dist_.is_main()) {
    // Records written after the last checkpoint describe work that is done again now.
    if (resuming) dropped = cut_log_to_checkpoint(dir_ / "log.jsonl", ck ? ck->log_bytes : 0);
    log_ = JsonlLog(dir_ / "log.jsonl");
  }
  auto& con = Console::get();
  if (!cfg_.model.weights.empty() && !ck) log({{"event", "weights_loaded"}, {"file", cfg_.model.weights}, {"notes", learner_->weight_notes()}});

  int64_t start_task = 0, start_epoch = 0, start_step = 0;
  std::unique_ptr<Learner> initial_copy;  // the initial model, when evaluated alongside task 0's training
  if (resuming && !ck) {
    con.info("{} has no checkpoint yet (the run stopped before its first one): starting it from the beginning", dir_.string());
    log({{"event", "resume"}, {"task", 0}, {"epoch", 0}, {"step", 0}, {"from_start", true}, {"dropped", dropped}});
  }
  if (ck) {
    if (ck->task_complete) start_task = ck->task + 1;
    else start_task = ck->task, start_epoch = ck->epoch, start_step = ck->step;
    con.info("resuming {} at task {} epoch {} step {}", dir_.string(), start_task, start_epoch, start_step);
    log({{"event", "resume"}, {"task", start_task}, {"epoch", start_epoch}, {"step", start_step}, {"dropped", dropped}, {"world_size", dist_.world()}});
  } else {
    const int64_t params = learner_->parameter_count();
    con.info("run {} -> {}", cfg_.name, dir_.string());
    con.info("data {}: {} train / {} test samples, {} tasks of {} classes, images {}x{}x{}", cfg_.data.name, data_.train->size(),
             data_.test->size(), split_.num_tasks(), split_.classes_per_task, data_.train->shape().channels, data_.train->shape().height,
             data_.train->shape().width);
    con.info("model {} {} ({:.2f} M parameters, {} tokens), device {}, {} threads", learner_->kind(), cfg_.model.preset, double(params) / 1e6,
             num_tokens_, device_name(device_), torch::get_num_threads());
    if (dist_.active())
      con.info("data-parallel: {} processes ({}), global batch {} + replay {} split over them, rank 0 writes the run folder", dist_.world(), dist_.backend(),
               cfg_.train.batch_size, cfg_.train.replay_batch_size);
    con.info("memory {}: s = {:.4g}, k = {:.4g} (retention {:.4g}), coreset {}, tokens {}, fill {}, token drop {:.3g}", name_of(cfg_.memory.strategy),
             st_.fractions.sample_fraction, st_.fractions.token_fraction, st_.fractions.retention, cfg_.memory.coreset, cfg_.memory.tokens,
             fill_mode_name(cfg_.memory.fill), st_.token_drop);
    if (st_.token_drop > 0.0 && cfg_.train.full_image_share > 0.0)
      con.info("token-drop guard: {:.3g} of the new data's {} {} whole (train.full_image_share)", cfg_.train.full_image_share, cfg_.train.full_image_unit,
               cfg_.train.full_image_unit == "steps" ? "show it" : "are shown");
    log({{"event", "run_start"}, {"config", cfg_.name}, {"learner", learner_->kind()}, {"device", device_name(device_)},
                 {"threads", torch::get_num_threads()}, {"world_size", dist_.world()}, {"backend", dist_.backend()}, {"parameters", params}, {"train_samples", data_.train->size()},
                 {"test_samples", data_.test->size()}, {"class_order", split_.class_order}, {"sample_fraction", st_.fractions.sample_fraction},
                 {"token_fraction", st_.fractions.token_fraction}, {"token_drop", st_.token_drop}, {"full_image_share", cfg_.train.full_image_share}});
    // Small data meets large-data defaults: a warmup longer than a task never reaches train.lr.
    for (int64_t t = 0; t < split_.num_tasks(); ++t) {
      const int64_t steps = cfg_.train.epochs * ((task_samples_[size_t(t)] + cfg_.train.batch_size - 1) / cfg_.train.batch_size);
      if (cfg_.train.warmup_steps < steps) continue;
      const std::string text = fmt::format(
          "warning: train.warmup_steps = {} is not shorter than task {}'s {} steps ({} samples, batch {}, {} epochs): the learning rate "
          "never reaches train.lr = {:.3g} in that task; set train.warmup_steps below {} (e.g. {})",
          cfg_.train.warmup_steps, t, steps, task_samples_[size_t(t)], cfg_.train.batch_size, cfg_.train.epochs, cfg_.train.lr, steps,
          std::max<int64_t>(0, steps / 10));
      con.info("{}", text);
      log({{"event", "warning"}, {"key", "train.warmup_steps"}, {"task", t}, {"task_steps", steps}, {"message", text}});
      break;
    }
    // b_j for FWT: the initial model's scores. On a CPU with >= 2 threads they come from a copy
    // of the initial model, evaluated alongside task 0's training (task 0 has no replay: its
    // single loss term keeps one thread busy and leaves the others idle).
    if (initial_eval_alongside()) initial_copy = copy_of_learner();
    else evaluate_initial(*learner_);
  }

  auto& record = st_.record;
  for (int64_t t = start_task; t < split_.num_tasks() && !stopped_; ++t) {
    const bool mid_task = ck && !ck->task_complete && t == start_task;
    if (!mid_task) {
      learner_->begin_task(t);
      if (record.timing.size() <= size_t(t)) record.timing.resize(size_t(t) + 1);
    }
    if (initial_copy) {
      // Job 0: the initial model's evaluation on the copy; job 1: task 0's training. Each runs
      // single-threaded, as in a run with `threads: 1` (the same numbers).
      std::promise<void> done;
      initial_eval_done_ = done.get_future().share();
      parallel_jobs(2, [&](int64_t k) {
        if (k == 1) return train_task(t, 0, 0);
        try {
          evaluate_initial(*initial_copy);
          record.initial_eval_alongside_training = true;
        } catch (...) {
          done.set_value();  // a checkpoint waiting for it goes on; the error is rethrown after both jobs
          throw;
        }
        done.set_value();
      });
      initial_copy.reset();
      initial_eval_done_ = {};
    } else {
      train_task(t, t == start_task ? start_epoch : 0, t == start_task ? start_step : 0);
    }
    if (stopped_) break;
    learner_->end_task(t);
    select_memory(t);
    if (const auto phase = learner_->finetune_phase(t)) finetune(t, *phase);
    evaluate(t);
    record.parameters.push_back(learner_->parameter_count());
    record.tasks_done = t + 1;
    update_memory_stats(t + 1);
    record.total_seconds = st_.seconds_before + seconds_since(run_start_);
    write_outputs(false);
    log({{"event", "task_end"}, {"task", t}, {"average_accuracy", record.metrics().final_average_accuracy}});
    checkpoint(t, 0, 0, true);
    if (t + 1 < split_.num_tasks() && stop_agreed()) stopped_ = true;
  }

  RunSummary summary;
  summary.dir = dir_;
  summary.main_rank = dist_.is_main();
  if (stopped_) {
    con.info("stopped: checkpoint written; continue with: cts run --resume {}", dir_.string());
    log({{"event", "stopped"}});
    summary.record = record;
    return summary;
  }
  record.total_seconds = st_.seconds_before + seconds_since(run_start_);
  write_outputs(true);
  const auto m = record.metrics();
  log({{"event", "run_end"}, {"final_average_accuracy", m.final_average_accuracy}, {"seconds", record.total_seconds}});
  const bool percent = record.primary().percent;
  con.info("done in {:.1f} s: final average {} {:.{}f}{}, memory {} samples / {} tokens / {} bytes ({:.3f} % of the tokens)", record.total_seconds,
           record.primary().title, (percent ? 100.0 : 1.0) * m.final_average_accuracy, percent ? 2 : 4, percent ? " %" : "", record.memory.samples,
           record.memory.tokens, record.memory.bytes, 100.0 * record.memory.fraction());
  summary.record = record;
  summary.completed = true;
  return summary;
}

// Folds the device-side loss sums into the host sums (the only sync of a training step).
void SequentialLoop::fold_losses() {
  auto host = st_.loss_acc.to(torch::kCPU);
  for (size_t i = 0; i < st_.loss_sums.size(); ++i) st_.loss_sums[i] += host[int64_t(i)].item<double>();
  st_.loss_count += st_.loss_acc_steps;
  st_.loss_acc.zero_();
  st_.loss_acc_steps = 0;
}

void SequentialLoop::train_task(int64_t task, int64_t start_epoch, int64_t start_step) {
  auto& con = Console::get();
  const auto indices = split_.task_indices(*data_.train, task);
  const int64_t n = indices.size(0);
  const int64_t bs = cfg_.train.batch_size;
  const int64_t steps_per_epoch = (n + bs - 1) / bs;
  const int64_t total = steps_per_epoch * cfg_.train.epochs;
  if (!optimizer_ || (start_epoch == 0 && start_step == 0)) optimizer_ = std::make_unique<Optimizer>(learner_->trainable_parameters(), optimizer_options());
  const bool in_memory = dynamic_cast<const TensorDataset*>(data_.train.get()) != nullptr;
  auto& timing = st_.record.timing[size_t(task)];
  const int64_t terms = int64_t(loss_terms_.size());
  for (int64_t epoch = start_epoch; epoch < cfg_.train.epochs; ++epoch) {
    const auto order = indices.index_select(0, task_order(task, epoch, n));
    auto t0 = Clock::now();
    const int64_t first = epoch == start_epoch ? start_step : 0;
    // Losses are summed on the device and folded into the host sums every log_every steps;
    // a checkpoint stores the unfolded part as it is, so a resumed run adds the same numbers
    // in the same order as an uninterrupted one.
    if (first == 0 || !st_.loss_acc.defined()) {
      st_.loss_acc = torch::zeros({terms}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
      st_.loss_acc_steps = 0;
    }
    if (first == 0) st_.loss_sums.assign(size_t(terms), 0.0), st_.loss_count = 0;
    con.progress_begin(fmt::format("task {}/{} epoch {}/{}", task + 1, split_.num_tasks(), epoch + 1, cfg_.train.epochs), steps_per_epoch);
    auto batch_ids = [&](int64_t s) { return order.narrow(0, s * bs, std::min(bs, n - s * bs)); };
    std::future<torch::Tensor> next;
    // Decoded datasets: the next batch is decoded (and, for CUDA, pinned so the copy is
    // asynchronous) while the current step runs.
    const bool pin = device_.is_cuda();
    auto load = [&, pin](int64_t s) {
      auto imgs = data_.train->images(local_share(batch_ids(s)));
      return pin ? imgs.pin_memory() : imgs;
    };
    if (!in_memory && first < steps_per_epoch) next = std::async(std::launch::async, load, first);
    std::string status;
    auto mean_loss = [&](size_t i) { return st_.loss_count ? st_.loss_sums[i] / double(st_.loss_count) : 0.0; };
    for (int64_t s = first; s < steps_per_epoch; ++s) {
      const auto ids = batch_ids(s);
      torch::Tensor images = in_memory ? data_.train->images(local_share(ids)) : next.get();
      if (!in_memory && s + 1 < steps_per_epoch) next = std::async(std::launch::async, load, s + 1);
      const int64_t step_in_task = epoch * steps_per_epoch + s;
      const double lr = scheduled_lr(cfg_.train.schedule, cfg_.train.lr, cfg_.train.min_lr, cfg_.train.warmup_steps, step_in_task, total);
      try {
        st_.loss_acc += training_step(task, epoch, s, step_in_task, images, ids, lr);
      } catch (const DistributedError&) {
        // A rank stopped: rank 0 keeps what is done (this step not taken) for --resume.
        timing.train_seconds += seconds_since(t0);
        checkpoint(task, epoch, s, false);
        con.progress_end("");
        throw;
      }
      ++st_.loss_acc_steps;
      ++steps_this_process_;
      ++global_step_;
      if (crash_points_enabled()) crash_point("step");
      timing.steps += 1;
      timing.samples += ids.size(0);
      if ((s + 1) % cfg_.train.log_every == 0 || s + 1 == steps_per_epoch) {
        fold_losses();
        for (size_t i = 0; i < st_.loss_sums.size(); ++i) {
          if (!std::isfinite(st_.loss_sums[i])) {
            throw_run("task {} epoch {} step {}: the {} loss became {} (lower train.lr or set train.grad_clip)", task, epoch, s, loss_terms_[i],
                      st_.loss_sums[i]);
          }
        }
        status.clear();
        for (size_t i = 0; i < st_.loss_sums.size(); ++i) status += fmt::format("{} {:.4f} ", i == 0 ? "loss" : loss_terms_[i], mean_loss(i));
        status += fmt::format("lr {:.2e}", lr);
      }
      con.progress_update(s + 1, status);
      const bool stop = dist_.active() ? peer_stop_ : should_stop();
      if (stop || (cfg_.train.checkpoint_every > 0 && global_step_ % cfg_.train.checkpoint_every == 0 && s + 1 < steps_per_epoch)) {
        timing.train_seconds += seconds_since(t0);
        const bool epoch_done = s + 1 == steps_per_epoch;
        checkpoint(task, epoch_done ? epoch + 1 : epoch, epoch_done ? 0 : s + 1, false);
        if (stop) {
          con.progress_end("");
          stopped_ = true;
          return;
        }
        t0 = Clock::now();  // the checkpoint's time is not training time
      }
    }
    const double secs = seconds_since(t0);
    timing.train_seconds += secs;
    con.progress_end(fmt::format("done: {} ({:.1f} s)", status, secs));
    nlohmann::json event = {{"event", "epoch"}, {"task", task}, {"epoch", epoch}, {"steps", steps_per_epoch}, {"seconds", secs},
                            {"samples_per_second", secs > 0 ? double(n) / secs : 0.0}};
    for (size_t i = 0; i < loss_terms_.size(); ++i) event["loss_" + loss_terms_[i]] = mean_loss(i);
    log(event);
  }
}

// Which tokens of each new-data sample survive this step.
TokenKeep SequentialLoop::drop_tokens(int64_t task, int64_t epoch, int64_t step, const torch::Tensor& images_u8, const torch::Tensor& ids,
                                      int64_t phase) {
  // Drawn for the whole (global) batch of `ids`; a data-parallel rank keeps its share's rows
  // (`images_u8` holds only those), so the choices do not depend on the number of ranks.
  const int64_t B = ids.size(0);
  const auto [lo, hi] = dist_.active() ? dist_.share(B) : std::pair<int64_t, int64_t>{0, B};
  const int64_t kept = tokens_kept(1.0 - st_.token_drop, num_tokens_);
  // Joint selection keeps 1..T tokens per memory sample. New data then keeps a count drawn
  // from the memory's own counts, so sequence length (drop fill) or the number of filled
  // tokens does not tell replayed from new samples (with a fixed count the model learned
  // that shortcut and scored 0 % on each new task's full test images).
  torch::Tensor counts;
  if (st_.fractions.joint && !buffer_.empty()) {
    auto gen = phase ? make_generator(seed(), "finetune_token_drop_counts", {task, epoch, step})
                     : make_generator(seed(), "token_drop_counts", {task, epoch, step});
    counts = buffer_.counts().index_select(0, torch::randint(buffer_.size(), {B}, gen, torch::kInt64));
  }
  // Token-drop guard by samples: the first round(share B) samples of the (shuffled) batch keep
  // every token.
  if (cfg_.train.full_image_unit == "samples" && cfg_.train.full_image_share > 0.0) {
    const int64_t whole = std::min<int64_t>(B, std::llround(cfg_.train.full_image_share * double(B)));
    if (whole > 0) {
      if (!counts.defined()) counts = torch::full({B}, kept, torch::kInt64);
      counts.narrow(0, 0, whole).fill_(num_tokens_);
    }
  }
  if (counts.defined()) counts = counts.narrow(0, lo, hi - lo);
  auto choose = [&](const torch::Tensor& scores, const torch::Tensor& tie_keys) {
    return counts.defined() ? top_tokens(scores, counts, tie_keys) : top_tokens(scores, kept, tie_keys);
  };
  TokenKeep keep;
  if (cfg_.train.token_drop_policy == TokenDropPolicy::MemoryTokens) {
    // The tokens the memory's selector would keep, scored by the current model.
    const auto mine = ids.narrow(0, lo, hi - lo);
    auto rel = sample_relevance(*learner_, *token_selector_, *data_.train, mine, images_u8, cfg_.memory.target);
    keep.positions = choose(rel, token_tie_keys(mine, num_tokens_, seed()));
  } else {
    auto gen = phase ? make_generator(seed(), "finetune_token_drop", {task, epoch, step}) : make_generator(seed(), "token_drop", {task, epoch, step});
    keep.positions = choose(torch::rand({B, num_tokens_}, gen).narrow(0, lo, hi - lo), torch::Tensor());
  }
  keep.fill = cfg_.memory.fill;
  keep.rescale = cfg_.train.token_drop_rescale ? 1.0 / (1.0 - st_.token_drop) : 1.0;
  return keep;
}

torch::Tensor SequentialLoop::training_step(int64_t task, int64_t epoch, int64_t step, int64_t step_in_task, const torch::Tensor& images_u8,
                                            const torch::Tensor& ids, double lr) {
  optimizer_->zero_grad();
  Batch batch;
  const auto mine = local_share(ids);  // `images_u8` are this rank's share of the batch `ids`
  batch.images = images_u8;
  batch.labels = data_.train->labels().index_select(0, mine);
  if (data_.train->has_payload()) batch.payload = data_.train->payloads(mine);
  if (dist_.active()) batch.global_size = ids.size(0);
  if (drops_new_data(step_in_task)) batch.keep = drop_tokens(task, epoch, step, images_u8, ids);
  batch.stream = derive_seed(seed(), "batch_stream", {task, epoch, step});
  const auto replay = replay_batch(task, step_in_task);
  return optimize(learner_->step_loss(task, batch, replay ? &*replay : nullptr), *optimizer_, lr);
}

torch::Tensor SequentialLoop::optimize(const StepLoss& terms, Optimizer& optimizer, double lr) {
  if (terms.size() != loss_terms_.size()) throw_run("learner {} returned {} loss terms, declared {}", learner_->kind(), terms.size(), loss_terms_.size());
  // Each term with its own backward, as parallel jobs (one thread each; the same numbers on
  // any number of threads); the gradients are then added in term order, as one backward of
  // the sum would (each parameter gets the sum of its terms' gradients).
  const auto params = learner_->trainable_parameters();
  std::vector<torch::Tensor> inputs;
  for (const auto& [name, p] : params) inputs.push_back(p);
  std::vector<torch::Tensor> values(terms.size());
  std::vector<std::vector<torch::Tensor>> grads(terms.size());
  parallel_jobs(int64_t(terms.size()), [&](int64_t k) {
    if (!terms[size_t(k)].compute) return;  // no such part in this step
    AutocastScope amp(device_, bf16_);      // autocast state is per thread
    torch::Tensor loss = terms[size_t(k)].compute();
    if (!loss.defined()) return;
    values[size_t(k)] = loss.detach();
    grads[size_t(k)] = torch::autograd::grad({loss}, inputs, /*grad_outputs=*/{}, /*retain_graph=*/false, /*create_graph=*/false,
                                             /*allow_unused=*/true);
  });
  bool any = false;
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < inputs.size(); ++i) {
      torch::Tensor sum;
      for (const auto& g : grads)
        if (!g.empty() && g[i].defined()) sum = sum.defined() ? sum + g[i] : g[i];
      if (!sum.defined()) continue;
      auto& grad = inputs[i].mutable_grad();
      if (grad.defined()) grad.add_(sum);
      else grad = sum;
    }
  }
  std::vector<torch::Tensor> parts;
  for (const auto& v : values) {
    any = any || v.defined();
    parts.push_back(v.defined() ? v.to(torch::kFloat64) : torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device_)));
  }
  if (dist_.active()) {
    // Data-parallel: each rank's terms are its share's sums over the global batch sizes
    // (Batch::mean_of), so the sum over ranks of gradients and loss values is the global
    // batch's. One all-reduce (bucketed) carries the gradients, which parameters have one,
    // which terms were computed, and whether any rank asked to stop.
    const int64_t P = int64_t(inputs.size()), T = int64_t(parts.size());
    auto flags = torch::zeros({P + T + 1}, torch::kFloat32);
    auto fl = flags.accessor<float, 1>();
    std::vector<torch::Tensor> bufs;
    for (int64_t i = 0; i < P; ++i) {
      const auto& g = inputs[size_t(i)].grad();
      fl[i] = g.defined() ? 1.0f : 0.0f;
      bufs.push_back(g.defined() ? g : torch::zeros_like(inputs[size_t(i)]));
    }
    for (int64_t k = 0; k < T; ++k) fl[P + k] = values[size_t(k)].defined() ? 1.0f : 0.0f;
    fl[P + T] = should_stop() ? 1.0f : 0.0f;
    bufs.push_back(torch::stack(parts));
    bufs.push_back(flags);
    dist_.all_reduce_sum(bufs);
    for (int64_t i = 0; i < P; ++i) {
      auto& g = inputs[size_t(i)].mutable_grad();
      if (fl[i] == 0.0f) g = torch::Tensor();
      else if (!g.defined()) g = bufs[size_t(i)];
    }
    any = false;
    for (int64_t k = 0; k < T; ++k) any = any || fl[P + k] > 0.0f;
    peer_stop_ = fl[P + T] > 0.0f;
    parts = bufs[size_t(P)].unbind(0);
  }
  if (!any) throw_run("learner {} returned no loss", learner_->kind());
  if (cfg_.train.grad_clip > 0) clip_grad_norm(inputs, cfg_.train.grad_clip);
  optimizer.step(lr);
  return torch::stack(parts);
}

// The learner's balanced phase after task t (DyTox's finetuning): epochs over the memory's
// samples of earlier tasks plus, of each new class, as many samples (a seeded draw) as the
// memory holds per old class; each batch's new and memory samples are the learner's two parts.
void SequentialLoop::finetune(int64_t task, const FinetunePhase& phase) {
  const auto t0 = Clock::now();
  std::vector<int64_t> memory_rows;  // buffer samples of earlier tasks
  std::map<int64_t, int64_t> per_class;
  for (int64_t i = 0; i < buffer_.size(); ++i) {
    if (buffer_.tasks()[i].item<int64_t>() >= task) continue;
    memory_rows.push_back(i);
    per_class[buffer_.labels()[i].item<int64_t>()]++;
  }
  if (phase.epochs <= 0 || memory_rows.empty()) {
    log({{"event", "finetune"}, {"task", task}, {"skipped", memory_rows.empty() ? "no memory samples of earlier tasks" : "0 epochs"}});
    return;
  }
  const int64_t quota = std::max<int64_t>(1, std::llround(double(memory_rows.size()) / double(per_class.size())));
  std::vector<int64_t> new_ids;
  const auto labels = data_.train->labels();
  for (int64_t c : split_.task_classes.at(size_t(task))) {
    auto rows = (labels == c).nonzero().flatten();
    auto gen = make_generator(seed(), "finetune_new_samples", {task, c});
    auto pick = rows.index_select(0, torch::randperm(rows.size(0), gen, torch::kInt64).narrow(0, 0, std::min(quota, rows.size(0))));
    for (int64_t k = 0; k < pick.size(0); ++k) new_ids.push_back(pick[k].item<int64_t>());
  }
  // Entries 0 .. M-1: memory rows; M ..: new samples.
  const int64_t M = int64_t(memory_rows.size()), total = M + int64_t(new_ids.size());
  const int64_t bs = cfg_.train.batch_size, steps = (total + bs - 1) / bs;
  learner_->begin_finetune(task);
  std::vector<std::pair<std::string, torch::Tensor>> named = learner_->trainable_parameters();
  Optimizer optimizer(named, optimizer_options());
  auto& con = Console::get();
  std::vector<double> sums(loss_terms_.size(), 0.0);
  int64_t count = 0;
  for (int64_t epoch = 0; epoch < phase.epochs; ++epoch) {
    auto order = torch::randperm(total, make_generator(seed(), "finetune_order", {task, epoch}), torch::kInt64);
    con.progress_begin(fmt::format("task {}/{} finetune {}/{}", task + 1, split_.num_tasks(), epoch + 1, phase.epochs), steps);
    for (int64_t s = 0; s < steps; ++s) {
      auto ids = order.narrow(0, s * bs, std::min(bs, total - s * bs));
      std::vector<int64_t> mem, fresh;
      for (int64_t k = 0; k < ids.size(0); ++k) {
        const int64_t e = ids[k].item<int64_t>();
        if (e < M) mem.push_back(memory_rows[size_t(e)]);
        else fresh.push_back(new_ids[size_t(e - M)]);
      }
      optimizer.zero_grad();
      Batch batch;
      batch.stream = derive_seed(seed(), "finetune_batch_stream", {task, epoch, s});
      // A data-parallel rank takes its share of the batch's new samples and of its memory rows.
      batch.labels = torch::zeros({0}, torch::kInt64);
      if (!fresh.empty()) {
        auto fid = torch::tensor(fresh, torch::kInt64);
        const auto mine = local_share(fid);
        if (dist_.active()) batch.global_size = fid.size(0);
        if (mine.size(0) > 0) {
          batch.images = data_.train->images(mine);
          batch.labels = labels.index_select(0, mine);
          if (data_.train->has_payload()) batch.payload = data_.train->payloads(mine);
          if (drops_new_data(epoch * steps + s)) batch.keep = drop_tokens(task, epoch, s, batch.images, fid, /*phase=*/1);
        }
      }
      std::optional<Batch> memory;
      if (!mem.empty()) {
        memory = buffer_share(torch::tensor(mem, torch::kInt64));
        memory->stream = batch.stream ^ 0x9e3779b97f4a7c15ULL;
      }
      auto losses = optimize(learner_->finetune_loss(task, batch, memory ? &*memory : nullptr), optimizer, phase.lr).to(torch::kCPU);
      for (size_t i = 0; i < sums.size(); ++i) sums[i] += losses[int64_t(i)].item<double>();
      ++count;
      if (crash_points_enabled()) crash_point("finetune");
      con.progress_update(s + 1, fmt::format("loss {:.4f}", sums[0] / double(count)));
    }
    con.progress_end("");
  }
  learner_->end_finetune(task);
  const double secs = seconds_since(t0);
  st_.record.timing[size_t(task)].train_seconds += secs;
  nlohmann::json event = {{"event", "finetune"}, {"task", task}, {"epochs", phase.epochs}, {"lr", phase.lr}, {"memory_samples", M},
                          {"new_samples", int64_t(new_ids.size())}, {"steps", steps * phase.epochs}, {"seconds", secs}};
  for (size_t i = 0; i < loss_terms_.size(); ++i) event["loss_" + loss_terms_[i]] = count ? sums[i] / double(count) : 0.0;
  log(event);
  con.info("task {} finetuned: {} epochs on {} memory + {} new samples ({:.1f} s)", task, phase.epochs, M, new_ids.size(), secs);
}

std::optional<Batch> SequentialLoop::replay_batch(int64_t task, int64_t step_in_task) {
  const bool cumulative = cfg_.memory.strategy == MemoryStrategy::Cumulative;
  const int64_t n = cumulative ? (st_.cumulative_indices.defined() ? st_.cumulative_indices.size(0) : 0) : buffer_.size();
  if (!st_.fractions.uses_memory || n == 0) return std::nullopt;
  // The buffer is cycled: replay sample q of this task is element q % n of permutation q / n.
  const int64_t R = cfg_.train.replay_batch_size;
  const int64_t q0 = step_in_task * R;
  std::vector<int64_t> picks;
  picks.reserve(size_t(R));
  torch::Tensor perm;
  int64_t perm_cycle = -1;
  for (int64_t q = q0; q < q0 + R; ++q) {
    const int64_t cycle = q / n;
    if (cycle != perm_cycle) {
      auto gen = make_generator(seed(), "replay", {task, cycle});
      perm = torch::randperm(n, gen, torch::kInt64);
      perm_cycle = cycle;
    }
    picks.push_back(perm.data_ptr<int64_t>()[q % n]);
  }
  auto idx = torch::tensor(picks, torch::kInt64);
  if (!cumulative) return buffer_share(idx);
  auto ds = st_.cumulative_indices.index_select(0, local_share(idx));  // a data-parallel rank's share
  Batch b;
  b.images = data_.train->images(ds);
  b.labels = data_.train->labels().index_select(0, ds);
  if (data_.train->has_payload()) b.payload = data_.train->payloads(ds);
  if (dist_.active()) b.global_size = R;
  return b;
}

Batch SequentialLoop::buffer_batch(const torch::Tensor& rows) const {
  const FillMode fill = cfg_.memory.fill;
  const bool drop = fill == FillMode::Drop;
  auto g = buffer_.gather(rows, !drop, drop);
  Batch b;
  b.images = g.images;
  b.patches = g.patches;
  b.labels = g.labels;
  b.payload = g.payload;
  b.keep.positions = g.positions;
  b.keep.fill = fill;
  b.keep.rescale = cfg_.train.token_drop_rescale && st_.replay_token_fraction < 1.0 ? 1.0 / st_.replay_token_fraction : 1.0;
  if (cfg_.memory.use_weights && buffer_.has_weights()) b.weights = g.weights;
  return b;
}

void SequentialLoop::evaluate(int64_t task) {
  const auto t0 = Clock::now();
  std::vector<TaskScores> scores;
  {
    AutocastScope amp(device_, bf16_);
    scores = evaluate_tasks(*learner_, task + 1);
  }
  auto& record = st_.record;
  record.set_row(task, scores);
  const double secs = seconds_since(t0);
  record.timing[size_t(task)].eval_seconds = secs;
  const MetricSpec& primary = record.primary();
  const auto& row = record.matrix(primary.name)[size_t(task)];
  const double scale = primary.percent ? 100.0 : 1.0;
  std::string text;
  double avg = 0;
  for (int64_t j = 0; j <= task; ++j) {
    text += fmt::format("{}{:.1f}", j ? " " : "", scale * row[size_t(j)]);
    avg += row[size_t(j)];
  }
  avg /= double(task + 1);
  Console::get().info("task {} evaluated: {} per task [{}]{}, average {:.2f}{} ({:.1f} s)", task, primary.title, text, primary.percent ? " %" : "",
                      scale * avg, primary.percent ? " %" : "", secs);
  nlohmann::json event = {{"event", "eval"}, {"task", task}, {"average_accuracy", avg}, {"seconds", secs}};
  nlohmann::json by_metric = nlohmann::json::object();
  for (const auto& spec : record.metric_specs) {
    const auto& r = record.matrix(spec.name)[size_t(task)];
    nlohmann::json values = nlohmann::json::array();
    // The primary metric up to this task; the others over every task (task-IL scores tasks
    // not trained yet with the head rows they will get).
    const size_t end = &spec == &primary ? size_t(task) + 1 : r.size();
    for (size_t j = 0; j < end; ++j) values.push_back(std::isfinite(r[j]) ? nlohmann::json(r[j]) : nlohmann::json(nullptr));
    by_metric[spec.name] = values;
  }
  event["scores"] = by_metric;
  log(event);
}

bool SequentialLoop::initial_eval_alongside() const {
  return !dist_.active() && !device_.is_cuda() && torch::get_num_threads() >= 2 && split_.num_tasks() > 0;
}

std::unique_ptr<Learner> SequentialLoop::copy_of_learner() const {
  // Building modules draws from torch's global generator: put its state back, so that the
  // copy leaves the run's numbers as they are.
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor rng;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    rng = gen.get_state();
  }
  auto copy = make_learner(*lctx_);
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng);
  }
  auto tensors = learner_->state_tensors();
  for (auto& [name, t] : tensors) t = t.detach().clone();
  copy->load_state(learner_->state_info(), tensors);
  return copy;
}

void SequentialLoop::evaluate_initial(Learner& initial) {
  const auto t0 = Clock::now();
  const auto init = evaluate_tasks(initial, 0);
  st_.record.initial_eval_seconds = seconds_since(t0);
  for (const auto& spec : st_.record.metric_specs) {
    if (spec.fwt_from.empty()) continue;
    auto& b = st_.record.init_scores[spec.fwt_from];
    b.clear();
    for (const auto& task_scores : init) {
      auto it = task_scores.find(spec.fwt_from);
      b.push_back(it == task_scores.end() ? NAN : it->second);
    }
  }
}

std::vector<TaskScores> SequentialLoop::evaluate_tasks(Learner& learner, int64_t tasks_trained) {
  const auto tasks = tasks_to_evaluate(tasks_trained, split_.num_tasks());
  if (!dist_.active()) return learner.evaluate(*data_.test, tasks_trained, tasks, cfg_.train.eval_batch_size);
  auto scores = learner.evaluate(*test_shard_, tasks_trained, tasks, cfg_.train.eval_batch_size);
  const auto& specs = st_.record.metric_specs;
  const int64_t T = split_.num_tasks(), M = int64_t(specs.size());
  // [task, metric]: Σ samples · score and Σ samples over the ranks whose score is defined.
  auto sums = torch::zeros({T, M, 2}, torch::kFloat64);
  auto a = sums.accessor<double, 3>();
  for (int64_t j = 0; j < T && j < int64_t(scores.size()); ++j) {
    const double n = double(split_.task_indices(*test_shard_, j).size(0));
    for (int64_t m = 0; m < M; ++m) {
      const auto it = scores[size_t(j)].find(specs[size_t(m)].name);
      if (n == 0.0 || it == scores[size_t(j)].end() || !std::isfinite(it->second)) continue;
      a[j][m][0] = n * it->second;
      a[j][m][1] = n;
    }
  }
  std::vector<torch::Tensor> buf{sums};
  dist_.all_reduce_sum(buf);
  std::vector<TaskScores> out(static_cast<size_t>(T));
  for (int64_t j = 0; j < T; ++j)
    for (int64_t m = 0; m < M; ++m) out[size_t(j)][specs[size_t(m)].name] = a[j][m][1] > 0 ? a[j][m][0] / a[j][m][1] : NAN;
  return out;
}

std::optional<CheckpointData> SequentialLoop::checkpoint_everywhere(bool resuming, std::optional<CheckpointData> ck) {
  nlohmann::json head = nlohmann::json::object();
  std::string state, buffer;
  const auto dir = dir_ / "checkpoint";
  if (dist_.is_main()) {
    head["name"] = cfg_.name;
    head["checkpoint"] = ck.has_value();
    if (ck) {
      head["manifest"] = nlohmann::json::parse(read_file(dir / "checkpoint.json"));
      state = read_file(dir / head["manifest"].at("state").get<std::string>());
      buffer = read_file(dir / head["manifest"].at("buffer").get<std::string>());
    }
  }
  head = nlohmann::json::parse(dist_.broadcast_bytes(head.dump()));
  state = dist_.broadcast_bytes(state);
  buffer = dist_.broadcast_bytes(buffer);
  if (dist_.is_main()) return ck;
  cfg_.name = head.at("name").get<std::string>();
  if (!head.at("checkpoint").get<bool>()) {
    if (resuming) Console::get().info("rank {}: no checkpoint on rank 0", dist_.rank());
    return std::nullopt;
  }
  // The other ranks read rank 0's files from their own scratch folder, never from the run folder.
  const auto mine = scratch_ / "checkpoint";
  ensure_directory(mine);
  write_file_atomic(mine / head["manifest"].at("state").get<std::string>(), state);
  write_file_atomic(mine / head["manifest"].at("buffer").get<std::string>(), buffer);
  write_file_atomic(mine / "checkpoint.json", head["manifest"].dump());
  return load_checkpoint(scratch_);
}

void SequentialLoop::share_buffer(SelectionReport& rep) {
  const auto file = scratch_ / "buffer.safetensors";
  nlohmann::json head = nlohmann::json::object();
  std::string bytes;
  if (dist_.is_main()) {
    buffer_.save(file);
    bytes = read_file(file);
    head = {{"samples", rep.samples}, {"tokens", rep.tokens}};
  }
  head = nlohmann::json::parse(dist_.broadcast_bytes(head.dump()));
  bytes = dist_.broadcast_bytes(bytes);
  if (dist_.is_main()) return;
  write_file_atomic(file, bytes);
  buffer_ = TokenBuffer::load(file);
  rep.samples = head.at("samples").get<int64_t>();
  rep.tokens = head.at("tokens").get<int64_t>();
}

void SequentialLoop::select_memory(int64_t task) {
  if (!st_.fractions.uses_memory) return;
  const auto t0 = Clock::now();
  auto& timing = st_.record.timing[size_t(task)];
  if (cfg_.memory.strategy == MemoryStrategy::Cumulative) {
    const auto idx = split_.task_indices(*data_.train, task);
    st_.cumulative_indices = st_.cumulative_indices.defined() ? torch::cat({st_.cumulative_indices, idx}) : idx;
    timing.selection_seconds = seconds_since(t0);
    return;
  }
  auto settings = selection_settings(cfg_.memory, st_.fractions, seed(), cfg_.train.token_drop_rescale);
  if (st_.fractions.budget_bytes) {
    int64_t remaining = 0;
    for (size_t u = size_t(task); u < task_samples_.size(); ++u) remaining += task_samples_[u];
    settings.budget_bytes = task_byte_share(*st_.fractions.budget_bytes, buffer_.bytes(), task_samples_[size_t(task)], remaining);
  }
  // Rank 0 selects; the other ranks of a data-parallel run get its buffer (the same on every rank).
  SelectionReport rep;
  if (dist_.is_main()) rep = select_task_memory(*learner_, *data_.train, split_, task, *coreset_, *token_selector_, settings, buffer_);
  if (dist_.active()) share_buffer(rep);
  if (crash_points_enabled()) crash_point("selection");
  const double secs = seconds_since(t0);
  timing.selection_seconds = secs;
  Console::get().info("task {} memory: kept {} samples x {} tokens (coreset {:.1f} s, attribution {:.1f} s); buffer {} samples, {} bytes", task,
                      rep.samples, rep.samples ? rep.tokens / rep.samples : 0, rep.coreset_seconds, rep.attribution_seconds, buffer_.size(),
                      buffer_.bytes());
  nlohmann::json trials = nlohmann::json::array();
  for (const auto& t : rep.trials)
    trials.push_back({{"tokens", t.tokens}, {"samples", t.samples}, {"bytes", t.bytes}, {"holdout_loss", t.holdout_loss}});
  log({{"event", "selection"}, {"task", task}, {"samples", rep.samples}, {"tokens", rep.tokens}, {"per_class", rep.per_class},
               {"buffer_samples", buffer_.size()}, {"buffer_tokens", buffer_.tokens()}, {"buffer_bytes", buffer_.bytes()},
               {"added_bytes", rep.added_bytes}, {"budget_bytes", rep.budget_bytes}, {"tokens_per_sample", rep.tokens_per_sample},
               {"split_trials", trials}, {"split_seconds", rep.split_seconds},
               {"coreset_seconds", rep.coreset_seconds}, {"attribution_seconds", rep.attribution_seconds}, {"removed", rep.removed}});
  if (st_.fractions.fixed_samples || st_.fractions.fixed_bytes) {  // what the fixed memory holds now
    int64_t seen = 0;
    for (int64_t u = 0; u <= task; ++u) seen += task_samples_[size_t(u)];
    st_.fractions.sample_fraction = double(buffer_.size()) / double(seen);
    st_.fractions.retention = st_.fractions.sample_fraction * st_.fractions.token_fraction;
  }
  if (st_.fractions.budget_bytes && rep.samples > 0) {
    // The chosen split sets the replay rescale and (token_drop: auto) the drop rate of the next tasks.
    st_.replay_token_fraction = double(buffer_.tokens()) / double(buffer_.size() * num_tokens_);
    const double k_task = double(rep.tokens) / double(rep.samples * num_tokens_);
    if (cfg_.train.token_drop.is_auto && keeps_partial_samples(cfg_.memory.strategy)) st_.token_drop = std::min(1.0 - k_task, 1.0 - 1.0 / double(num_tokens_));
    int64_t seen = 0;
    for (int64_t u = 0; u <= task; ++u) seen += task_samples_[size_t(u)];
    st_.fractions.sample_fraction = double(buffer_.size()) / double(seen);
    st_.fractions.token_fraction = st_.replay_token_fraction;
    st_.fractions.retention = st_.fractions.sample_fraction * st_.fractions.token_fraction;
  }
}

void SequentialLoop::update_memory_stats(int64_t tasks_done) {
  const auto shape = data_.train->shape();
  MemoryStats m;
  for (int64_t t = 0; t < tasks_done; ++t) m.dataset_samples += split_.task_indices(*data_.train, t).size(0);
  m.dataset_tokens = m.dataset_samples * num_tokens_;
  m.dataset_bytes = m.dataset_samples * (shape.bytes() + 4);  // pixels + an int32 label
  if (cfg_.memory.strategy == MemoryStrategy::Cumulative) {
    m.samples = m.dataset_samples;
    m.tokens = m.dataset_tokens;
    m.bytes = m.dataset_bytes;
  } else {
    m.samples = buffer_.size();
    m.tokens = buffer_.tokens();
    m.bytes = buffer_.bytes();
  }
  st_.record.memory = m;
}

void SequentialLoop::write_outputs(bool final) {
  if (!dist_.is_main()) return;
  write_file_atomic(dir_ / "metrics.json", metrics_json(st_.record, st_.fractions).dump(2) + "\n");
  write_file_atomic(dir_ / "summary.md", summary_markdown(st_.record, cfg_, st_.fractions));
  if (final) {
    buffer_.save(dir_ / "buffer.safetensors");
    if (cfg_.output.save_model) {
      learner_->save_weights(dir_ / "model.safetensors", {{"cts.class_order", fmt::format("{}", fmt::join(split_.class_order, ","))},
                                                         {"cts.config", cfg_.name},
                                                         {"cts.data", cfg_.data.name},
                                                         {"cts.train_subset", cfg_.data.train_subset},
                                                         {"cts.subset_fraction", fmt::format("{}", cfg_.data.subset_fraction)},
                                                         {"cts.subset_seed", std::to_string(cfg_.data.subset_seed)},
                                                         {"cts.seed", std::to_string(cfg_.seed)}});
    }
  }
}

void SequentialLoop::checkpoint(int64_t task, int64_t epoch, int64_t step, bool task_complete) {
  if (!dist_.is_main()) return;
  if (initial_eval_done_.valid()) initial_eval_done_.wait();  // the checkpoint carries FWT's b_j
  CheckpointData d;
  d.task = task;
  d.epoch = epoch;
  d.step = step;
  d.task_complete = task_complete;
  d.learner = learner_->state_info();
  for (const auto& [k, v] : learner_->state_tensors()) d.tensors["model." + k] = v;
  if (!task_complete && optimizer_)
    for (const auto& [k, v] : optimizer_->state()) d.tensors["optim." + k] = v;
  save_loop_state(st_, cfg_, st_.seconds_before + seconds_since(run_start_), d);
  // The record goes in first and the checkpoint remembers the log's size with it: a resume
  // cuts the log back to exactly this point.
  log({{"event", "checkpoint"}, {"task", task}, {"epoch", epoch}, {"step", step}, {"task_complete", task_complete}});
  d.log_bytes = static_cast<int64_t>(log_.size());
  save_checkpoint(dir_, d, [&](const std::filesystem::path& p) { buffer_.save(p); });
}

void SequentialLoop::restore(const CheckpointData& ck) {
  check_same_experiment(ck, cfg_, dir_);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [k, v] : ck.tensors)
    if (k.rfind("model.", 0) == 0) tensors[k.substr(6)] = v;
  try {
    learner_->load_state(ck.learner, tensors);
  } catch (const InputError& e) {
    throw_input("checkpoint in {}: {}", dir_.string(), e.what());
  } catch (const nlohmann::json::exception& e) {
    throw_input("checkpoint in {}: the learner's state record is malformed: {}", dir_.string(), e.what());
  }
  load_loop_state(ck, device_, st_);
  if (st_.loss_sums.size() != loss_terms_.size()) {
    throw_input("checkpoint in {}: {} loss sums for the {} loss terms of the {} learner", dir_.string(), st_.loss_sums.size(), loss_terms_.size(),
                learner_->kind());
  }
  global_step_ = 0;
  for (const auto& t : st_.record.timing) global_step_ += t.steps;
  buffer_ = TokenBuffer::load(ck.buffer_file);
  if (!ck.task_complete) {
    optimizer_ = std::make_unique<Optimizer>(learner_->trainable_parameters(), optimizer_options());
    std::map<std::string, torch::Tensor> state;
    for (const auto& [k, v] : ck.tensors)
      if (k.rfind("optim.", 0) == 0) state[k.substr(6)] = v.to(device_);
    optimizer_->load_state(state);
  }
}

}  // namespace

RunSummary run_experiment(const Config& config, const RunOptions& options) {
  SequentialLoop loop(config, options);
  return loop.run();
}

}  // namespace cts
