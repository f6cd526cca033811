// Patchify / unpatchify between images [B, C, H, W] and patch tokens [B, T, C, p, p]
// (row-major patch order, as the ViT's conv patch embedding flattens them), and the
// keep-mask helpers used by token dropping and replay.
#pragma once
#include <torch/types.h>

namespace cts {

// [B, C, H, W] -> [B, T, C, p, p], T = (H/p)(W/p); any dtype.
torch::Tensor patchify(const torch::Tensor& images, int64_t patch);
// [B, T, C, p, p] -> [B, C, gh*p, gw*p].
torch::Tensor unpatchify(const torch::Tensor& patches, int64_t grid_h, int64_t grid_w);
// Positions [B, K] (int64, -1 = padding) -> bool mask [B, T].
torch::Tensor positions_to_mask(const torch::Tensor& positions, int64_t num_tokens);
// Number of tokens kept at token fraction k: round(k T), at least 1.
int64_t tokens_kept(double token_fraction, int64_t num_tokens);

}  // namespace cts
