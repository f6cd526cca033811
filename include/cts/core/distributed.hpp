// Data-parallel runs on libtorch's own distributed engine (c10d): a TCPStore for rendezvous
// and ProcessGroupGloo on CPU or ProcessGroupNCCL on CUDA, set up from the environment a
// launcher gives each process:
//
//   torchrun --nproc-per-node N --no-python cts run CONFIG.yaml
//   (or RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set by hand or a scheduler)
//
// Under torchrun (TORCHELASTIC_USE_AGENT_STORE=True) the launcher's agent hosts the store and
// every rank is a client under the prefix /worker/attempt_<restart>, as Python's
// init_process_group does; otherwise rank 0 hosts it. Without WORLD_SIZE, or with 1, a run is
// a single process and nothing here talks to the network.
//
// Every collective waits at most CTS_DIST_TIMEOUT_S seconds (default 1800: a rank may wait
// while rank 0 selects a task's memory). A failed collective (a peer died, the network broke,
// the timeout passed) throws RunError naming the operation, this rank and the cause.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cts/core/error.hpp"

namespace cts {

// A collective that failed (RunError: the CLI exits 1).
class DistributedError : public RunError {
 public:
  using RunError::RunError;
};

struct DistributedEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr;  // MASTER_ADDR
  int port = 0;             // MASTER_PORT
  bool agent_store = false;  // TORCHELASTIC_USE_AGENT_STORE=True: the launcher hosts the store
  std::string attempt = "0";  // TORCHELASTIC_RESTART_COUNT
  double timeout_s = 1800;   // CTS_DIST_TIMEOUT_S
};

// The launch environment. InputError naming the variable when one is missing or malformed
// (e.g. WORLD_SIZE=2 without MASTER_ADDR, RANK >= WORLD_SIZE).
DistributedEnv distributed_env_from_environment();

class Distributed {
 public:
  // A single process (world 1).
  Distributed();
  // Joins the process group of `env` (no-op for world 1). Gloo for CPU tensors; NCCL for
  // CUDA when this libtorch has it, else Gloo (which reduces CUDA tensors through the host).
  Distributed(const DistributedEnv& env, const torch::Device& device);
  ~Distributed();
  Distributed(Distributed&&) noexcept;
  Distributed& operator=(Distributed&&) noexcept;

  int rank() const { return env_.rank; }
  int world() const { return env_.world; }
  int local_rank() const { return env_.local_rank; }
  bool active() const { return env_.world > 1; }
  bool is_main() const { return env_.rank == 0; }
  std::string backend() const;

  // This rank's share [begin, end) of n items: contiguous, sizes differ by at most one,
  // rank order (the same split for every call with the same n).
  std::pair<int64_t, int64_t> share(int64_t n) const;

  // Sums every tensor over the ranks, in place. Tensors of one dtype and device are packed
  // into buckets of about `bucket_bytes` and reduced bucket by bucket (all buckets are
  // launched, then waited for).
  void all_reduce_sum(std::vector<torch::Tensor>& tensors, int64_t bucket_bytes = 25 << 20) const;
  // Rank `root`'s bytes on every rank.
  std::string broadcast_bytes(const std::string& bytes, int root = 0) const;
  // Rank `root`'s tensor copied into `t` (same shape and dtype on every rank).
  void broadcast(torch::Tensor& t, int root = 0) const;
  void barrier() const;

 private:
  struct Impl;
  DistributedEnv env_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cts
