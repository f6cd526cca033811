// Data-parallel runs (core/distributed.hpp) on loopback with Gloo: two `cts run` processes
// with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set by hand, against one process with
// the same global batch:
// - the loss curve matches (the ranks' shares add up to the global batch: the first task's
//   epochs to 1e-5 relative, later ones within 1e-2: float sums in another order, amplified
//   by training); metrics.json within 2 test samples per entry;
// - buffer.safetensors is byte-identical with 1, 2 and 4 processes (random coreset × random
//   tokens: selection does not depend on the model, so any difference would be the budget or
//   the rank split);
// - rank 1 never touches its run folder and leaves no scratch files;
// - a rank killed mid-training stops the job with a message naming the failed collective,
//   rank 0 leaves a checkpoint at the step it could not take, and the run resumes in one
//   process (another world size) to the end;
// - torchrun (the launcher users run) starts the same job when it is installed.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cmath>
#include <map>
#include <sstream>

#include "cts/core/distributed.hpp"
#include "cts/train/checkpoint.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::read_json;
using test::TempDir;
namespace fs = std::filesystem;

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

pid_t start(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, const fs::path& log) {
  return test::start_child(args, {env.begin(), env.end()}, log, {"WORLD_SIZE", "RANK"});
}

test::ChildEnd wait_for(pid_t pid, const fs::path& log) { return test::wait_child(pid, log); }

std::map<std::string, std::string> rank_env(int rank, int world, int port) {
  return {{"WORLD_SIZE", std::to_string(world)}, {"RANK", std::to_string(rank)}, {"LOCAL_RANK", std::to_string(rank)},
          {"MASTER_ADDR", "127.0.0.1"},          {"MASTER_PORT", std::to_string(port)}, {"CTS_DIST_TIMEOUT_S", "120"}};
}

std::vector<std::vector<double>> epoch_losses(const fs::path& run) {
  std::vector<std::vector<double>> out;
  std::istringstream in(test::read_text(run / "log.jsonl"));
  std::string line;
  while (std::getline(in, line)) {
    auto r = nlohmann::json::parse(line);
    if (r["event"] == "epoch") out.push_back({r["loss_new"].get<double>(), r["loss_replay"].get<double>()});
  }
  return out;
}

// 3 tasks of 120 samples, batch 15 (8 steps an epoch; 2 ranks take 7 and 8 samples) and
// replay 13 (6 and 7): uneven shares on purpose.
const char* kConfig =
    "seed: 3\nthreads: 1\n"
    "data: {name: synthetic, tasks: 3, num_classes: 6, train_per_class: 60, test_per_class: 11}\n"
    "model: {preset: vit_nano_patch4_28, embed_dim: 32, depth: 2, num_heads: 2}\n"
    "train: {epochs: 2, batch_size: 15, replay_batch_size: 13, warmup_steps: 2, lr: 2.0e-3, checkpoint_every: 5, log_every: 3}\n"
    "memory: {strategy: core-tokenset, retention: 0.09, tokens: random}\n"
    "output: {progress: none}\n";

void expect_close_runs(const fs::path& one, const fs::path& two) {
  const auto a = epoch_losses(one), b = epoch_losses(two);
  ASSERT_EQ(a.size(), b.size());
  for (size_t e = 0; e < a.size(); ++e)
    for (size_t k = 0; k < 2; ++k) {
      const double tol = (e < 2 ? 1e-5 : 1e-2) * std::max(1.0, std::abs(a[e][k]));
      EXPECT_NEAR(a[e][k], b[e][k], tol) << "epoch record " << e << " term " << k;
    }
  const auto ma = read_json(one / "metrics.json"), mb = read_json(two / "metrics.json");
  // 22 test samples a task: 2 samples = 0.0909.
  for (const char* m : {"accuracy_matrix", "task_il_accuracy_matrix"}) {
    if (!ma.contains(m)) continue;
    ASSERT_TRUE(mb.contains(m)) << m;
    for (size_t i = 0; i < ma[m].size(); ++i)
      for (size_t j = 0; j < ma[m][i].size(); ++j) {
        if (ma[m][i][j].is_null()) {
          EXPECT_TRUE(mb[m][i][j].is_null());
          continue;
        }
        EXPECT_NEAR(ma[m][i][j].get<double>(), mb[m][i][j].get<double>(), 0.091) << m << " " << i << "," << j;
      }
  }
  EXPECT_EQ(ma["memory"], mb["memory"]);
}

TEST(Distributed, EnvironmentIsValidated) {
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("RANK", "2", 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", "29500", 1);
  test::expect_error("RANK out of range", [] { distributed_env_from_environment(); }, {"RANK=2", "[0, 1]"});
  ::setenv("RANK", "1", 1);
  ::unsetenv("MASTER_ADDR");
  test::expect_error("no MASTER_ADDR", [] { distributed_env_from_environment(); }, {"MASTER_ADDR"});
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", "http", 1);
  test::expect_error("bad port", [] { distributed_env_from_environment(); }, {"MASTER_PORT=http", "[1, 65535]"});
  ::setenv("MASTER_PORT", "29500", 1);
  ::setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
  ::setenv("TORCHELASTIC_RESTART_COUNT", "2", 1);
  const auto e = distributed_env_from_environment();
  EXPECT_EQ(e.world, 2);
  EXPECT_EQ(e.rank, 1);
  EXPECT_TRUE(e.agent_store);
  EXPECT_EQ(e.attempt, "2");
  for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"}) ::unsetenv(v);
  EXPECT_EQ(distributed_env_from_environment().world, 1);
  // Shares: contiguous, sizes differ by at most one, covering every item.
  Distributed single;
  EXPECT_EQ(single.share(15), (std::pair<int64_t, int64_t>{0, 15}));
}

TEST(Distributed, TwoProcessesMatchOneProcess) {
  TempDir dir;
  test::write_text(dir / "exp.yaml", kConfig);
  const std::string config = (dir / "exp.yaml").string();
  auto one = wait_for(start({CTS_BINARY, "run", config, "--out", (dir / "one").string()}, {}, dir / "one.out"), dir / "one.out");
  ASSERT_EQ(one.exit_code, 0) << one.output;

  const int port = free_port();
  fs::create_directories(dir / "tmp1");
  // The scratch folder a killed rank left (its pid is gone): removed by the next job's ranks.
  pid_t dead = fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  fs::create_directories(dir / "tmp1" / ("cts-rank1-" + std::to_string(dead)));
  auto env1 = rank_env(1, 2, port);
  env1["TMPDIR"] = (dir / "tmp1").string();
  // Rank 1 is given another --out: it must never create or touch it.
  const pid_t p1 = start({CTS_BINARY, "run", config, "--out", (dir / "rank1-out").string()}, env1, dir / "r1.out");
  const pid_t p0 = start({CTS_BINARY, "run", config, "--out", (dir / "two").string()}, rank_env(0, 2, port), dir / "r0.out");
  auto r0 = wait_for(p0, dir / "r0.out");
  auto r1 = wait_for(p1, dir / "r1.out");
  ASSERT_EQ(r0.exit_code, 0) << r0.output;
  ASSERT_EQ(r1.exit_code, 0) << r1.output;
  EXPECT_NE(r0.output.find("data-parallel: 2 processes (gloo)"), std::string::npos) << r0.output;
  EXPECT_EQ(r1.output, "") << "rank 1 prints nothing";
  EXPECT_FALSE(fs::exists(dir / "rank1-out")) << "rank 1 created its run folder";
  EXPECT_TRUE(fs::is_empty(dir / "tmp1")) << "rank 1 left scratch files, or a dead rank's stayed";

  EXPECT_EQ(test::read_text(dir / "one" / "buffer.safetensors"), test::read_text(dir / "two" / "buffer.safetensors"));
  expect_close_runs(dir / "one", dir / "two");
  const auto start_rec = nlohmann::json::parse(test::read_text(dir / "two" / "log.jsonl").substr(0, test::read_text(dir / "two" / "log.jsonl").find('\n')));
  EXPECT_EQ(start_rec["world_size"], 2);

  // 4 processes (shares of 3-4 new and 3-4 replay samples): the same buffer, a close run.
  const int port4 = free_port();
  std::vector<pid_t> pids;
  for (int r = 3; r >= 0; --r)
    pids.push_back(start({CTS_BINARY, "run", config, "--out", (dir / (r == 0 ? "four" : "four-" + std::to_string(r))).string()}, rank_env(r, 4, port4),
                         dir / ("four" + std::to_string(r) + ".out")));
  for (int r = 3; r >= 0; --r) {
    auto e = wait_for(pids[size_t(3 - r)], dir / ("four" + std::to_string(r) + ".out"));
    ASSERT_EQ(e.exit_code, 0) << "rank " << r << ": " << e.output;
  }
  EXPECT_EQ(test::read_text(dir / "one" / "buffer.safetensors"), test::read_text(dir / "four" / "buffer.safetensors"));
  expect_close_runs(dir / "one", dir / "four");
}

TEST(Distributed, KilledRankStopsTheJobAndTheRunResumesWithAnotherWorldSize) {
  TempDir dir;
  test::write_text(dir / "exp.yaml", kConfig);
  const std::string config = (dir / "exp.yaml").string();
  const int port = free_port();
  auto env1 = rank_env(1, 2, port);
  env1["CTS_TEST_KILL_AT"] = "step:12";  // SIGKILL after its 12th step (task 0, epoch 1, step 3)
  const pid_t p1 = start({CTS_BINARY, "run", config, "--out", (dir / "rank1").string()}, env1, dir / "r1.out");
  const pid_t p0 = start({CTS_BINARY, "run", config, "--out", (dir / "run").string()}, rank_env(0, 2, port), dir / "r0.out");
  auto r1 = wait_for(p1, dir / "r1.out");
  auto r0 = wait_for(p0, dir / "r0.out");
  EXPECT_EQ(r1.signal, SIGKILL) << r1.output;
  EXPECT_EQ(r0.exit_code, 1) << r0.output;
  EXPECT_NE(r0.output.find("distributed: all-reduce failed on rank 0 of 2"), std::string::npos) << r0.output;
  EXPECT_NE(r0.output.find("--resume"), std::string::npos) << r0.output;
  // Rank 0 checkpointed the step it could not take: task 0, epoch 1, step 4 (8 steps an epoch).
  ASSERT_TRUE(has_checkpoint(dir / "run"));
  const auto ck = read_json(dir / "run" / "checkpoint" / "checkpoint.json");
  EXPECT_EQ(ck["task"], 0);
  EXPECT_EQ(ck["epoch"], 1);
  EXPECT_EQ(ck["step"], 4);

  // Resumed in one process: finishes, and ends like an uninterrupted 2-process run would
  // (compared with one process, the same tolerance).
  auto res = wait_for(start({CTS_BINARY, "run", "--resume", (dir / "run").string()}, {}, dir / "res.out"), dir / "res.out");
  ASSERT_EQ(res.exit_code, 0) << res.output;
  auto one = wait_for(start({CTS_BINARY, "run", config, "--out", (dir / "one").string()}, {}, dir / "one.out"), dir / "one.out");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_EQ(test::read_text(dir / "one" / "buffer.safetensors"), test::read_text(dir / "run" / "buffer.safetensors"));
  expect_close_runs(dir / "one", dir / "run");
}

TEST(Distributed, TorchrunLaunchesTheJob) {
  const char* torchrun = "/usr/bin/torchrun";
  if (!fs::exists(torchrun)) GTEST_SKIP() << "torchrun is not installed (Debian: python3-torch)";
  TempDir dir;
  test::write_text(dir / "exp.yaml", kConfig);
  // Debian's torchrun 1.13 under Python 3.11 cannot parse its own default --redirects/--tee
  // ("0"); 2 (stderr, where cts's progress goes) works on every version.
  auto r = wait_for(start({torchrun, "--nproc_per_node", "2", "--master_port", std::to_string(free_port()), "--redirects", "2", "--tee", "2",
                           "--no_python", CTS_BINARY, "run", (dir / "exp.yaml").string(), "--out", (dir / "run").string()},
                          {}, dir / "tr.out"),
                    dir / "tr.out");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto one = wait_for(start({CTS_BINARY, "run", (dir / "exp.yaml").string(), "--out", (dir / "one").string()}, {}, dir / "one.out"), dir / "one.out");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_EQ(test::read_text(dir / "one" / "buffer.safetensors"), test::read_text(dir / "run" / "buffer.safetensors"));
  expect_close_runs(dir / "one", dir / "run");
  EXPECT_EQ(read_json(dir / "run" / "metrics.json").contains("accuracy_matrix"), true);
}

}  // namespace
}  // namespace cts
