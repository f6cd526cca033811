// Sequential trainer: task loop, training step with token dropping and replay, evaluation,
// memory selection, run-folder outputs and checkpoint/resume.
#include "cts/train/trainer.hpp"

#include <torch/torch.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <optional>
#include <sstream>
#include <thread>

#include "cts/attribution/registry.hpp"
#include "cts/core/crash_test.hpp"
#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/threads.hpp"
#include "cts/coreset/registry.hpp"
#include "cts/data/patches.hpp"
#include "cts/data/registry.hpp"
#include "cts/data/task_split.hpp"
#include "cts/eval/evaluate.hpp"
#include "cts/memory/budget.hpp"
#include "cts/memory/selection.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/models/vit.hpp"
#include "cts/report/console.hpp"
#include "cts/train/checkpoint.hpp"
#include "cts/train/optimizer.hpp"
#include "cts/train/precision.hpp"

namespace cts {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string device_name(const torch::Device& d) { return d.is_cuda() ? "cuda" : "cpu"; }

torch::Device choose_device(const std::string& wanted) {
  if (wanted == "cuda") {
    if (!torch::cuda::is_available()) throw_input("device = cuda but this libtorch build sees no CUDA device; use device: cpu or auto");
    return torch::Device(torch::kCUDA);
  }
  if (wanted == "cpu") return torch::Device(torch::kCPU);
  if (wanted != "auto") throw_input("device = '{}'; accepted: auto, cpu, cuda", wanted);
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

ViTConfig model_config(const Config& c, const ImageShape& data_shape, int64_t classes) {
  ViTConfig v = vit_preset(c.model.preset);
  if (c.model.img_size) v.img_size = c.model.img_size;
  if (c.model.patch_size) v.patch_size = c.model.patch_size;
  if (c.model.in_chans) v.in_chans = c.model.in_chans;
  if (c.model.embed_dim) v.embed_dim = c.model.embed_dim;
  if (c.model.depth) v.depth = c.model.depth;
  if (c.model.num_heads) v.num_heads = c.model.num_heads;
  if (c.model.mlp_ratio > 0) v.mlp_ratio = c.model.mlp_ratio;
  v.num_classes = classes;
  v.validate();
  if (data_shape.height != v.img_size || data_shape.width != v.img_size) {
    throw_input("model {} takes {}x{} images but {} gives {}x{}; set data.image_size: {} (resize) or model.img_size: {}", v.preset, v.img_size,
                v.img_size, c.data.name, data_shape.height, data_shape.width, v.img_size, data_shape.height);
  }
  if (data_shape.channels != v.in_chans && !(data_shape.channels == 1 && v.in_chans == 3)) {
    throw_input("model {} takes {} channel(s) but {} images have {}; set model.in_chans: {}", v.preset, v.in_chans, c.data.name,
                data_shape.channels, data_shape.channels);
  }
  return v;
}

// The first line of a run folder's config.yaml names the config (a YAML comment), so a
// resumed run keeps its name (summary.md title, model.safetensors metadata).
constexpr const char* kConfigNameLine = "# cts run: ";

std::string saved_config_name(const std::filesystem::path& config_yaml, const std::string& fallback) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config_yaml, ec)) return fallback;
  const std::string text = read_file(config_yaml, "config file");
  const std::string prefix = kConfigNameLine;
  if (text.rfind(prefix, 0) != 0) return fallback;
  const size_t end = text.find('\n');
  const std::string name = text.substr(prefix.size(), end == std::string::npos ? std::string::npos : end - prefix.size());
  return name.empty() ? fallback : name;
}

// Cuts log.jsonl back to its size at the checkpoint (`bytes` < 0: unknown, keep all) and
// returns the event names of the records removed.
nlohmann::json cut_log_to_checkpoint(const std::filesystem::path& log, int64_t bytes) {
  nlohmann::json dropped = nlohmann::json::array();
  std::error_code ec;
  if (bytes < 0 || !std::filesystem::is_regular_file(log, ec)) return dropped;
  repair_jsonl(log);
  const std::string text = read_file(log, "log");
  if (text.size() <= size_t(bytes)) return dropped;
  std::istringstream tail(text.substr(size_t(bytes)));
  std::string line;
  while (std::getline(tail, line)) {
    try {
      dropped.push_back(nlohmann::json::parse(line).value("event", "?"));
    } catch (const std::exception&) {
      dropped.push_back("?");
    }
  }
  truncate_jsonl(log, uint64_t(bytes));
  return dropped;
}

// An exclusive lock on <run>/.lock for the life of the run: a second `cts run` (or
// --resume) on the same folder stops with an error instead of interleaving checkpoints.
// The kernel releases it when the process ends, however it ends.
class RunFolderLock {
 public:
  RunFolderLock() = default;
  explicit RunFolderLock(const std::filesystem::path& dir) {
    const auto path = dir / ".lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw_run("cannot create {}: {} (is the run folder writable?)", path.string(), std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      char buf[32] = {0};
      const ssize_t n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
      ::close(fd_);
      fd_ = -1;
      throw_input("{} is in use by another cts process{}; wait for it to finish or stop it first", dir.string(),
                  n > 0 ? fmt::format(" (pid {})", std::string(buf, size_t(n))) : std::string());
    }
    const std::string pid = std::to_string(::getpid());
    if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
      // The pid is only for the message above; the lock itself holds.
    }
  }
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(RunFolderLock&& other) noexcept {
    if (this != &other) {
      release();
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  ~RunFolderLock() { release(); }

 private:
  void release() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

class Trainer {
 public:
  Trainer(const Config& config, const RunOptions& options) : cfg_(config), opt_(options) {}
  RunSummary run();

 private:
  RunSummary run_steps();
  void setup();
  void restore(const CheckpointData& ck);
  void train_task(int64_t task, int64_t start_epoch, int64_t start_step);
  torch::Tensor training_step(int64_t task, int64_t epoch, int64_t step, int64_t step_in_task, const torch::Tensor& images_u8,
                              const torch::Tensor& targets, const torch::Tensor& ids, double lr);
  torch::Tensor replay_loss(int64_t task, int64_t step_in_task);
  void evaluate(int64_t task);
  void select_memory(int64_t task);
  void setup_byte_budget();
  void update_memory_stats(int64_t tasks_done);
  void write_outputs(bool final);
  void checkpoint(int64_t task, int64_t epoch, int64_t step, bool task_complete);
  bool should_stop();
  OptimizerOptions optimizer_options() const;
  torch::Tensor task_order(int64_t task, int64_t epoch, int64_t n) const;

  Config cfg_;
  RunOptions opt_;
  MemoryFractions fractions_;
  torch::Device device_{torch::kCPU};
  std::filesystem::path dir_;
  DatasetSplits data_;
  TaskSplit split_;
  VisionTransformer model_{nullptr};
  torch::Tensor head_init_rows_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<SampleSelector> coreset_;
  std::unique_ptr<TokenSelector> token_selector_;
  TokenBuffer buffer_;
  std::vector<torch::Tensor> cumulative_;  // cumulative strategy: dataset indices of past tasks
  torch::Tensor cumulative_all_;
  RunRecord record_;
  JsonlLog log_;
  FillMode fill_ = FillMode::ZeroEmbedding;
  bool bf16_ = false;  // autocast forward passes (train.precision)
  std::vector<std::string> weight_notes_;  // what loading model.weights adapted
  double token_drop_ = 0.0;
  double replay_token_fraction_ = 1.0;  // token fraction of the memory (replay rescale); set per task with budget_bytes
  std::vector<int64_t> task_samples_;   // training samples of each task (byte-budget shares)
  int64_t num_tokens_ = 0;
  int64_t steps_this_process_ = 0;
  int64_t global_step_ = 0;  // optimizer steps of the whole run (checkpoint_every counts these)
  RunFolderLock lock_;
  bool stopped_ = false;
  double loss_new_sum_ = 0.0, loss_replay_sum_ = 0.0;
  int64_t loss_count_ = 0;
  torch::Tensor loss_acc_;      // [2] float64 on the device: loss sums not yet folded into the above
  int64_t loss_acc_steps_ = 0;  // steps in loss_acc_
  Clock::time_point run_start_;
  double seconds_before_resume_ = 0.0;
};

torch::Tensor Trainer::task_order(int64_t task, int64_t epoch, int64_t n) const {
  auto gen = make_generator(static_cast<uint64_t>(cfg_.seed), "data_order", {task, epoch});
  return torch::randperm(n, gen, torch::kInt64);
}

OptimizerOptions Trainer::optimizer_options() const {
  OptimizerOptions o;
  o.kind = cfg_.train.optimizer;
  o.weight_decay = cfg_.train.weight_decay;
  o.beta1 = cfg_.train.beta1;
  o.beta2 = cfg_.train.beta2;
  o.momentum = cfg_.train.momentum;
  return o;
}

bool Trainer::should_stop() {
  if (opt_.stop_requested && opt_.stop_requested->load()) return true;
  return opt_.stop_after_steps >= 0 && steps_this_process_ >= opt_.stop_after_steps;
}

void Trainer::setup() {
  fractions_ = resolve_memory_fractions(cfg_.memory);
  configure_threads(cfg_.threads);
  device_ = choose_device(opt_.device.empty() ? cfg_.device : opt_.device);
  bf16_ = use_bf16_autocast(cfg_.train.precision, device_);
  dir_ = run_directory(cfg_, opt_);

  // Data and tasks.
  const ViTConfig preset = vit_preset(cfg_.model.preset);
  const int64_t patch = cfg_.model.patch_size ? cfg_.model.patch_size : preset.patch_size;
  data_ = open_dataset(cfg_.data, patch, static_cast<uint64_t>(cfg_.seed));
  split_ = make_task_split(data_.train->num_classes(), cfg_.data.tasks, cfg_.data.class_order, static_cast<uint64_t>(cfg_.seed));
  for (int64_t t = 0; t < split_.num_tasks(); ++t) {
    if (split_.task_indices(*data_.train, t).size(0) == 0) throw_input("data: task {} has no training samples (classes {})", t, fmt::join(split_.task_classes[size_t(t)], ", "));
  }

  // Model.
  const ViTConfig vcfg = model_config(cfg_, data_.train->shape(), split_.classes_per_task);
  model_ = VisionTransformer(vcfg, static_cast<uint64_t>(cfg_.seed));
  model_->set_attention_mode(cfg_.model.attention);
  if (!cfg_.model.weights.empty()) {
    auto report = load_vit_weights(model_, cfg_.model.weights);
    Console::get().info("loaded {}", cfg_.model.weights);
    for (const auto& note : report.notes) Console::get().info("  {}", note);
    weight_notes_ = report.notes;
  }
  num_tokens_ = vcfg.num_patches();
  const int64_t total_classes = split_.classes_per_task * split_.num_tasks();
  head_init_rows_ = init_head_rows(total_classes, vcfg.embed_dim, static_cast<uint64_t>(cfg_.seed));
  {
    torch::NoGradGuard no_grad;  // the first task's rows come from the same seeded init as later ones
    model_->head->weight.copy_(head_init_rows_.narrow(0, 0, split_.classes_per_task));
    model_->head->bias.zero_();
  }
  model_->to(device_);

  // Memory.
  fill_ = parse_fill_mode(cfg_.memory.fill);
  const bool partial_memory = cfg_.memory.strategy == "core-tokens" || cfg_.memory.strategy == "core-tokenset";
  for (int64_t t = 0; t < split_.num_tasks(); ++t) task_samples_.push_back(split_.task_indices(*data_.train, t).size(0));
  replay_token_fraction_ = fractions_.token_fraction;
  if (fractions_.budget_bytes) setup_byte_budget();
  token_drop_ = cfg_.train.token_drop.is_auto ? (partial_memory ? 1.0 - fractions_.token_fraction : 0.0) : cfg_.train.token_drop.value;
  if (token_drop_ >= 1.0) throw_input("train.token_drop = {} drops every token; accepted: [0, 1)", token_drop_);
  if (partial_memory && !fractions_.budget_bytes && std::llround(fractions_.token_fraction * double(num_tokens_)) < 1) {
    throw_input("memory.token_fraction = {:.4g} keeps 0 of the {} tokens of an image; an impossible budget (need >= {:.4g})",
                fractions_.token_fraction, num_tokens_, 0.5 / double(num_tokens_));
  }
  SampleSelectorOptions sopt;
  sopt.gradient = cfg_.memory.coreset_gradient;
  sopt.gradmatch_lambda = cfg_.memory.gradmatch_lambda;
  sopt.gradmatch_tolerance = cfg_.memory.gradmatch_tolerance;
  sopt.craig_matrix_bytes = static_cast<int64_t>(cfg_.memory.coreset_memory_mb * 1024.0 * 1024.0);
  coreset_ = make_sample_selector(cfg_.memory.coreset, sopt);
  TokenSelectorOptions topt;
  topt.seed = static_cast<uint64_t>(cfg_.seed);
  topt.atman_factor = cfg_.memory.atman_factor;
  topt.atman_kappa = cfg_.memory.atman_kappa;
  topt.atman_similarity_rank = cfg_.memory.atman_similarity_rank;
  topt.atman_chunk = cfg_.memory.atman_chunk;
  token_selector_ = make_token_selector(cfg_.memory.tokens, topt);
  const auto shape = data_.train->shape();
  buffer_ = TokenBuffer(shape.channels, shape.height, vcfg.patch_size);
  buffer_.metadata() = {{"strategy", cfg_.memory.strategy},
                        {"coreset_method", cfg_.memory.coreset},
                        {"token_method", cfg_.memory.tokens},
                        {"selection", cfg_.memory.selection},
                        {"budget_bytes", fractions_.budget_bytes ? std::to_string(*fractions_.budget_bytes) : "null"},
                        {"fill", cfg_.memory.fill},
                        {"sample_fraction", fmt::format("{}", fractions_.sample_fraction)},
                        {"token_fraction", fmt::format("{}", fractions_.token_fraction)},
                        {"retention", fmt::format("{}", fractions_.retention)},
                        {"dataset", cfg_.data.name},
                        {"class_order", fmt::format("{}", fmt::join(split_.class_order, ","))}};

  record_.num_tasks = split_.num_tasks();
  record_.accuracy.assign(size_t(record_.num_tasks), std::vector<double>(size_t(record_.num_tasks), NAN));
  record_.task_il_accuracy = record_.accuracy;
  record_.device = device_name(device_);
  const auto names = data_.train->class_names();
  for (const auto& group : split_.task_classes) {
    std::vector<std::string> g;
    for (int64_t c : group) g.push_back(names.at(size_t(c)));
    record_.task_classes.push_back(g);
  }
}

RunSummary Trainer::run() {
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

RunSummary Trainer::run_steps() {
  run_start_ = Clock::now();
  setup();
  const bool resuming = !opt_.resume_dir.empty();
  ensure_directory(dir_);
  lock_ = RunFolderLock(dir_);
  // Holding the lock: temporary files here are from a killed process, never from a writer.
  remove_stale_temp_files(dir_);
  remove_stale_temp_files(dir_ / "checkpoint");
  std::optional<CheckpointData> ck;
  if (resuming) {
    if (has_checkpoint(dir_)) ck = load_checkpoint(dir_);
    cfg_.name = saved_config_name(dir_ / "config.yaml", cfg_.name);
  } else {
    if (has_checkpoint(dir_)) {
      throw_input("{} already holds a run; continue it with --resume {} or choose another --out", dir_.string(), dir_.string());
    }
    write_file_atomic(dir_ / "config.yaml", fmt::format("{}{}\n{}", kConfigNameLine, cfg_.name, config_to_yaml(cfg_)));
    // A log left by a run that died before its first checkpoint (cts sweep restarts such
    // runs) describes nothing that survives: the new run's log starts empty.
    truncate_jsonl(dir_ / "log.jsonl", 0);
  }
  if (ck) restore(*ck);
  // Records written after the last checkpoint describe work that is done again now.
  const nlohmann::json dropped = resuming ? cut_log_to_checkpoint(dir_ / "log.jsonl", ck ? ck->log_bytes : 0) : nlohmann::json::array();
  log_ = JsonlLog(dir_ / "log.jsonl");
  auto& con = Console::get();
  if (!cfg_.model.weights.empty() && !ck) log_.append({{"event", "weights_loaded"}, {"file", cfg_.model.weights}, {"notes", weight_notes_}});

  int64_t start_task = 0, start_epoch = 0, start_step = 0;
  if (resuming && !ck) {
    con.info("{} has no checkpoint yet (the run stopped before its first one): starting it from the beginning", dir_.string());
    log_.append({{"event", "resume"}, {"task", 0}, {"epoch", 0}, {"step", 0}, {"from_start", true}, {"dropped", dropped}});
  }
  if (ck) {
    if (ck->task_complete) start_task = ck->task + 1;
    else start_task = ck->task, start_epoch = ck->epoch, start_step = ck->step;
    con.info("resuming {} at task {} epoch {} step {}", dir_.string(), start_task, start_epoch, start_step);
    log_.append({{"event", "resume"}, {"task", start_task}, {"epoch", start_epoch}, {"step", start_step}, {"dropped", dropped}});
  } else {
    int64_t params = 0;
    for (const auto& p : model_->parameters()) params += p.numel();
    con.info("run {} -> {}", cfg_.name, dir_.string());
    con.info("data {}: {} train / {} test samples, {} tasks of {} classes, images {}x{}x{}", cfg_.data.name, data_.train->size(),
             data_.test->size(), split_.num_tasks(), split_.classes_per_task, data_.train->shape().channels, data_.train->shape().height,
             data_.train->shape().width);
    con.info("model {} ({:.2f} M parameters, {} tokens), device {}, {} threads", cfg_.model.preset, double(params) / 1e6, num_tokens_,
             device_name(device_), torch::get_num_threads());
    con.info("memory {}: s = {:.4g}, k = {:.4g} (retention {:.4g}), coreset {}, tokens {}, fill {}, token drop {:.3g}", cfg_.memory.strategy,
             fractions_.sample_fraction, fractions_.token_fraction, fractions_.retention, cfg_.memory.coreset, cfg_.memory.tokens,
             cfg_.memory.fill, token_drop_);
    log_.append({{"event", "run_start"}, {"config", cfg_.name}, {"device", device_name(device_)}, {"threads", torch::get_num_threads()},
                 {"parameters", params}, {"train_samples", data_.train->size()}, {"test_samples", data_.test->size()},
                 {"class_order", split_.class_order}, {"sample_fraction", fractions_.sample_fraction},
                 {"token_fraction", fractions_.token_fraction}, {"token_drop", token_drop_}});
    // b_j for FWT: task-IL accuracy of the randomly initialised model.
    auto init = evaluate_tasks(model_, *data_.test, split_, 0, head_init_rows_, cfg_.train.eval_batch_size);
    for (const auto& a : init) record_.init_task_il.push_back(a.task_il);
  }

  for (int64_t t = start_task; t < split_.num_tasks() && !stopped_; ++t) {
    const bool mid_task = ck && t == start_task && (start_epoch > 0 || start_step > 0);
    if (!mid_task) {
      model_->resize_head(split_.classes_seen_after(t), head_init_rows_.to(device_));
      if (record_.timing.size() <= size_t(t)) record_.timing.resize(size_t(t) + 1);
    }
    train_task(t, t == start_task ? start_epoch : 0, t == start_task ? start_step : 0);
    if (stopped_) break;
    evaluate(t);
    select_memory(t);
    record_.tasks_done = t + 1;
    update_memory_stats(t + 1);
    record_.total_seconds = seconds_before_resume_ + seconds_since(run_start_);
    write_outputs(false);
    log_.append({{"event", "task_end"}, {"task", t}, {"average_accuracy", record_.metrics().final_average_accuracy}});
    checkpoint(t, 0, 0, true);
    if (t + 1 < split_.num_tasks() && should_stop()) stopped_ = true;
  }

  RunSummary summary;
  summary.dir = dir_;
  if (stopped_) {
    con.info("stopped: checkpoint written; continue with: cts run --resume {}", dir_.string());
    log_.append({{"event", "stopped"}});
    summary.record = record_;
    return summary;
  }
  record_.total_seconds = seconds_before_resume_ + seconds_since(run_start_);
  write_outputs(true);
  const auto m = record_.metrics();
  log_.append({{"event", "run_end"}, {"final_average_accuracy", m.final_average_accuracy}, {"seconds", record_.total_seconds}});
  con.info("done in {:.1f} s: final average accuracy {:.2f} %, memory {} samples / {} tokens / {} bytes ({:.3f} % of the tokens)",
           record_.total_seconds, 100.0 * m.final_average_accuracy, record_.memory.samples, record_.memory.tokens, record_.memory.bytes,
           100.0 * record_.memory.fraction());
  summary.record = record_;
  summary.completed = true;
  return summary;
}

void Trainer::train_task(int64_t task, int64_t start_epoch, int64_t start_step) {
  auto& con = Console::get();
  const auto indices = split_.task_indices(*data_.train, task);
  const int64_t n = indices.size(0);
  const int64_t bs = cfg_.train.batch_size;
  const int64_t steps_per_epoch = (n + bs - 1) / bs;
  const int64_t total = steps_per_epoch * cfg_.train.epochs;
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : model_->named_parameters()) named.emplace_back(p.key(), p.value());
  if (!optimizer_ || (start_epoch == 0 && start_step == 0)) optimizer_ = std::make_unique<Optimizer>(named, optimizer_options());
  const bool in_memory = dynamic_cast<const TensorDataset*>(data_.train.get()) != nullptr;
  model_->train();
  auto& timing = record_.timing[size_t(task)];
  for (int64_t epoch = start_epoch; epoch < cfg_.train.epochs; ++epoch) {
    const auto order = indices.index_select(0, task_order(task, epoch, n));
    auto t0 = Clock::now();
    const int64_t first = epoch == start_epoch ? start_step : 0;
    // Losses are summed on the device and folded into the host sums every log_every steps;
    // a checkpoint stores the unfolded part as it is, so a resumed run adds the same numbers
    // in the same order as an uninterrupted one.
    if (first == 0 || !loss_acc_.defined()) {
      loss_acc_ = torch::zeros({2}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
      loss_acc_steps_ = 0;
    }
    if (first == 0) loss_new_sum_ = loss_replay_sum_ = 0.0, loss_count_ = 0;
    torch::Tensor& loss_acc = loss_acc_;
    int64_t& acc_steps = loss_acc_steps_;
    con.progress_begin(fmt::format("task {}/{} epoch {}/{}", task + 1, split_.num_tasks(), epoch + 1, cfg_.train.epochs), steps_per_epoch);
    auto batch_ids = [&](int64_t s) { return order.narrow(0, s * bs, std::min(bs, n - s * bs)); };
    std::future<torch::Tensor> next;
    // Decoded datasets: the next batch is decoded (and, for CUDA, pinned so the copy is
    // asynchronous) while the current step runs.
    const bool pin = device_.is_cuda();
    auto load = [&, pin](int64_t s) {
      auto imgs = data_.train->images(batch_ids(s));
      return pin ? imgs.pin_memory() : imgs;
    };
    if (!in_memory && first < steps_per_epoch) next = std::async(std::launch::async, load, first);
    std::string status;
    for (int64_t s = first; s < steps_per_epoch; ++s) {
      const auto ids = batch_ids(s);
      torch::Tensor images = in_memory ? data_.train->images(ids) : next.get();
      if (!in_memory && s + 1 < steps_per_epoch) next = std::async(std::launch::async, load, s + 1);
      const auto targets = split_.map_labels(data_.train->labels().index_select(0, ids));
      const int64_t step_in_task = epoch * steps_per_epoch + s;
      const double lr = scheduled_lr(cfg_.train.schedule, cfg_.train.lr, cfg_.train.min_lr, cfg_.train.warmup_steps, step_in_task, total);
      loss_acc += training_step(task, epoch, s, step_in_task, images, targets, ids, lr);
      ++acc_steps;
      ++steps_this_process_;
      ++global_step_;
      if (crash_points_enabled()) crash_point("step");
      timing.steps += 1;
      timing.samples += ids.size(0);
      if ((s + 1) % cfg_.train.log_every == 0 || s + 1 == steps_per_epoch) {
        auto host = loss_acc.to(torch::kCPU);  // the only device sync, every log_every steps
        loss_new_sum_ += host[0].item<double>();
        loss_replay_sum_ += host[1].item<double>();
        loss_count_ += acc_steps;
        loss_acc.zero_();
        acc_steps = 0;
        if (!std::isfinite(loss_new_sum_) || !std::isfinite(loss_replay_sum_)) {
          throw_run("task {} epoch {} step {}: the loss became {} (lower train.lr or set train.grad_clip)", task, epoch, s,
                    std::isfinite(loss_new_sum_) ? loss_replay_sum_ : loss_new_sum_);
        }
        status = fmt::format("loss {:.4f} replay {:.4f} lr {:.2e}", loss_new_sum_ / double(loss_count_), loss_replay_sum_ / double(loss_count_), lr);
      }
      con.progress_update(s + 1, status);
      const bool stop = should_stop();
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
    log_.append({{"event", "epoch"}, {"task", task}, {"epoch", epoch}, {"steps", steps_per_epoch},
                 {"loss_new", loss_count_ ? loss_new_sum_ / double(loss_count_) : 0.0},
                 {"loss_replay", loss_count_ ? loss_replay_sum_ / double(loss_count_) : 0.0}, {"seconds", secs},
                 {"samples_per_second", secs > 0 ? double(n) / secs : 0.0}});
  }
}

torch::Tensor Trainer::training_step(int64_t task, int64_t epoch, int64_t step, int64_t step_in_task, const torch::Tensor& images_u8,
                                     const torch::Tensor& targets, const torch::Tensor& ids, double lr) {
  optimizer_->zero_grad();
  const int64_t B = images_u8.size(0);
  auto x = model_->normalize(images_u8);
  auto y = targets.to(device_);
  TokenKeep keep;
  const TokenKeep* keep_ptr = nullptr;
  if (token_drop_ > 0.0) {
    const int64_t kept = tokens_kept(1.0 - token_drop_, num_tokens_);
    // Joint selection keeps 1..T tokens per memory sample. New data then keeps a count drawn
    // from the memory's own counts, so sequence length (drop fill) or the number of filled
    // tokens does not tell replayed from new samples (with a fixed count the model learned
    // that shortcut and scored 0 % on each new task's full test images).
    torch::Tensor counts;
    if (fractions_.joint && !buffer_.empty()) {
      auto gen = make_generator(static_cast<uint64_t>(cfg_.seed), "token_drop_counts", {task, epoch, step});
      counts = buffer_.counts().index_select(0, torch::randint(buffer_.size(), {B}, gen, torch::kInt64));
    }
    auto choose = [&](const torch::Tensor& scores, const torch::Tensor& tie_keys) {
      return counts.defined() ? top_tokens(scores, counts, tie_keys) : top_tokens(scores, kept, tie_keys);
    };
    if (cfg_.train.token_drop_policy == "memory-tokens") {
      // The tokens the memory's selector would keep, scored by the current model.
      torch::Tensor tgt = targets;
      if (cfg_.memory.target == "predicted") {
        torch::NoGradGuard ng;
        model_->eval();
        tgt = model_->forward(x).argmax(1).to(torch::kCPU);
        model_->train();
      }
      auto rel = token_selector_->relevance(model_, images_u8, tgt, ids);
      keep.positions = choose(rel, token_tie_keys(ids, num_tokens_, static_cast<uint64_t>(cfg_.seed)));
    } else {
      auto gen = make_generator(static_cast<uint64_t>(cfg_.seed), "token_drop", {task, epoch, step});
      keep.positions = choose(torch::rand({B, num_tokens_}, gen), torch::Tensor());
    }
    keep.fill = fill_;
    keep.rescale = cfg_.train.token_drop_rescale ? 1.0 / (1.0 - token_drop_) : 1.0;
    keep_ptr = &keep;
  }
  torch::Tensor loss_new, loss_rep;
  {
    AutocastScope amp(device_, bf16_);
    loss_new = torch::cross_entropy_loss(model_->forward(x, {keep_ptr, nullptr}), y);
    loss_rep = replay_loss(task, step_in_task);
  }
  auto loss = loss_new;
  if (loss_rep.defined()) loss = loss + loss_rep;
  loss.backward();
  if (cfg_.train.grad_clip > 0) {
    std::vector<torch::Tensor> params;
    for (const auto& p : model_->parameters()) params.push_back(p);
    clip_grad_norm(params, cfg_.train.grad_clip);
  }
  optimizer_->step(lr);
  auto out = torch::stack({loss_new.detach().to(torch::kFloat64), loss_rep.defined() ? loss_rep.detach().to(torch::kFloat64)
                                                                                      : torch::zeros({}, loss_new.options().dtype(torch::kFloat64))});
  return out;
}

torch::Tensor Trainer::replay_loss(int64_t task, int64_t step_in_task) {
  const bool cumulative = cfg_.memory.strategy == "cumulative";
  const int64_t n = cumulative ? (cumulative_all_.defined() ? cumulative_all_.size(0) : 0) : buffer_.size();
  if (!fractions_.uses_memory || n == 0) return {};
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
      auto gen = make_generator(static_cast<uint64_t>(cfg_.seed), "replay", {task, cycle});
      perm = torch::randperm(n, gen, torch::kInt64);
      perm_cycle = cycle;
    }
    picks.push_back(perm.data_ptr<int64_t>()[q % n]);
  }
  auto idx = torch::tensor(picks, torch::kInt64);
  if (cumulative) {
    auto ds = cumulative_all_.index_select(0, idx);
    auto x = model_->normalize(data_.train->images(ds));
    auto y = split_.map_labels(data_.train->labels().index_select(0, ds)).to(device_);
    return torch::cross_entropy_loss(model_->forward(x), y);
  }
  const bool drop = fill_ == FillMode::Drop;
  auto batch = buffer_.gather(idx, !drop, drop);
  auto y = split_.map_labels(batch.labels).to(device_);
  TokenKeep keep;
  keep.positions = batch.positions;
  keep.fill = fill_;
  keep.rescale = cfg_.train.token_drop_rescale && replay_token_fraction_ < 1.0 ? 1.0 / replay_token_fraction_ : 1.0;
  torch::Tensor logits;
  if (drop) {
    logits = model_->forward_head(model_->forward_features_patches(model_->normalize_patches(batch.patches), batch.positions, {&keep, nullptr}));
  } else {
    logits = model_->forward(model_->normalize(batch.images), {&keep, nullptr});
  }
  if (!cfg_.memory.use_weights || !buffer_.has_weights()) return torch::cross_entropy_loss(logits, y);
  return replay_cross_entropy(logits, y, batch.weights.to(device_));
}

void Trainer::evaluate(int64_t task) {
  const auto t0 = Clock::now();
  std::vector<TaskAccuracy> acc;
  {
    AutocastScope amp(device_, bf16_);
    acc = evaluate_tasks(model_, *data_.test, split_, task + 1, head_init_rows_, cfg_.train.eval_batch_size);
  }
  std::vector<double> row_cil, row_til;
  for (size_t j = 0; j < acc.size(); ++j) {
    record_.accuracy[size_t(task)][j] = acc[j].class_il;
    record_.task_il_accuracy[size_t(task)][j] = acc[j].task_il;
    row_cil.push_back(acc[j].class_il);
    row_til.push_back(acc[j].task_il);
  }
  const double secs = seconds_since(t0);
  record_.timing[size_t(task)].eval_seconds = secs;
  nlohmann::json cil = nlohmann::json::array(), til = nlohmann::json::array();
  std::string text;
  for (int64_t j = 0; j <= task; ++j) {
    cil.push_back(row_cil[size_t(j)]);
    text += fmt::format("{}{:.1f}", j ? " " : "", 100.0 * row_cil[size_t(j)]);
  }
  for (double v : row_til) til.push_back(std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr));
  double avg = 0;
  for (int64_t j = 0; j <= task; ++j) avg += row_cil[size_t(j)];
  avg /= double(task + 1);
  Console::get().info("task {} evaluated: class-IL accuracy per task [{}] %, average {:.2f} % ({:.1f} s)", task, text, 100.0 * avg, secs);
  log_.append({{"event", "eval"}, {"task", task}, {"class_il", cil}, {"task_il", til}, {"average_accuracy", avg}, {"seconds", secs}});
}

// memory.budget_bytes: check that every task's share can hold its minimal memory (exit 2
// otherwise, naming the smallest budget that works) and set the starting token fraction.
void Trainer::setup_byte_budget() {
  const int64_t budget = *fractions_.budget_bytes;
  const int64_t C = data_.train->shape().channels, patch = model_->config().patch_size;
  const bool w = cfg_.memory.use_weights;
  const std::string& strategy = cfg_.memory.strategy;
  int64_t all = 0;
  for (int64_t n : task_samples_) all += n;
  int64_t need_budget = 0, worst_task = -1, worst_need = 0;
  for (int64_t t = 0; t < split_.num_tasks(); ++t) {
    const int64_t classes = int64_t(split_.task_classes[size_t(t)].size());
    const int64_t need = strategy == "coreset"       ? classes * stored_sample_bytes(C, patch, num_tokens_, w)
                         : strategy == "core-tokens" ? task_samples_[size_t(t)] * stored_sample_bytes(C, patch, 1, w)
                                                     : classes * stored_sample_bytes(C, patch, 1, w);
    // share >= floor(budget · N_t / N_all) whatever earlier tasks used, so this suffices.
    const int64_t min_budget = static_cast<int64_t>(std::ceil(double(need) * double(all) / double(task_samples_[size_t(t)])));
    if (min_budget > need_budget) need_budget = min_budget, worst_task = t, worst_need = need;
  }
  if (task_byte_share(budget, 0, task_samples_[size_t(worst_task)], all) < worst_need) {
    const char* what = strategy == "coreset" ? "one whole sample per class" : (strategy == "core-tokens" ? "one token of every sample" : "one token of one sample per class");
    throw_input("memory.budget_bytes = {} is impossible: task {} would get {} bytes but {} needs {} bytes; accepted: memory.budget_bytes >= {}",
                budget, worst_task, task_byte_share(budget, 0, task_samples_[size_t(worst_task)], all), what, worst_need, need_budget);
  }
  // Starting token fraction (token_drop: auto for task 0): coreset keeps whole samples;
  // core-tokens keeps what task 0's share affords per sample; core-tokenset starts at
  // sqrt of the implied retention (budget / bytes of every sample stored whole).
  double k0 = 1.0;
  if (strategy == "core-tokens") {
    const int64_t share = task_byte_share(budget, 0, task_samples_[0], all);
    const int64_t n0 = task_samples_[0];
    const int64_t per_token = stored_sample_bytes(C, patch, 1, w) - stored_sample_bytes(C, patch, 0, w);
    k0 = double(std::clamp<int64_t>((share - n0 * stored_sample_bytes(C, patch, 0, w)) / (n0 * per_token), 1, num_tokens_)) / double(num_tokens_);
  } else if (strategy == "core-tokenset") {
    const double r0 = double(budget) / (double(all) * double(stored_sample_bytes(C, patch, num_tokens_, w)));
    k0 = std::clamp(std::sqrt(r0), 1.0 / double(num_tokens_), 1.0);
  }
  fractions_.token_fraction = k0;
  fractions_.sample_fraction = std::min(1.0, double(budget) / (double(all) * double(stored_sample_bytes(C, patch, num_tokens_, w))) / k0);
  fractions_.retention = fractions_.sample_fraction * fractions_.token_fraction;
  replay_token_fraction_ = k0;
}

void Trainer::select_memory(int64_t task) {
  if (!fractions_.uses_memory) return;
  const auto t0 = Clock::now();
  if (cfg_.memory.strategy == "cumulative") {
    cumulative_.push_back(split_.task_indices(*data_.train, task));
    cumulative_all_ = torch::cat(cumulative_);
    record_.timing[size_t(task)].selection_seconds = seconds_since(t0);
    return;
  }
  SelectionSettings st;
  st.fractions = fractions_;
  st.strategy = cfg_.memory.strategy;
  st.joint = fractions_.joint;
  st.holdout_fraction = cfg_.memory.budget_holdout;
  st.fill = fill_;
  st.rescale_tokens = cfg_.train.token_drop_rescale;
  if (fractions_.budget_bytes) {
    int64_t remaining = 0;
    for (size_t u = size_t(task); u < task_samples_.size(); ++u) remaining += task_samples_[u];
    st.budget_bytes = task_byte_share(*fractions_.budget_bytes, buffer_.bytes(), task_samples_[size_t(task)], remaining);
  }
  st.explain_predicted = cfg_.memory.target == "predicted";
  st.store_weights = cfg_.memory.use_weights;
  st.batch_size = cfg_.memory.selection_batch_size;
  st.feature_batch_size = cfg_.train.eval_batch_size;
  st.seed = static_cast<uint64_t>(cfg_.seed);
  auto rep = select_task_memory(model_, *data_.train, split_, task, *coreset_, *token_selector_, st, buffer_);
  if (crash_points_enabled()) crash_point("selection");
  const double secs = seconds_since(t0);
  record_.timing[size_t(task)].selection_seconds = secs;
  Console::get().info("task {} memory: kept {} samples x {} tokens (coreset {:.1f} s, attribution {:.1f} s); buffer {} samples, {} bytes", task,
                      rep.samples, rep.samples ? rep.tokens / rep.samples : 0, rep.coreset_seconds, rep.attribution_seconds, buffer_.size(),
                      buffer_.bytes());
  nlohmann::json trials = nlohmann::json::array();
  for (const auto& t : rep.trials)
    trials.push_back({{"tokens", t.tokens}, {"samples", t.samples}, {"bytes", t.bytes}, {"holdout_loss", t.holdout_loss}});
  log_.append({{"event", "selection"}, {"task", task}, {"samples", rep.samples}, {"tokens", rep.tokens}, {"per_class", rep.per_class},
               {"buffer_samples", buffer_.size()}, {"buffer_tokens", buffer_.tokens()}, {"buffer_bytes", buffer_.bytes()},
               {"added_bytes", rep.added_bytes}, {"budget_bytes", rep.budget_bytes}, {"tokens_per_sample", rep.tokens_per_sample},
               {"split_trials", trials}, {"split_seconds", rep.split_seconds},
               {"coreset_seconds", rep.coreset_seconds}, {"attribution_seconds", rep.attribution_seconds}});
  if (fractions_.budget_bytes && rep.samples > 0) {
    // The chosen split sets the replay rescale and (token_drop: auto) the drop rate of the next tasks.
    replay_token_fraction_ = double(buffer_.tokens()) / double(buffer_.size() * num_tokens_);
    const bool partial_memory = cfg_.memory.strategy == "core-tokens" || cfg_.memory.strategy == "core-tokenset";
    const double k_task = double(rep.tokens) / double(rep.samples * num_tokens_);
    if (cfg_.train.token_drop.is_auto && partial_memory) token_drop_ = std::min(1.0 - k_task, 1.0 - 1.0 / double(num_tokens_));
    int64_t seen = 0;
    for (int64_t u = 0; u <= task; ++u) seen += task_samples_[size_t(u)];
    fractions_.sample_fraction = double(buffer_.size()) / double(seen);
    fractions_.token_fraction = replay_token_fraction_;
    fractions_.retention = fractions_.sample_fraction * fractions_.token_fraction;
  }
}

void Trainer::update_memory_stats(int64_t tasks_done) {
  const auto shape = data_.train->shape();
  MemoryStats m;
  for (int64_t t = 0; t < tasks_done; ++t) m.dataset_samples += split_.task_indices(*data_.train, t).size(0);
  m.dataset_tokens = m.dataset_samples * num_tokens_;
  m.dataset_bytes = m.dataset_samples * (shape.bytes() + 4);  // pixels + an int32 label
  if (cfg_.memory.strategy == "cumulative") {
    m.samples = m.dataset_samples;
    m.tokens = m.dataset_tokens;
    m.bytes = m.dataset_bytes;
  } else {
    m.samples = buffer_.size();
    m.tokens = buffer_.tokens();
    m.bytes = buffer_.bytes();
  }
  record_.memory = m;
}

void Trainer::write_outputs(bool final) {
  write_file_atomic(dir_ / "metrics.json", metrics_json(record_, fractions_).dump(2) + "\n");
  write_file_atomic(dir_ / "summary.md", summary_markdown(record_, cfg_, fractions_));
  if (final) {
    buffer_.save(dir_ / "buffer.safetensors");
    if (cfg_.output.save_model) {
      save_vit_weights(model_, dir_ / "model.safetensors",
                       {{"cts.class_order", fmt::format("{}", fmt::join(split_.class_order, ","))}, {"cts.config", cfg_.name}});
    }
  }
}

void Trainer::checkpoint(int64_t task, int64_t epoch, int64_t step, bool task_complete) {
  CheckpointData d;
  d.task = task;
  d.epoch = epoch;
  d.step = step;
  d.task_complete = task_complete;
  d.head_classes = model_->num_classes();
  for (const auto& [k, v] : model_->state()) d.tensors["model." + k] = v;
  if (!task_complete && optimizer_)
    for (const auto& [k, v] : optimizer_->state()) d.tensors["optim." + k] = v;
  if (cumulative_all_.defined()) d.tensors["cumulative_indices"] = cumulative_all_;
  if (!task_complete && loss_acc_.defined()) d.tensors["loss_acc"] = loss_acc_;
  d.progress = {{"record", record_.to_json()},
                {"loss_new_sum", loss_new_sum_},
                {"loss_replay_sum", loss_replay_sum_},
                {"loss_count", loss_count_},
                {"loss_acc_steps", task_complete ? 0 : loss_acc_steps_},
                {"token_drop", token_drop_},
                {"replay_token_fraction", replay_token_fraction_},
                {"fractions", {fractions_.sample_fraction, fractions_.token_fraction}},
                {"seconds", seconds_before_resume_ + seconds_since(run_start_)},
                {"config_yaml", config_to_yaml(cfg_)}};
  // The record goes in first and the checkpoint remembers the log's size with it: a resume
  // cuts the log back to exactly this point.
  log_.append({{"event", "checkpoint"}, {"task", task}, {"epoch", epoch}, {"step", step}, {"task_complete", task_complete}});
  d.log_bytes = static_cast<int64_t>(log_.size());
  save_checkpoint(dir_, d, [&](const std::filesystem::path& p) { buffer_.save(p); });
}

void Trainer::restore(const CheckpointData& ck) {
  // The checkpoint must come from the same experiment (output and progress keys may differ).
  auto strip = [](const std::string& yaml) {
    std::string out, line;
    std::istringstream in(yaml);
    bool in_output = false;
    while (std::getline(in, line)) {
      if (!line.empty() && line[0] != ' ') in_output = line.rfind("output:", 0) == 0;
      if (!in_output && line.rfind("device:", 0) != 0) out += line + "\n";
    }
    return out;
  };
  const std::string saved = ck.progress.at("config_yaml").get<std::string>();
  if (strip(saved) != strip(config_to_yaml(cfg_))) {
    throw_input("--resume {}: the checkpoint was made with a different configuration than {}/config.yaml; resume without --set or start a new run",
                dir_.string(), dir_.string());
  }
  model_->resize_head(ck.head_classes, head_init_rows_.to(device_));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model_->named_parameters()) {
      auto it = ck.tensors.find("model." + p.key());
      if (it == ck.tensors.end()) throw_input("checkpoint in {} lacks model tensor {}", dir_.string(), p.key());
      if (it->second.sizes() != p.value().sizes()) throw_input("checkpoint tensor {} has the wrong shape", p.key());
      p.value().copy_(it->second);
    }
  }
  record_ = RunRecord::from_json(ck.progress.at("record"));
  global_step_ = 0;
  for (const auto& t : record_.timing) global_step_ += t.steps;
  loss_new_sum_ = ck.progress.at("loss_new_sum");
  loss_replay_sum_ = ck.progress.at("loss_replay_sum");
  loss_count_ = ck.progress.at("loss_count");
  loss_acc_steps_ = ck.progress.value("loss_acc_steps", int64_t{0});
  if (auto acc = ck.tensors.find("loss_acc"); acc != ck.tensors.end() && !ck.task_complete) {
    loss_acc_ = acc->second.to(device_, torch::kFloat64);
  } else {
    loss_acc_ = torch::Tensor();
    loss_acc_steps_ = 0;
  }
  if (ck.progress.contains("token_drop")) token_drop_ = ck.progress.at("token_drop");
  if (ck.progress.contains("replay_token_fraction")) replay_token_fraction_ = ck.progress.at("replay_token_fraction");
  if (ck.progress.contains("fractions")) {
    fractions_.sample_fraction = ck.progress.at("fractions").at(0);
    fractions_.token_fraction = ck.progress.at("fractions").at(1);
    fractions_.retention = fractions_.sample_fraction * fractions_.token_fraction;
  }
  seconds_before_resume_ = ck.progress.at("seconds");
  buffer_ = TokenBuffer::load(ck.buffer_file);
  auto cum = ck.tensors.find("cumulative_indices");
  if (cum != ck.tensors.end()) {
    cumulative_all_ = cum->second.to(torch::kInt64);
    cumulative_ = {cumulative_all_};
  }
  if (!ck.task_complete) {
    std::vector<std::pair<std::string, torch::Tensor>> named;
    for (const auto& p : model_->named_parameters()) named.emplace_back(p.key(), p.value());
    optimizer_ = std::make_unique<Optimizer>(named, optimizer_options());
    std::map<std::string, torch::Tensor> state;
    for (const auto& [k, v] : ck.tensors)
      if (k.rfind("optim.", 0) == 0) state[k.substr(6)] = v.to(device_);
    optimizer_->load_state(state);
  }
}

}  // namespace

torch::Tensor replay_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& weights) {
  auto ce = torch::cross_entropy_loss(logits, targets, {}, torch::Reduction::None);  // [B]
  return (ce * weights.to(ce.dtype())).sum() / weights.sum().to(ce.dtype()).clamp_min(1e-12);
}

std::filesystem::path run_directory(const Config& config, const RunOptions& options) {
  if (!options.resume_dir.empty()) return options.resume_dir;
  if (!options.out_dir.empty()) return options.out_dir;
  if (!config.output.dir.empty()) return config.output.dir;
  return std::filesystem::path("runs") / config.name;
}

RunSummary run_experiment(const Config& config, const RunOptions& options) {
  Trainer trainer(config, options);
  return trainer.run();
}

}  // namespace cts
