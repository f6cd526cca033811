// One explicit forward keeping the attention maps (and their gradients) of every block.
#include "cts/attribution/attention_record.hpp"

#include "cts/core/error.hpp"
#include "cts/core/format.hpp"

namespace cts {

void check_relevance_args(const VisionTransformer& model, const torch::Tensor& images_u8, const torch::Tensor& targets,
                          const std::string& method) {
  const auto& cfg = model->config();
  if (images_u8.dim() != 4 || images_u8.scalar_type() != torch::kUInt8 || images_u8.size(2) != cfg.img_size || images_u8.size(3) != cfg.img_size) {
    throw_input("{}: images must be uint8 [B, C, {}, {}], got {} {}", method, cfg.img_size, cfg.img_size, std::string(c10::toString(images_u8.scalar_type())),
                shape_str(images_u8.sizes()));
  }
  if (targets.dim() != 1 || targets.size(0) != images_u8.size(0)) {
    throw_input("{}: need one target per image ([{}]), got {}", method, images_u8.size(0), shape_str(targets.sizes()));
  }
  if (targets.numel() > 0) {
    auto t = targets.to(torch::kCPU, torch::kInt64);
    const int64_t lo = t.min().item<int64_t>(), hi = t.max().item<int64_t>();
    if (lo < 0 || hi >= model->num_classes()) {
      throw_input("{}: target class {} is outside the model's head (0..{})", method, lo < 0 ? lo : hi, model->num_classes() - 1);
    }
  }
}

AttentionRecord record_attention(VisionTransformer& model, const torch::Tensor& x, const torch::Tensor& targets, bool with_grads) {
  AttributionModeGuard guard(model);
  AttentionProbe probe;
  probe.keep_maps = true;
  probe.retain_grad = false;
  ForwardOptions opt;
  opt.probe = &probe;
  // The input requires grad so the maps are differentiable even with frozen parameters.
  auto input = x.detach().requires_grad_(with_grads);
  auto logits = model->forward(input, opt);
  AttentionRecord rec;
  if (with_grads) {
    auto tgt = targets.to(logits.device(), torch::kInt64).view({-1, 1});
    auto score = logits.gather(1, tgt).sum();
    auto grads = torch::autograd::grad({score}, probe.maps, /*grad_outputs=*/{}, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    for (size_t i = 0; i < grads.size(); ++i) {
      rec.grads.push_back(grads[i].defined() ? grads[i].detach() : torch::zeros_like(probe.maps[i]));
    }
  }
  for (auto& m : probe.maps) rec.maps.push_back(m.detach());
  rec.block0_input = probe.block_inputs.front().detach();
  rec.logits = logits.detach();
  return rec;
}

torch::Tensor cls_row_relevance(const torch::Tensor& matrix) {
  return matrix.select(1, 0).narrow(1, 1, matrix.size(2) - 1).to(torch::kCPU, torch::kFloat32).contiguous();
}

}  // namespace cts
