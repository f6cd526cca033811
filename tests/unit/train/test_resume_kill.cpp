// Crash safety of `cts run`: the process is killed (SIGKILL, via the CTS_TEST_KILL_AT hook)
// mid-training, inside memory selection, inside a checkpoint (generation files written but
// not committed; checkpoint.json written but not renamed) and inside the final output
// write, stopped by SIGTERM and by a double SIGINT, and resumed each time with
// `cts run --resume`. The result must equal an uninterrupted run: metrics.json (wall-clock
// fields aside), buffer.safetensors and model.safetensors byte for byte, and log.jsonl the
// same records (no duplicates from the redone work). Also: a full disk during a checkpoint
// and a read-only run folder give a clear error and leave the previous checkpoint usable.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "cts/core/safetensors.hpp"
#include "cts/train/checkpoint.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;
using test::read_json;
namespace fs = std::filesystem;

using Child = test::ChildEnd;

// Runs the cts binary with `args` and extra environment variables.
Child run_cts_child(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, const fs::path& log) {
  std::vector<std::string> argv{CTS_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::wait_child(test::start_child(argv, {env.begin(), env.end()}, log), log);
}

std::string describe(const Child& c) {
  return (c.killed_by_signal ? "killed by signal " + std::to_string(c.signal) : "exit " + std::to_string(c.exit_code)) + "\n" + c.output;
}

// Drops what measures wall-clock time (seconds, throughput); everything else must match.
nlohmann::json without_wall_clock(nlohmann::json j) {
  if (j.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      if (k.find("seconds") != std::string::npos || k.find("per_second") != std::string::npos) continue;
      out[k] = without_wall_clock(it.value());
    }
    return out;
  }
  if (j.is_array()) {
    for (auto& v : j) v = without_wall_clock(v);
  }
  return j;
}

std::vector<nlohmann::json> log_records(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::istringstream in(test::read_text(p));
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));  // throws on a torn line
  return out;
}

// The records that describe the work (not when it was interrupted or checkpointed).
std::vector<nlohmann::json> work_records(const fs::path& p) {
  std::vector<nlohmann::json> out;
  for (auto& r : log_records(p)) {
    const std::string ev = r.value("event", "");
    if (ev == "resume" || ev == "checkpoint" || ev == "stopped") continue;
    out.push_back(without_wall_clock(r));
  }
  return out;
}

std::string summary_without_timing(const fs::path& p) {
  std::istringstream in(test::read_text(p));
  std::string line, out;
  while (std::getline(in, line))
    if (line.rfind("| wall time", 0) != 0 && line.rfind("Timing (seconds)", 0) != 0) out += line + "\n";
  return out;
}

int64_t committed_generation(const fs::path& run) { return read_json(run / "checkpoint" / "checkpoint.json").at("generation").get<int64_t>(); }

bool has_file_containing(const fs::path& dir, const std::string& part) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().find(part) != std::string::npos) return true;
  return false;
}

// 3 tasks x 2 epochs x 8 steps = 48 steps, a checkpoint every 5; threads: 1 so that the
// results are bit-reproducible.
const char* kConfig =
    "seed: 3\nthreads: 1\n"
    "data: {name: synthetic, tasks: 3, num_classes: 6, train_per_class: 60, test_per_class: 10}\n"
    "model: {preset: vit_nano_patch4_28, embed_dim: 32, depth: 2, num_heads: 2}\n"
    "train: {epochs: 2, batch_size: 16, replay_batch_size: 16, warmup_steps: 2, lr: 2.0e-3, checkpoint_every: 5, log_every: 3}\n"
    "memory: {strategy: core-tokenset, retention: 0.09, tokens: rollout}\n"
    "output: {progress: none}\n";

TEST(Reliability, KilledAndResumedRunEqualsAnUninterruptedOne) {
  TempDir dir;
  test::write_text(dir / "exp.yaml", kConfig);
  const std::string config = (dir / "exp.yaml").string();
  const fs::path full = dir / "full", part = dir / "part";

  auto ref = run_cts_child({"run", config, "--out", full.string()}, {}, dir / "full.out");
  ASSERT_EQ(ref.exit_code, 0) << describe(ref);

  auto kill_at = [&](const std::string& point, const std::string& signal = "") {
    std::map<std::string, std::string> env{{"CTS_TEST_KILL_AT", point}};
    if (!signal.empty()) env["CTS_TEST_KILL_SIGNAL"] = signal;
    return env;
  };
  auto resume = [&](const std::map<std::string, std::string>& env) {
    return run_cts_child({"run", "--resume", part.string()}, env, dir / "part.out");
  };
  auto expect_sigkill = [](const Child& c, const std::string& what) {
    EXPECT_TRUE(c.killed_by_signal && c.signal == SIGKILL) << what << ": " << describe(c);
  };

  // 1. Killed at step 3, before the first checkpoint: --resume starts over.
  auto c = run_cts_child({"run", config, "--out", part.string()}, kill_at("step:3"), dir / "part.out");
  expect_sigkill(c, "step 3");
  EXPECT_FALSE(has_checkpoint(part));

  // 2. Killed mid-training at global step 13: checkpoints at 5 and 10 are there.
  c = resume(kill_at("step:13"));
  expect_sigkill(c, "step 13");
  ASSERT_TRUE(has_checkpoint(part));
  auto ck = read_json(part / "checkpoint" / "checkpoint.json");
  EXPECT_EQ(ck["task"], 0);  // global step 10 = task 0, epoch 1, after its step 2 (8 steps per epoch)
  EXPECT_EQ(ck["epoch"], 1);
  EXPECT_EQ(ck["step"], 2);

  // 3. SIGTERM after 2 steps: the step finishes, a checkpoint is written, exit 130 with the hint.
  c = resume(kill_at("step:2", "TERM"));
  EXPECT_EQ(c.exit_code, 130) << describe(c);
  EXPECT_NE(c.output.find("cts run --resume " + part.string()), std::string::npos) << c.output;
  ck = read_json(part / "checkpoint" / "checkpoint.json");
  EXPECT_EQ(ck["task"], 0);
  EXPECT_EQ(ck["epoch"], 1);
  EXPECT_EQ(ck["step"], 4);

  // 4. Double SIGINT: the second one quits at once, without a checkpoint.
  const int64_t gen_before_int = committed_generation(part);
  c = resume(kill_at("step:1", "INT,INT"));
  EXPECT_EQ(c.exit_code, 130) << describe(c);
  EXPECT_NE(c.output.find("stopped immediately"), std::string::npos) << c.output;
  EXPECT_EQ(committed_generation(part), gen_before_int);

  // 5. Killed inside task 0's memory selection (after its last epoch was logged; the
  //    evaluation follows the selection and any finetuning phase).
  c = resume(kill_at("selection:1"));
  expect_sigkill(c, "selection");
  {
    auto recs = log_records(part / "log.jsonl");
    ASSERT_FALSE(recs.empty());
    EXPECT_EQ(recs.back()["event"], "epoch") << recs.back().dump();
    EXPECT_EQ(recs.back()["task"], 0);
  }

  // 6. Killed after a checkpoint's generation files, before checkpoint.json names them.
  c = resume(kill_at("checkpoint-files:2"));
  expect_sigkill(c, "checkpoint-files");
  const int64_t g6 = committed_generation(part);
  EXPECT_TRUE(fs::exists(part / "checkpoint" / fmt::format("state-{:06}.safetensors", g6 + 1)));
  EXPECT_TRUE(fs::exists(part / "checkpoint" / fmt::format("buffer-{:06}.safetensors", g6 + 1)));

  // 7. Killed between writing checkpoint.json's temporary file and renaming it.
  c = resume(kill_at("rename:checkpoint.json:2"));
  expect_sigkill(c, "rename checkpoint.json");
  EXPECT_TRUE(has_file_containing(part / "checkpoint", "checkpoint.json.tmp.")) << "the kill did not happen inside the write";
  EXPECT_NO_THROW(load_checkpoint(part));

  // 8. Killed while writing the final buffer.safetensors (every task is done).
  c = resume(kill_at("rename:buffer.safetensors:1"));
  expect_sigkill(c, "rename buffer.safetensors");
  EXPECT_FALSE(fs::exists(part / "buffer.safetensors"));
  EXPECT_TRUE(has_file_containing(part, "buffer.safetensors.tmp."));

  // 9. Finish.
  c = resume({});
  ASSERT_EQ(c.exit_code, 0) << describe(c);

  EXPECT_EQ(without_wall_clock(read_json(full / "metrics.json")).dump(1), without_wall_clock(read_json(part / "metrics.json")).dump(1));
  EXPECT_TRUE(test::read_text(full / "buffer.safetensors") == test::read_text(part / "buffer.safetensors")) << "buffer.safetensors differs";
  EXPECT_TRUE(test::read_text(full / "model.safetensors") == test::read_text(part / "model.safetensors")) << "model.safetensors differs";
  EXPECT_EQ(summary_without_timing(full / "summary.md"), summary_without_timing(part / "summary.md"));
  EXPECT_EQ(test::read_text(full / "config.yaml"), test::read_text(part / "config.yaml"));

  // log.jsonl: the same work records in the same order (losses bit for bit), none twice.
  const auto want = work_records(full / "log.jsonl"), got = work_records(part / "log.jsonl");
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(want[i].dump(), got[i].dump()) << "record " << i;
  int resumes = 0;
  std::set<std::string> checkpoints;
  for (const auto& r : log_records(part / "log.jsonl")) {
    if (r["event"] == "resume") ++resumes;
    if (r["event"] == "checkpoint") {
      const std::string key = r.dump();
      EXPECT_TRUE(checkpoints.insert(key).second) << "checkpoint record twice: " << key;
    }
  }
  // Every resume is logged except that of the double-SIGINT run, which ended before its
  // first checkpoint, so the next resume cut its records.
  EXPECT_EQ(resumes, 7);
  // Generation files of uncommitted checkpoints and temporary files are cleaned up.
  EXPECT_FALSE(has_file_containing(part, ".tmp."));
  for (const auto& e : fs::directory_iterator(part / "checkpoint")) {
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "checkpoint.json" || name == fmt::format("state-{:06}.safetensors", committed_generation(part)) ||
                name == fmt::format("buffer-{:06}.safetensors", committed_generation(part)))
        << "left over: " << name;
  }
}

// Write failures: a full disk while a checkpoint is written (RLIMIT_FSIZE always; a real
// full tmpfs where a user namespace may mount one) and a read-only run folder. Each must
// end with exit 1 and a message naming the path, leave the previous checkpoint committed
// and loadable with no half-written generation, and the run must then resume to the same
// result as an uninterrupted one.
TEST(Reliability, FullDiskAndReadOnlyFolderKeepThePreviousCheckpoint) {
  TempDir dir;
  test::write_text(dir / "exp.yaml", kConfig);
  const std::string config = (dir / "exp.yaml").string();
  const fs::path full = dir / "full", part = dir / "part";
  auto ref = run_cts_child({"run", config, "--out", full.string()}, {}, dir / "full.out");
  ASSERT_EQ(ref.exit_code, 0) << describe(ref);
  // Killed at step 20: the committed checkpoint is task 0's end (step 16).
  auto c = run_cts_child({"run", config, "--out", part.string()}, {{"CTS_TEST_KILL_AT", "step:20"}}, dir / "part.out");
  ASSERT_TRUE(c.killed_by_signal) << describe(c);
  const int64_t g = committed_generation(part);
  const std::string next_state = fmt::format("state-{:06}.safetensors", g + 1);
  auto expect_intact = [&](const fs::path& run, const std::string& what) {
    EXPECT_EQ(committed_generation(run), g) << what;
    EXPECT_NO_THROW(load_checkpoint(run)) << what;
    EXPECT_FALSE(fs::exists(run / "checkpoint" / next_state)) << what << ": the uncommitted generation was left behind";
    EXPECT_FALSE(has_file_containing(run / "checkpoint", ".tmp.")) << what;
    EXPECT_NO_THROW(log_records(run / "log.jsonl")) << what << ": log.jsonl holds a torn record";
  };
  const std::string cts = CTS_BINARY;

  // 1. The state file of the next checkpoint (about 110 KB) exceeds an 80 KB file-size limit.
  auto r = test::run_command("sh -c 'trap \"\" XFSZ; ulimit -f 160; exec " + cts + " run --resume " + part.string() + "'");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  for (const std::string& part_of_msg : {(part / "checkpoint" / next_state).string(), std::string("File too large"),
                                         fmt::format("checkpoint {} in {} is intact", g, (part / "checkpoint").string()),
                                         "cts run --resume " + part.string()}) {
    EXPECT_NE(r.output.find(part_of_msg), std::string::npos) << "'" << part_of_msg << "' missing from: " << r.output;
  }
  expect_intact(part, "file-size limit");
  EXPECT_EQ(log_records(part / "log.jsonl").back()["event"], "failed");

  // 2. A real full disk: a 512 KB tmpfs holding a copy of the run and a filler that leaves
  //    40 KB, in a private mount namespace (skipped where user namespaces are not allowed).
  const fs::path mnt = dir / "mnt", after = dir / "after";
  fs::create_directories(mnt);
  fs::create_directories(after);
  const std::string script = "unshare -rm sh -c '"
                             "mount -t tmpfs -o size=512k tmpfs " + mnt.string() + " || { echo no-tmpfs; exit 0; }; "
                             "cp -a " + part.string() + " " + mnt.string() + "/run; "
                             "avail=$(( $(stat -f -c %a " + mnt.string() + ") * $(stat -f -c %S " + mnt.string() + ") )); "
                             "head -c $((avail - 40000)) /dev/zero > " + mnt.string() + "/filler; "
                             + cts + " run --resume " + mnt.string() + "/run; echo cts-exit=$?; "
                             "cp -a " + mnt.string() + "/run/. " + after.string() + "/'";
  r = test::run_command(script);
  if (r.output.find("cts-exit=") == std::string::npos) {
    std::cout << "[ note ] no tmpfs in a user namespace here; the full-disk case ran with a file-size limit only:\n" << r.output << "\n";
  } else {
    EXPECT_NE(r.output.find("cts-exit=1"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(next_state), std::string::npos) << r.output;
    expect_intact(after, "full tmpfs");
  }

  // 3. A read-only run folder: nothing can start, and nothing is lost.
  if (::geteuid() != 0) {
    r = test::run_command("(chmod -R a-w " + part.string() + " && " + cts + " run --resume " + part.string() + "; echo cts-exit=$?; chmod -R u+w " +
                          part.string() + ")");
  } else {
    r = test::run_command("unshare -rm sh -c 'mount --bind " + part.string() + " " + part.string() + " && mount -o remount,bind,ro " +
                          part.string() + " || { echo no-ro-mount; exit 0; }; " + cts + " run --resume " + part.string() + "; echo cts-exit=$?'");
  }
  if (r.output.find("cts-exit=") == std::string::npos) {
    std::cout << "[ note ] cannot make the run folder read-only here (root without user namespaces):\n" << r.output << "\n";
  } else {
    EXPECT_NE(r.output.find("cts-exit=1"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(part.string()), std::string::npos) << r.output;
    EXPECT_TRUE(r.output.find("Read-only file system") != std::string::npos || r.output.find("Permission denied") != std::string::npos) << r.output;
    expect_intact(part, "read-only folder");
  }

  // 4. With room again the run resumes and ends where an uninterrupted run ends.
  c = run_cts_child({"run", "--resume", part.string()}, {}, dir / "part.out");
  ASSERT_EQ(c.exit_code, 0) << describe(c);
  EXPECT_EQ(without_wall_clock(read_json(full / "metrics.json")).dump(1), without_wall_clock(read_json(part / "metrics.json")).dump(1));
  EXPECT_TRUE(test::read_text(full / "buffer.safetensors") == test::read_text(part / "buffer.safetensors"));
  EXPECT_TRUE(test::read_text(full / "model.safetensors") == test::read_text(part / "model.safetensors"));
}

// DyTox (task tokens, a teacher, a fixed herding memory that shrinks per class, a balanced
// finetuning phase): killed mid-task, inside a finetuning phase and inside a selection, and
// resumed each time, it ends exactly where an uninterrupted run ends.
TEST(Reliability, DyToxKilledInTrainingFinetuningAndSelectionResumesToTheSameResult) {
  TempDir dir;
  test::write_text(dir / "exp.yaml",
                   "seed: 4\nthreads: 1\n"
                   "data: {name: synthetic, tasks: 3, num_classes: 6, train_per_class: 40, test_per_class: 10}\n"
                   "model: {learner: dytox, preset: vit_nano_patch4_28, embed_dim: 32, depth: 3, num_heads: 2}\n"
                   "train: {epochs: 2, batch_size: 16, replay_batch_size: 16, warmup_steps: 2, lr: 2.0e-3, checkpoint_every: 4}\n"
                   "memory: {strategy: core-tokenset, coreset: herding, size_policy: fixed, samples: 18, token_fraction: 0.5, fill: drop}\n"
                   "dytox: {finetune_epochs: 3, finetune_lr: 1.0e-4, mixup_alpha: 0.8}\noutput: {progress: none}\n");
  const std::string config = (dir / "exp.yaml").string();
  const fs::path full = dir / "full", part = dir / "part";
  auto ref = run_cts_child({"run", config, "--out", full.string()}, {}, dir / "full.out");
  ASSERT_EQ(ref.exit_code, 0) << describe(ref);
  auto c = run_cts_child({"run", config, "--out", part.string()}, {{"CTS_TEST_KILL_AT", "step:14"}}, dir / "part.out");
  EXPECT_TRUE(c.killed_by_signal && c.signal == SIGKILL) << describe(c);
  for (const std::string point : {"finetune:2", "step:9", "selection:1", "finetune:5"}) {
    c = run_cts_child({"run", "--resume", part.string()}, {{"CTS_TEST_KILL_AT", point}}, dir / "part.out");
    EXPECT_TRUE(c.killed_by_signal && c.signal == SIGKILL) << point << ": " << describe(c);
  }
  c = run_cts_child({"run", "--resume", part.string()}, {}, dir / "part.out");
  ASSERT_EQ(c.exit_code, 0) << describe(c);
  EXPECT_EQ(without_wall_clock(read_json(full / "metrics.json")).dump(1), without_wall_clock(read_json(part / "metrics.json")).dump(1));
  EXPECT_TRUE(test::read_text(full / "buffer.safetensors") == test::read_text(part / "buffer.safetensors")) << "buffer.safetensors differs";
  EXPECT_TRUE(test::read_text(full / "model.safetensors") == test::read_text(part / "model.safetensors")) << "model.safetensors differs";
  // The run had what it is meant to test: finetuning phases and a memory of 18 samples.
  int finetunes = 0;
  for (const auto& r : log_records(full / "log.jsonl")) finetunes += r["event"] == "finetune" && r.contains("steps");
  EXPECT_EQ(finetunes, 2);
  EXPECT_EQ(read_json(full / "metrics.json")["memory"]["samples"], 18);
}

// Two processes on one run folder would interleave checkpoints: the second is refused.
TEST(Reliability, ARunFolderInUseIsRefused) {
  TempDir dir;
  test::write_text(dir / "exp.yaml", kConfig);
  const fs::path run = dir / "run";
  auto c = run_cts_child({"run", (dir / "exp.yaml").string(), "--out", run.string()}, {{"CTS_TEST_KILL_AT", "step:6"}}, dir / "a.out");
  ASSERT_TRUE(c.killed_by_signal) << describe(c);
  // Hold the lock the way a running cts does (flock on <run>/.lock), from a shell.
  auto r = test::run_command("(flock -n " + (run / ".lock").string() + " " + CTS_BINARY + " run --resume " + run.string() + "; echo cts-exit=$?)");
  EXPECT_NE(r.output.find("cts-exit=2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(run.string() + " is in use by another cts process"), std::string::npos) << r.output;
  // Once the holder is gone (a killed process holds nothing), it resumes.
  c = run_cts_child({"run", "--resume", run.string()}, {}, dir / "b.out");
  EXPECT_EQ(c.exit_code, 0) << describe(c);
}

// A run killed before its first checkpoint and started again as a new run (what cts sweep
// does for such runs) must not keep the dead run's records in log.jsonl.
TEST(Reliability, RestartWithoutACheckpointStartsAFreshLog) {
  TempDir dir;
  test::write_text(dir / "exp.yaml", kConfig);
  const fs::path run = dir / "run";
  auto c = run_cts_child({"run", (dir / "exp.yaml").string(), "--out", run.string()}, {{"CTS_TEST_KILL_AT", "step:3"}}, dir / "a.out");
  ASSERT_TRUE(c.killed_by_signal) << describe(c);
  ASSERT_FALSE(has_checkpoint(run));
  ASSERT_FALSE(log_records(run / "log.jsonl").empty());
  c = run_cts_child({"run", (dir / "exp.yaml").string(), "--out", run.string(), "--stop-after-steps", "2"}, {}, dir / "b.out");
  ASSERT_EQ(c.exit_code, 130) << describe(c);
  int starts = 0;
  for (const auto& r : log_records(run / "log.jsonl")) starts += r["event"] == "run_start";
  EXPECT_EQ(starts, 1);
}

}  // namespace
}  // namespace cts
