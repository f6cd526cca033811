// End-to-end runs on small synthetic data: the run-folder contract, determinism,
// replay effect, and stop/resume giving bit-identical results.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "cts/config/config.hpp"
#include "cts/core/error.hpp"
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

}  // namespace
}  // namespace cts
