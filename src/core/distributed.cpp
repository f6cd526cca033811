// c10d process group from the launch environment; bucketed all-reduce, broadcasts.
#include "cts/core/distributed.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "cts/core/error.hpp"

#if CTS_WITH_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#if CTS_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace cts {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int64_t env_int(const char* name, int64_t lo, int64_t hi, const char* what) {
  const char* v = env(name);
  if (!v) throw_input("environment: {} is not set; a data-parallel run (WORLD_SIZE > 1) needs {} ({})", name, name, what);
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi) throw_input("environment: {}={} is not valid; accepted: an integer in [{}, {}] ({})", name, v, lo, hi, what);
  return x;
}

}  // namespace

DistributedEnv distributed_env_from_environment() {
  DistributedEnv e;
  if (!env("WORLD_SIZE")) return e;
  e.world = int(env_int("WORLD_SIZE", 1, 1 << 20, "the number of processes"));
  if (e.world == 1) return e;
  e.rank = int(env_int("RANK", 0, e.world - 1, "this process's rank"));
  e.local_rank = env("LOCAL_RANK") ? int(env_int("LOCAL_RANK", 0, 1 << 16, "this process's rank on its node")) : 0;
  const char* addr = env("MASTER_ADDR");
  if (!addr) throw_input("environment: MASTER_ADDR is not set; a data-parallel run (WORLD_SIZE = {}) needs the address of rank 0's node", e.world);
  e.master_addr = addr;
  e.port = int(env_int("MASTER_PORT", 1, 65535, "the port of the rendezvous store"));
  if (const char* a = env("TORCHELASTIC_USE_AGENT_STORE")) e.agent_store = std::string(a) == "True";
  if (const char* a = env("TORCHELASTIC_RESTART_COUNT")) e.attempt = a;
  if (const char* t = env("CTS_DIST_TIMEOUT_S")) {
    char* end = nullptr;
    e.timeout_s = std::strtod(t, &end);
    if (*end != '\0' || !(e.timeout_s > 0)) throw_input("environment: CTS_DIST_TIMEOUT_S={} is not valid; accepted: seconds > 0", t);
  }
  return e;
}

#if CTS_WITH_GLOO
struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#if CTS_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  std::chrono::milliseconds timeout{0};
};
#else
struct Distributed::Impl {};
#endif

Distributed::Distributed() = default;
Distributed::~Distributed() = default;
Distributed::Distributed(Distributed&&) noexcept = default;
Distributed& Distributed::operator=(Distributed&&) noexcept = default;

namespace {
[[noreturn]] void collective_failed(const DistributedEnv& e, const std::string& op, const std::string& why) {
  throw DistributedError(fmt::format(
      "distributed: {} failed on rank {} of {}: {} (a process of the job stopped, the network failed, or CTS_DIST_TIMEOUT_S = {:g} s "
      "passed); the job stops; continue it with cts run --resume RUN_DIR under the launcher, with any number of processes",
      op, e.rank, e.world, why, e.timeout_s));
}
}  // namespace

Distributed::Distributed(const DistributedEnv& env, const torch::Device& device) : env_(env) {
  if (env_.world <= 1) return;
#if CTS_WITH_GLOO
  impl_ = std::make_unique<Impl>();
  impl_->timeout = std::chrono::milliseconds(int64_t(env_.timeout_s * 1000.0));
  try {
    c10d::TCPStoreOptions so;
    so.port = uint16_t(env_.port);
    so.isServer = !env_.agent_store && env_.rank == 0;
    so.numWorkers = size_t(env_.world);
    so.waitWorkers = true;  // clients count themselves in; the server waits for all
    so.timeout = impl_->timeout;
    so.multiTenant = true;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, so);
    const std::string prefix = env_.agent_store ? "/worker/attempt_" + env_.attempt + "/cts" : "cts";
    impl_->store = c10::make_intrusive<c10d::PrefixStore>(prefix, tcp);
#if CTS_WITH_NCCL
    if (device.is_cuda()) {
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = impl_->timeout;
      impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl", impl_->store), env_.rank, env_.world, opts);
    }
#endif
    auto opts = c10d::ProcessGroupGloo::Options::create(impl_->timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (env_.master_addr == "127.0.0.1" || env_.master_addr == "localhost") {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo", impl_->store), env_.rank, env_.world, opts);
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw_run("distributed: cannot join the process group as rank {} of {} through {}:{} within {:g} s: {} (are MASTER_ADDR / MASTER_PORT those "
              "of rank 0's node, and is every process started?)",
              env_.rank, env_.world, env_.master_addr, env_.port, env_.timeout_s, e.what());
  }
#else
  (void)device;
  throw_input("environment: WORLD_SIZE = {} asks for a data-parallel run, but this cts was built without Gloo's headers (Debian: libgloo-dev; "
              "rebuild after scripts/install-deps)",
              env_.world);
#endif
}

std::string Distributed::backend() const {
  if (!active()) return "none";
#if CTS_WITH_NCCL
  if (impl_ && impl_->nccl) return "nccl";
#endif
  return "gloo";
}

std::pair<int64_t, int64_t> Distributed::share(int64_t n) const {
  const int64_t w = env_.world, r = env_.rank;
  return {n * r / w, n * (r + 1) / w};
}

void Distributed::all_reduce_sum(std::vector<torch::Tensor>& tensors, int64_t bucket_bytes) const {
  if (!active() || tensors.empty()) return;
#if CTS_WITH_GLOO
  // Buckets: consecutive tensors of one dtype and device, flattened into one buffer.
  struct Bucket {
    std::vector<size_t> members;
    torch::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Bucket> buckets;
  int64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const bool fits = !buckets.empty() && bytes + int64_t(t.nbytes()) <= bucket_bytes &&
                      tensors[buckets.back().members.front()].scalar_type() == t.scalar_type() &&
                      tensors[buckets.back().members.front()].device() == t.device();
    if (!fits) buckets.emplace_back(), bytes = 0;
    buckets.back().members.push_back(i);
    bytes += int64_t(t.nbytes());
  }
  try {
    for (auto& b : buckets) {
      std::vector<torch::Tensor> parts;
      for (size_t i : b.members) parts.push_back(tensors[i].reshape({-1}));
      std::vector<torch::Tensor> flat{torch::cat(parts)};
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
#if CTS_WITH_NCCL
      if (impl_->nccl && flat[0].is_cuda()) b.work = impl_->nccl->allreduce(flat, o);
      else
#endif
        b.work = impl_->gloo->allreduce(flat, o);
      b.flat = flat[0];
    }
    for (auto& b : buckets) {
      b.work->wait(impl_->timeout);
      int64_t off = 0;
      for (size_t i : b.members) {
        auto& t = tensors[i];
        t.copy_(b.flat.narrow(0, off, t.numel()).view_as(t));
        off += t.numel();
      }
    }
  } catch (const std::exception& e) {
    collective_failed(env_, "all-reduce", e.what());
  }
#endif
}

void Distributed::broadcast(torch::Tensor& t, int root) const {
  if (!active()) return;
#if CTS_WITH_GLOO
  try {
    std::vector<torch::Tensor> v{t.is_contiguous() ? t : t.contiguous()};
    c10d::BroadcastOptions o;
    o.rootRank = root;
#if CTS_WITH_NCCL
    auto work = impl_->nccl && t.is_cuda() ? impl_->nccl->broadcast(v, o) : impl_->gloo->broadcast(v, o);
#else
    auto work = impl_->gloo->broadcast(v, o);
#endif
    work->wait(impl_->timeout);
    if (!v[0].is_same(t)) t.copy_(v[0]);
  } catch (const std::exception& e) {
    collective_failed(env_, "broadcast", e.what());
  }
#else
  (void)t, (void)root;
#endif
}

std::string Distributed::broadcast_bytes(const std::string& bytes, int root) const {
  if (!active()) return bytes;
  auto size = torch::tensor({int64_t(bytes.size())}, torch::kInt64);
  broadcast(size, root);
  const int64_t n = size.item<int64_t>();
  auto data = torch::empty({std::max<int64_t>(n, 1)}, torch::kUInt8);
  if (env_.rank == root && n > 0) std::memcpy(data.data_ptr<uint8_t>(), bytes.data(), size_t(n));
  if (n > 0) broadcast(data, root);
  return std::string(reinterpret_cast<const char*>(data.data_ptr<uint8_t>()), size_t(n));
}

void Distributed::barrier() const {
  if (!active()) return;
  // A one-element all-reduce: the same failure handling and timeout as every collective.
  std::vector<torch::Tensor> one{torch::zeros({1}, torch::kFloat32)};
  all_reduce_sum(one);
}

}  // namespace cts
