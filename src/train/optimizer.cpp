// AdamW / Adam / SGD with explicit state and the warmup-cosine schedule.
#include "cts/train/optimizer.hpp"

#include <torch/version.h>

#include <cmath>

#include "cts/core/error.hpp"

namespace cts {

Optimizer::Optimizer(const std::vector<std::pair<std::string, torch::Tensor>>& named_params, const OptimizerOptions& options)
    : opt_(options) {
  if (opt_.kind != "adamw" && opt_.kind != "adam" && opt_.kind != "sgd") throw_input("train.optimizer = '{}'; accepted: adamw, adam, sgd", opt_.kind);
  for (const auto& [name, p] : named_params) {
    if (!p.requires_grad()) continue;
    Slot s;
    s.name = name;
    s.param = p;
    s.decay = p.dim() >= 2 && name != "pos_embed" && name != "cls_token";
    s.m = torch::zeros_like(p);
    if (opt_.kind != "sgd") s.v = torch::zeros_like(p);
    slots_.push_back(std::move(s));
  }
}

void Optimizer::zero_grad() {
  for (auto& s : slots_) {
    auto& g = s.param.mutable_grad();
    if (g.defined()) g.zero_();
  }
}

void Optimizer::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double b1 = opt_.beta1, b2 = opt_.beta2, wd = opt_.weight_decay;
  const double bc1 = 1.0 - std::pow(b1, double(step_));
  const double bc2 = 1.0 - std::pow(b2, double(step_));
  if (opt_.foreach && opt_.kind != "sgd") {
    // Multi-tensor path: the same element-wise operations in the same order as the loop
    // below (so the results are identical), issued as one kernel per operation over all
    // parameters instead of one per parameter (what matters on a GPU).
    std::vector<torch::Tensor> P, G, M, V, decayed;
    for (auto& s : slots_) {
      const auto& g0 = s.param.grad();
      if (!g0.defined()) continue;
      P.push_back(s.param);
      M.push_back(s.m);
      V.push_back(s.v);
      if (s.decay && wd > 0 && opt_.kind == "adam") {
        G.push_back(g0 + wd * s.param);
      } else {
        G.push_back(g0);
      }
      if (s.decay && wd > 0 && opt_.kind == "adamw") decayed.push_back(s.param);
    }
    if (P.empty()) return;
    if (!decayed.empty()) at::_foreach_mul_(decayed, 1.0 - lr * wd);
    at::_foreach_mul_(M, b1);
    at::_foreach_add_(M, G, 1.0 - b1);
    at::_foreach_mul_(V, b2);
    at::_foreach_addcmul_(V, G, G, 1.0 - b2);
    auto denom = at::_foreach_div(V, bc2);
    at::_foreach_sqrt_(denom);
    at::_foreach_add_(denom, opt_.eps);
    at::_foreach_addcdiv_(P, M, denom, -lr / bc1);
    return;
  }
  for (auto& s : slots_) {
    const auto& g0 = s.param.grad();
    if (!g0.defined()) continue;
    if (opt_.kind == "sgd") {
      auto g = (s.decay && wd > 0) ? g0 + wd * s.param : g0;
      s.m.mul_(opt_.momentum).add_(g);
      s.param.add_(s.m, -lr);
      continue;
    }
    torch::Tensor g = g0;
    if (opt_.kind == "adam" && s.decay && wd > 0) g = g0 + wd * s.param;
    if (opt_.kind == "adamw" && s.decay && wd > 0) s.param.mul_(1.0 - lr * wd);
    s.m.mul_(b1).add_(g, 1.0 - b1);
    s.v.mul_(b2).addcmul_(g, g, 1.0 - b2);
    auto denom = (s.v / bc2).sqrt_().add_(opt_.eps);
    s.param.addcdiv_(s.m, denom, -lr / bc1);
  }
}

std::map<std::string, torch::Tensor> Optimizer::state() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& s : slots_) {
    out["m." + s.name] = s.m;
    if (s.v.defined()) out["v." + s.name] = s.v;
  }
  out["step"] = torch::tensor({step_}, torch::kInt64);
  return out;
}

void Optimizer::load_state(const std::map<std::string, torch::Tensor>& state) {
  torch::NoGradGuard no_grad;
  auto get = [&](const std::string& key, const torch::Tensor& like) {
    auto it = state.find(key);
    if (it == state.end()) throw_input("checkpoint: optimizer state lacks '{}'", key);
    if (it->second.sizes() != like.sizes()) throw_input("checkpoint: optimizer state '{}' has the wrong shape", key);
    return it->second;
  };
  for (auto& s : slots_) {
    s.m.copy_(get("m." + s.name, s.m));
    if (s.v.defined()) s.v.copy_(get("v." + s.name, s.v));
  }
  auto it = state.find("step");
  if (it == state.end()) throw_input("checkpoint: optimizer state lacks 'step'");
  step_ = it->second.to(torch::kInt64).item<int64_t>();
}

torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().norm(2).to(torch::kFloat32));
  if (norms.empty()) return torch::zeros({});
  auto total = torch::stack(norms).norm(2);
  auto coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().mul_(coef.to(p.grad().dtype()));
  return total;
}

double scheduled_lr(const std::string& schedule, double lr, double min_lr, int64_t warmup, int64_t step, int64_t total) {
  if (warmup > 0 && step < warmup) return lr * double(step + 1) / double(warmup);
  if (schedule == "constant") return lr;
  const int64_t span = std::max<int64_t>(1, total - warmup);
  const double t = std::min(1.0, double(step - warmup) / double(span));
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * t));
}

}  // namespace cts
