// End-to-end runs on small synthetic data: the run-folder contract, determinism,
// replay effect, and stop/resume giving bit-identical results.
#include <torch/torch.h>

#include <array>

#include <nlohmann/json.hpp>

#include "cts/config/config.hpp"
#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/core/console.hpp"
#include "cts/train/loop.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;
using test::read_json;

// The small experiment, with "key=value" overrides.
Config small_config(const std::vector<std::string>& sets = {}) {
  auto c = parse_config(
      "seed: 1\nthreads: 1\ndata: {name: synthetic, tasks: 3, num_classes: 6, train_per_class: 60, test_per_class: 20}\n"
      "model: {preset: vit_nano_patch4_28, embed_dim: 32, depth: 2, num_heads: 2}\n"
      "train: {epochs: 3, batch_size: 16, replay_batch_size: 16, warmup_steps: 2, lr: 2.0e-3}\n"
      "memory: {strategy: core-tokenset, retention: 0.09}\noutput: {progress: none}\n",
      "test", sets);
  c.name = "test";
  return c;
}

TEST(Loop, WritesTheRunFolderContract) {
  TempDir dir;
  Console::get().set_quiet(true);
  RunOptions o;
  o.out_dir = dir / "run";
  auto s = run_experiment(small_config(), o);
  Console::get().set_quiet(false);
  ASSERT_TRUE(s.completed);
  for (const auto* f : {"config.yaml", "metrics.json", "log.jsonl", "summary.md", "buffer.safetensors", "model.safetensors", "checkpoint/checkpoint.json"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / "run" / f)) << f;
  }
  auto m = read_json(dir / "run" / "metrics.json");
  ASSERT_EQ(m["accuracy_matrix"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(m["accuracy_matrix"][i].size(), 3u);
    for (size_t j = 0; j < 3; ++j) EXPECT_EQ(m["accuracy_matrix"][i][j].is_null(), j > i);  // upper triangle not evaluated
    // Task-IL: the tasks trained and the next one (FWT's R[i][i+1]); nothing beyond.
    for (size_t j = 0; j < 3; ++j) EXPECT_EQ(m["task_il_accuracy_matrix"][i][j].is_number(), j <= i + 1) << i << ", " << j;
  }
  for (const auto* k : {"average_accuracy", "final_average_accuracy", "average_incremental_accuracy", "forgetting", "bwt", "fwt", "timing"}) {
    EXPECT_TRUE(m.contains(k)) << k;
  }
  // Average accuracy recomputed from the matrix.
  double avg = 0;
  for (size_t j = 0; j < 3; ++j) avg += m["accuracy_matrix"][2][j].get<double>();
  EXPECT_NEAR(m["final_average_accuracy"].get<double>(), avg / 3, 1e-12);
  // Memory: s = k = 0.3 of 60 samples per class (18), round(0.3 * 49) = 15 tokens each.
  const auto& mem = m["memory"];
  EXPECT_EQ(mem["samples"].get<int64_t>(), 6 * 18);
  EXPECT_EQ(mem["tokens"].get<int64_t>(), 6 * 18 * 15);
  EXPECT_EQ(mem["dataset_tokens"].get<int64_t>(), 360 * 49);
  auto buffer = TokenBuffer::load(dir / "run" / "buffer.safetensors");
  EXPECT_EQ(buffer.bytes(), mem["bytes"].get<int64_t>());
  EXPECT_EQ(buffer.tokens(), mem["tokens"].get<int64_t>());
  // model.safetensors has timm names and the grown head (6 classes).
  auto model = load_safetensors(dir / "run" / "model.safetensors");
  EXPECT_EQ(model.at("head.weight").size(0), 6);
  EXPECT_TRUE(model.contains("blocks.1.attn.qkv.weight"));
  // The resolved config parses back to the same run.
  auto resolved = load_config(dir / "run" / "config.yaml");
  EXPECT_EQ(resolved.memory.retention, 0.09);
  // log.jsonl: one JSON object per line, with run_start and run_end.
  std::istringstream log(test::read_text(dir / "run" / "log.jsonl"));
  std::string line, first, last;
  int lines = 0;
  while (std::getline(log, line)) {
    auto j = nlohmann::json::parse(line);
    if (lines++ == 0) first = j["event"];
    last = j["event"];
  }
  EXPECT_EQ(first, "run_start");
  EXPECT_EQ(last, "run_end");
  // A second run into the same folder is refused (it would mix two runs).
  Console::get().set_quiet(true);
  EXPECT_THROW(run_experiment(small_config(), o), InputError);
  Console::get().set_quiet(false);
}

TEST(Loop, ReplayBeatsFinetuneAndRunsAreDeterministic) {
  TempDir dir;
  Console::get().set_quiet(true);
  auto run = [&](const std::string& name, const std::vector<std::string>& sets) {
    RunOptions o;
    o.out_dir = dir / name;
    return run_experiment(small_config(sets), o);
  };
  const std::vector<std::string> coreset = {"memory.strategy=coreset", "memory.retention=0.3", "train.epochs=6"};
  auto a = run("a", coreset);
  auto b = run("b", coreset);
  auto none = run("none", {"memory.strategy=none", "train.epochs=6"});
  Console::get().set_quiet(false);
  auto without_timing = [&](const std::string& name) {
    auto j = read_json(dir / name / "metrics.json");
    j.erase("timing");
    return j;
  };
  EXPECT_EQ(without_timing("a"), without_timing("b"));
  EXPECT_EQ(test::read_text(dir / "a" / "buffer.safetensors"), test::read_text(dir / "b" / "buffer.safetensors"));
  // Finetuning forgets old tasks completely in class-IL; replay must keep something.
  const auto fm = none.record.metrics();
  const auto am = a.record.metrics();
  EXPECT_LT(none.record.matrix("accuracy")[2][0], 0.05);
  EXPECT_GT(am.final_average_accuracy, fm.final_average_accuracy + 0.15);
}

TEST(Loop, StopAndResumeIsBitIdentical) {
  TempDir dir;
  Console::get().set_quiet(true);
  // The reference: uninterrupted.
  RunOptions full;
  full.out_dir = dir / "full";
  auto c = small_config();
  c.train.checkpoint_every = 5;
  run_experiment(c, full);
  // Interrupted twice (mid-epoch of task 0, then inside task 2), resumed each time.
  RunOptions part;
  part.out_dir = dir / "part";
  part.stop_after_steps = 7;
  auto s1 = run_experiment(c, part);
  EXPECT_FALSE(s1.completed);
  RunOptions resume;
  resume.resume_dir = dir / "part";
  resume.stop_after_steps = 10;
  auto s2 = run_experiment(c, resume);
  EXPECT_FALSE(s2.completed);
  resume.stop_after_steps = -1;
  auto s3 = run_experiment(c, resume);
  Console::get().set_quiet(false);
  EXPECT_TRUE(s3.completed);
  auto strip_timing = [](nlohmann::json j) {
    j.erase("timing");
    return j;
  };
  EXPECT_EQ(strip_timing(read_json(dir / "full" / "metrics.json")), strip_timing(read_json(dir / "part" / "metrics.json")));
  auto bf = load_safetensors(dir / "full" / "buffer.safetensors");
  auto bp = load_safetensors(dir / "part" / "buffer.safetensors");
  for (const auto& e : bf.entries) EXPECT_TRUE(torch::equal(bf.at(e.name), bp.at(e.name))) << e.name;
  auto mf = load_safetensors(dir / "full" / "model.safetensors");
  auto mp = load_safetensors(dir / "part" / "model.safetensors");
  for (const auto& e : mf.entries) EXPECT_TRUE(torch::equal(mf.at(e.name), mp.at(e.name))) << e.name;
}

// With 2 threads the loss terms run as parallel jobs and the initial model's evaluation (FWT's
// b_j) runs on a copy of it alongside task 0's training: the run must equal the 1-thread run
// bit for bit, also when it is stopped inside task 0 (its checkpoint waits for b_j) and resumed.
TEST(Loop, TwoThreadsEqualOneAndTheInitialEvaluationRunsAlongsideTaskZero) {
  TempDir dir;
  Console::get().set_quiet(true);
  // A test set large enough that the initial evaluation outlasts the first training step.
  auto c1 = small_config({"data.test_per_class=400"});
  c1.train.checkpoint_every = 5;
  auto c2 = small_config({"threads=2", "data.test_per_class=400"});
  c2.train.checkpoint_every = 5;
  RunOptions one;
  one.out_dir = dir / "one";
  run_experiment(c1, one);
  RunOptions two;
  two.out_dir = dir / "two";
  run_experiment(c2, two);
  RunOptions part;
  part.out_dir = dir / "part";
  part.stop_after_steps = 1;  // inside task 0's first epoch, while b_j is being computed
  EXPECT_FALSE(run_experiment(c2, part).completed);
  RunOptions resume;  // the checkpoint must hold b_j (FWT below would differ without it)
  resume.resume_dir = dir / "part";
  EXPECT_TRUE(run_experiment(c2, resume).completed);
  Console::get().set_quiet(false);
  auto m1 = read_json(dir / "one" / "metrics.json"), m2 = read_json(dir / "two" / "metrics.json"), mp = read_json(dir / "part" / "metrics.json");
  EXPECT_FALSE(m1["timing"]["initial_eval_alongside_training"].get<bool>());
  EXPECT_TRUE(m2["timing"]["initial_eval_alongside_training"].get<bool>());
  ASSERT_TRUE(m1["fwt"].is_number());
  for (auto* m : {&m1, &m2, &mp}) m->erase("timing");
  EXPECT_EQ(m1, m2);
  EXPECT_EQ(m1, mp);
  for (const auto* run : {"two", "part"}) {
    auto a = load_safetensors(dir / "one" / "model.safetensors"), b = load_safetensors(dir / run / "model.safetensors");
    for (const auto& e : a.entries) EXPECT_TRUE(torch::equal(a.at(e.name), b.at(e.name))) << run << " " << e.name;
  }
}

TEST(Loop, CumulativeAndCoresetAndDropFill) {
  TempDir dir;
  Console::get().set_quiet(true);
  for (const auto& [name, sets] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"cumulative", {"memory.strategy=cumulative"}},
           {"coreset", {"memory.strategy=coreset", "memory.retention=0.1"}},
           {"drop", {"memory.strategy=core-tokens", "memory.retention=0.2", "memory.fill=drop"}},
           {"zeropix", {"memory.retention=0.04", "memory.fill=zero-pixel", "train.token_drop_rescale=true", "train.epochs=1"}}}) {
    RunOptions o;
    o.out_dir = dir / name;
    auto s = run_experiment(small_config(sets), o);
    ASSERT_TRUE(s.completed) << name;
    auto m = read_json(dir / name / "metrics.json");
    if (name == "cumulative") EXPECT_DOUBLE_EQ(m["memory"]["fraction"].get<double>(), 1.0);
    if (name == "coreset") {
      EXPECT_EQ(m["memory"]["samples"].get<int64_t>(), 36);  // ceil(0.1 * 60) per class
      EXPECT_EQ(m["memory"]["tokens"].get<int64_t>(), 36 * 49);
    }
    if (name == "drop") EXPECT_EQ(m["memory"]["tokens"].get<int64_t>(), 360 * 10);  // round(0.2 * 49)
    EXPECT_GT(m["final_average_accuracy"].get<double>(), 0.0) << name;
  }
  Console::get().set_quiet(false);
}

// train.full_image_share picks whole steps evenly: step s is whole when
// floor((s + 1) share) > floor(s share).
TEST(TokenDropGuard, FullImageStepsAreSpreadEvenly) {
  std::vector<int64_t> whole;
  for (int64_t s = 0; s < 12; ++s)
    if (full_image_step(0.25, s)) whole.push_back(s);
  EXPECT_EQ(whole, (std::vector<int64_t>{3, 7, 11}));
  whole.clear();
  for (int64_t s = 0; s < 10; ++s)
    if (full_image_step(0.5, s)) whole.push_back(s);
  EXPECT_EQ(whole, (std::vector<int64_t>{1, 3, 5, 7, 9}));
  for (int64_t s = 0; s < 50; ++s) {
    EXPECT_FALSE(full_image_step(0.0, s));
    EXPECT_TRUE(full_image_step(1.0, s));
  }
  int64_t n = 0;
  for (int64_t s = 0; s < 1000; ++s) n += full_image_step(0.1, s);
  EXPECT_EQ(n, 100);
}

// The guard at share 1 shows every new sample whole: the same training as no token dropping
// (zero-embedding multiplies kept tokens by exactly 1; the drop streams are per step, so
// skipping them moves no other random stream). At 0.5 it is neither. Without dropping while the
// memory is empty, the first task trains on whole images.
TEST(TokenDropGuard, ShareOneEqualsNoDroppingAndHalfDiffers) {
  TempDir dir;
  Console::get().set_quiet(true);
  auto run = [&](const std::string& name, std::vector<std::string> sets) {
    sets.push_back("train.epochs=1");
    RunOptions o;
    o.out_dir = dir / name;
    EXPECT_TRUE(run_experiment(small_config(sets), o).completed) << name;
    return test::read_text(dir / name / "model.safetensors");  // the trained weights, byte for byte
  };
  const auto none = run("none", {"train.token_drop=0"});
  EXPECT_EQ(run("samples1", {"train.full_image_share=1", "train.full_image_unit=samples"}), none);
  EXPECT_EQ(run("steps1", {"train.full_image_share=1", "train.full_image_unit=steps"}), none);
  const auto dropped = run("dropped", {"train.full_image_share=0"});
  const auto half = run("half", {"train.full_image_share=0.5", "train.full_image_unit=samples"});
  EXPECT_NE(dropped, none);
  EXPECT_NE(half, none);
  EXPECT_NE(half, dropped);
  // One task: nothing is ever replayed, so drop_without_memory: false is no dropping at all.
  EXPECT_EQ(run("nomem1", {"train.drop_without_memory=false", "data.tasks=1"}), run("none1", {"train.token_drop=0", "data.tasks=1"}));
  EXPECT_NE(run("paper", {"train.drop_without_memory=true"}), dropped);
  // An explicit rate drops from the first step, also with no memory at all (Fig. 2's pretraining).
  EXPECT_NE(run("explicit", {"memory.strategy=none", "train.token_drop=0.5"}), run("none0", {"memory.strategy=none", "train.token_drop=0"}));
  // The guard's samples share all their tokens: it cannot rescale kept tokens by 1/(1 - p).
  EXPECT_THROW(run_experiment(small_config({"train.full_image_share=0.5", "train.full_image_unit=samples", "train.token_drop_rescale=true"}),
                              RunOptions{dir / "rescale"}),
               InputError);
  Console::get().set_quiet(false);
}

// Pretraining on part a, the continual stream on part b from its weights: the run records where
// its weights came from (file, size, the writing run's config and part), and warns when the
// weights' part overlaps its own stream.
TEST(Loop, PretrainOnPartAThenStreamOnPartBRecordsTheWeights) {
  TempDir dir;
  Console::get().set_quiet(true);
  RunOptions pre;
  pre.out_dir = dir / "pretrain";
  auto pc = small_config({"data.tasks=1", "memory.strategy=none", "data.train_subset=a"});
  pc.name = "pretrain-a";
  ASSERT_TRUE(run_experiment(pc, pre).completed);
  const auto weights = dir / "pretrain" / "model.safetensors";
  auto meta = load_safetensors(weights);
  EXPECT_EQ(meta.meta("cts.train_subset"), "a");
  EXPECT_EQ(meta.meta("cts.config"), "pretrain-a");
  // Part a holds half of each class: 6 classes x 30.
  EXPECT_EQ(read_json(dir / "pretrain" / "metrics.json")["memory"]["dataset_samples"].get<int64_t>(), 180);
  for (const std::string part : {"b", "all"}) {
    RunOptions o;
    o.out_dir = dir / part;
    ASSERT_TRUE(run_experiment(small_config({"data.train_subset=" + part, "model.weights=" + weights.string(), "train.epochs=1"}), o).completed);
    auto m = read_json(dir / part / "metrics.json");
    ASSERT_TRUE(m.contains("weights")) << part;
    const auto& w = m["weights"];
    EXPECT_EQ(w["file"].get<std::string>(), std::filesystem::absolute(weights).lexically_normal().string());
    EXPECT_EQ(w["bytes"].get<int64_t>(), int64_t(std::filesystem::file_size(weights)));
    EXPECT_EQ(w["fnv1a64"].get<std::string>().size(), 16u);
    EXPECT_EQ(w["config"], "pretrain-a");
    EXPECT_EQ(w["train_subset"], "a");
    EXPECT_EQ(w.value("overlaps_stream", false), part == "all") << part;
    EXPECT_EQ(m["memory"]["dataset_samples"].get<int64_t>(), part == "b" ? 180 : 360);
    EXPECT_NE(test::read_text(dir / part / "summary.md").find("training part a"), std::string::npos);
  }
  // Weights trained on the whole training set overlap every stream of the same dataset, part b too.
  RunOptions pre_all;
  pre_all.out_dir = dir / "pretrain-all";
  auto pall = small_config({"data.tasks=1", "memory.strategy=none", "data.train_subset=all"});
  ASSERT_TRUE(run_experiment(pall, pre_all).completed);
  RunOptions o;
  o.out_dir = dir / "b-from-all";
  ASSERT_TRUE(run_experiment(small_config({"data.train_subset=b", "model.weights=" + (dir / "pretrain-all" / "model.safetensors").string(), "train.epochs=1"}), o)
                  .completed);
  const auto w = read_json(dir / "b-from-all" / "metrics.json")["weights"];
  EXPECT_EQ(w["train_subset"], "all");
  EXPECT_TRUE(w.value("overlaps_stream", false));
  Console::get().set_quiet(false);
}

// The default guard on a small dataset of its own (Fashion-MNIST's idx format, written here: 10
// classes of 24 training images, a bright 8x8 square at a class-specific place on noise): the
// first task, where nothing is replayed yet, is learned exactly as without token dropping,
// while the paper's recipe (drop_without_memory: true) trains it on 5 of 49 patches.
// A small dataset in Fashion-MNIST's idx format under `root`: 10 classes, a bright 8x8 square at
// a class-specific place on dark noise.
void write_small_idx_dataset(const std::filesystem::path& root) {
  auto gen = make_generator(4, "small_idx_dataset");
  auto write = [&](const std::string& prefix, int per_class) {
    const int n = 10 * per_class;
    auto images = (torch::rand({n, 28, 28}, gen) * 60).to(torch::kUInt8);
    std::vector<uint8_t> labels;
    for (int i = 0; i < n; ++i) {
      const int c = i % 10;
      images[i].narrow(0, 2 + (c / 4) * 8, 8).narrow(1, 2 + (c % 4) * 6, 8).fill_(230);
      labels.push_back(uint8_t(c));
    }
    auto flat = images.contiguous();
    std::vector<uint8_t> pixels(flat.data_ptr<uint8_t>(), flat.data_ptr<uint8_t>() + flat.numel());
    test::write_text(root / (prefix + "-images-idx3-ubyte"), test::idx_file({uint32_t(n), 28, 28}, pixels));
    test::write_text(root / (prefix + "-labels-idx1-ubyte"), test::idx_file({uint32_t(n)}, labels));
  };
  write("train", 24);
  write("t10k", 10);
}

TEST(TokenDropGuard, DefaultLearnsTheFirstTaskOfASmallDatasetAsWithoutDropping) {
  TempDir dir;
  write_small_idx_dataset(dir / "data");
  Console::get().set_quiet(true);
  auto run = [&](const std::string& name, std::vector<std::string> sets) {
    for (const char* s : {"data.name=fashion-mnist", "data.tasks=5", "data.train_per_class=0", "data.test_per_class=0", "train.epochs=20",
                          "train.batch_size=8", "train.warmup_steps=5", "memory.retention=0.01", "memory.fill=drop"})
      sets.push_back(s);
    sets.push_back("data.root=" + (dir / "data").string());
    RunOptions o;
    o.out_dir = dir / name;
    EXPECT_TRUE(run_experiment(small_config(sets), o).completed) << name;
    return read_json(dir / name / "metrics.json");
  };
  const auto guard = run("default", {});
  const auto whole = run("no-drop", {"train.token_drop=0"});
  const auto paper = run("paper", {"train.drop_without_memory=true"});
  Console::get().set_quiet(false);
  EXPECT_DOUBLE_EQ(guard["accuracy_matrix"][0][0].get<double>(), whole["accuracy_matrix"][0][0].get<double>());
  EXPECT_DOUBLE_EQ(guard["task_il_accuracy_matrix"][0][1].get<double>(), whole["task_il_accuracy_matrix"][0][1].get<double>());
  EXPECT_GT(guard["accuracy_matrix"][0][0].get<double>(), 0.9);  // the first task is learned
  // From the second task on the guard drops tokens like the paper's recipe (and unlike no dropping).
  EXPECT_NE(guard["accuracy_matrix"].dump(), whole["accuracy_matrix"].dump());
  EXPECT_NE(guard["accuracy_matrix"].dump(), paper["accuracy_matrix"].dump());
}

// tools/swap_test.py on a finished run: keeping all 49 tokens, A's own, B's and random positions
// are all the whole image A, so the three rows agree, follow A about as often as the run's
// class-IL accuracy, and the shares add up to 100 %.
TEST(PythonTools, SwapTestWithEveryTokenIsTheWholeImage) {
  TempDir dir;
  write_small_idx_dataset(dir / "data");
  Console::get().set_quiet(true);
  RunOptions o;
  o.out_dir = dir / "run";
  ASSERT_TRUE(run_experiment(small_config({"data.name=fashion-mnist", "data.root=" + (dir / "data").string(), "data.tasks=5", "data.train_per_class=0",
                                           "data.test_per_class=0", "train.epochs=4", "train.batch_size=8"}),
                             o)
                  .completed);
  Console::get().set_quiet(false);
  auto r = test::run_command(std::string(CTS_PYTHON) + " " + test::source_dir() + "/tools/swap_test.py " + (dir / "run").string() +
                             " chefer-generic 49 60 --root " + (dir / "data").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::array<double, 3>> rows;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("positions:") == std::string::npos) continue;
    std::array<double, 3> v{};
    size_t p = 0;
    for (int i = 0; i < 3; ++i) {
      p = line.find_first_of("0123456789", line.find(i == 0 ? "(content)" : i == 1 ? "(pattern)" : "neither", p));
      v[size_t(i)] = std::stod(line.substr(p));
    }
    rows.push_back(v);
  }
  ASSERT_EQ(rows.size(), 3u) << r.output;
  for (const auto& v : rows) {
    EXPECT_NEAR(v[0] + v[1] + v[2], 100.0, 0.15) << r.output;
    EXPECT_EQ(v, rows[0]) << r.output;
  }
  // Following A is the class-IL accuracy on whole images: near the run's own (60 pairs vs 100 images).
  EXPECT_NEAR(rows[0][0], 100 * read_json(dir / "run" / "metrics.json")["final_average_accuracy"].get<double>(), 15.0) << r.output;
}

// A warmup as long as a task is reported (console and log.jsonl), not silently run.
TEST(Loop, WarnsWhenWarmupOutlastsATask) {
  TempDir dir;
  Console::get().set_quiet(true);
  RunOptions o;
  o.out_dir = dir / "run";
  // 2 classes x 60 samples / batch 16 = 8 steps per epoch, 1 epoch: warmup 8 never ends.
  ASSERT_TRUE(run_experiment(small_config({"train.warmup_steps=8", "train.epochs=1", "memory.strategy=none"}), o).completed);
  Console::get().set_quiet(false);
  std::istringstream log(test::read_text(dir / "run" / "log.jsonl"));
  std::string line;
  int warnings = 0;
  while (std::getline(log, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["event"] != "warning") continue;
    ++warnings;
    EXPECT_EQ(j["key"], "train.warmup_steps");
    EXPECT_EQ(j["task_steps"].get<int64_t>(), 8);
    EXPECT_NE(j["message"].get<std::string>().find("never reaches train.lr"), std::string::npos);
  }
  EXPECT_EQ(warnings, 1);
}

// Weight Aligning: after the last task the newest classes' head rows have the old rows' mean
// norm (the run's saved weights, recomputed here); without it they do not.
TEST(Loop, WeightAligningEqualisesHeadRowNorms) {
  TempDir dir;
  Console::get().set_quiet(true);
  auto ratio = [&](const std::string& name, const std::string& correction) {
    RunOptions o;
    o.out_dir = dir / name;
    EXPECT_TRUE(run_experiment(small_config({"classifier.bias_correction=" + correction, "train.epochs=2"}), o).completed);
    auto w = load_safetensors(dir / name / "model.safetensors").at("head.weight").to(torch::kFloat64);
    auto norms = w.norm(2, {1});  // 6 classes, the last task's 2 rows are the new ones
    return norms.narrow(0, 4, 2).mean().item<double>() / norms.narrow(0, 0, 4).mean().item<double>();
  };
  EXPECT_NEAR(ratio("wa", "weight-aligning"), 1.0, 1e-5);
  EXPECT_GT(std::abs(ratio("plain", "none") - 1.0), 1e-3);
  // Only the vit-classifier has the one growing head it corrects.
  EXPECT_THROW(run_experiment(small_config({"classifier.bias_correction=weight-aligning", "model.learner=linear-probe"}), RunOptions{dir / "lp"}),
               InputError);
  Console::get().set_quiet(false);
}

}  // namespace
}  // namespace cts
