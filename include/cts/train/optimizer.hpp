// Optimizers with state we own (so checkpoints are plain tensors, identical across libtorch
// versions) and the per-task learning-rate schedule.
//   adamw: m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr wd p;
//          p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
//   adam : the same with L2 decay folded into the gradient (g += wd p), no decoupled decay
//   sgd  : b = mu b + g (+ wd p);  p -= lr b
// Weight decay applies to matrices only (dim >= 2, not pos_embed / cls_token), as in timm.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace cts {

struct OptimizerOptions {
  std::string kind = "adamw";
  double weight_decay = 0.05, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, momentum = 0.9;
  bool foreach = true;  // multi-tensor (_foreach_*) kernels for adam/adamw; same results as the per-parameter loop
};

class Optimizer {
 public:
  // `named_params`: the trainable parameters with their names (decay is chosen by name/shape).
  Optimizer(const std::vector<std::pair<std::string, torch::Tensor>>& named_params, const OptimizerOptions& options);
  void zero_grad();
  // One update at learning rate lr.
  void step(double lr);
  int64_t steps() const { return step_; }
  // State as named tensors (m/v/buffers) plus the step count, for checkpoints.
  std::map<std::string, torch::Tensor> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, m, v;
    bool decay;
  };
  std::vector<Slot> slots_;
  OptimizerOptions opt_;
  int64_t step_ = 0;
};

// Clips the global L2 norm of the gradients to max_norm; returns the norm before clipping
// (a 0-dim tensor: no device sync).
torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

// Learning rate at `step` (0-based) of a task with `total` steps: linear warmup over
// `warmup` steps to `lr`, then cosine from lr to min_lr (or constant).
double scheduled_lr(const std::string& schedule, double lr, double min_lr, int64_t warmup, int64_t step, int64_t total);

}  // namespace cts
