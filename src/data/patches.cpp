// Patch layout helpers.
#include "cts/data/patches.hpp"

#include <torch/torch.h>

#include <cmath>

namespace cts {

torch::Tensor patchify(const torch::Tensor& images, int64_t p) {
  TORCH_CHECK(images.dim() == 4, "images must be [B, C, H, W], got ", images.sizes());
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  TORCH_CHECK(H % p == 0 && W % p == 0, "image size ", H, "x", W, " is not a multiple of patch size ", p);
  const int64_t gh = H / p, gw = W / p;
  return images.reshape({B, C, gh, p, gw, p}).permute({0, 2, 4, 1, 3, 5}).reshape({B, gh * gw, C, p, p});
}

torch::Tensor unpatchify(const torch::Tensor& patches, int64_t gh, int64_t gw) {
  TORCH_CHECK(patches.dim() == 5 && patches.size(1) == gh * gw, "patches must be [B, ", gh * gw, ", C, p, p], got ", patches.sizes());
  const int64_t B = patches.size(0), C = patches.size(2), p = patches.size(3);
  return patches.reshape({B, gh, gw, C, p, p}).permute({0, 3, 1, 4, 2, 5}).reshape({B, C, gh * p, gw * p});
}

torch::Tensor positions_to_mask(const torch::Tensor& positions, int64_t num_tokens) {
  TORCH_CHECK(positions.dim() == 2, "positions must be [B, K], got ", positions.sizes());
  auto pos = positions.to(torch::kInt64);
  auto valid = pos >= 0;
  auto mask = torch::zeros({pos.size(0), num_tokens + 1}, torch::TensorOptions().dtype(torch::kBool).device(pos.device()));
  // Padding (-1) is routed to an extra column that is dropped afterwards.
  mask.scatter_(1, torch::where(valid, pos, torch::full_like(pos, num_tokens)), true);
  return mask.narrow(1, 0, num_tokens);
}

int64_t tokens_kept(double token_fraction, int64_t num_tokens) {
  return std::max<int64_t>(1, std::min<int64_t>(num_tokens, std::llround(token_fraction * static_cast<double>(num_tokens))));
}

}  // namespace cts
