// One explicit forward keeping the attention maps (and their gradients) of every block.
#include "cts/attribution/attention_record.hpp"

#include "cts/core/error.hpp"
#include "cts/core/format.hpp"

namespace cts {

void throw_needs_encoder(const std::string& method, const std::string& kind) {
  throw_input("memory.tokens = {} needs the attention of a transformer encoder, and the {} learner has none; accepted: random", method, kind);
}

VisionTransformer& require_encoder(ExplainedModel& model, const std::string& method) {
  VisionTransformer* encoder = model.encoder();
  if (!encoder) throw_needs_encoder(method, model.kind());
  return *encoder;
}

void check_relevance_images(ExplainedModel& model, const torch::Tensor& images_u8, const std::string& method) {
  if (images_u8.dim() != 4 || images_u8.scalar_type() != torch::kUInt8) {
    throw_input("{}: images must be uint8 [B, C, H, W], got {} {}", method, std::string(c10::toString(images_u8.scalar_type())),
                shape_str(images_u8.sizes()));
  }
  VisionTransformer* encoder = model.encoder();
  if (!encoder) return;
  const auto& cfg = (*encoder)->config();
  if (images_u8.size(2) != cfg.img_size || images_u8.size(3) != cfg.img_size) {
    throw_input("{}: images must be uint8 [B, C, {}, {}], got {} {}", method, cfg.img_size, cfg.img_size, std::string(c10::toString(images_u8.scalar_type())),
                shape_str(images_u8.sizes()));
  }
}

AttentionRecord record_attention(ExplainedModel& explained, const torch::Tensor& x, bool with_grads) {
  VisionTransformer& model = require_encoder(explained, "attention record");
  EvalModeGuard guard(model, /*grad=*/true);  // attribution runs inside no-grad phases
  AttentionProbe probe;
  probe.keep_maps = true;
  probe.retain_grad = false;
  ForwardOptions opt;
  opt.probe = &probe;
  // The input requires grad so the maps are differentiable even with frozen parameters.
  auto input = x.detach().requires_grad_(with_grads);
  auto tokens = model->forward_features(input, opt);
  AttentionRecord rec;
  if (with_grads) {
    auto score = explained.score(tokens, torch::Tensor());  // [B]
    auto grads = torch::autograd::grad({score.sum()}, probe.maps, /*grad_outputs=*/{}, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    for (size_t i = 0; i < grads.size(); ++i) {
      rec.grads.push_back(grads[i].defined() ? grads[i].detach() : torch::zeros_like(probe.maps[i]));
    }
    rec.score = score.detach();
  }
  for (auto& m : probe.maps) rec.maps.push_back(m.detach());
  rec.block0_input = probe.block_inputs.front().detach();
  rec.tokens = tokens.detach();
  return rec;
}

torch::Tensor cls_row_relevance(const torch::Tensor& matrix) {
  return matrix.select(1, 0).narrow(1, 1, matrix.size(2) - 1).to(torch::kCPU, torch::kFloat32).contiguous();
}

}  // namespace cts
