// Token overlays (PNG): relevance heat maps, the kept patches of an image, picture grids with
// captions (a built-in 5x7 pixel font), and renders of the stored partial images of a buffer.
#pragma once
#include <torch/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cts/attribution/explain.hpp"
#include "cts/memory/token_buffer.hpp"

namespace cts {

// uint8 [C, H, W] (C = 1 or 3) -> uint8 [3, H, W].
torch::Tensor to_rgb(const torch::Tensor& image);
// Nearest-neighbour upscaling by an integer factor.
torch::Tensor upscale(const torch::Tensor& image, int64_t factor);
// Values in [0, 1] ([H, W] float) -> uint8 [3, H, W] through a perceptual dark-to-bright
// colour map (black, purple, red, orange, yellow).
torch::Tensor colormap(const torch::Tensor& values);
// The image (grey) blended 50 % with the per-patch relevance ([T], min-max scaled) as colours.
torch::Tensor relevance_overlay(const torch::Tensor& image, const torch::Tensor& relevance, int64_t patch);
// Only the kept patches (positions [K], -1 ignored) of an image, as RGB; missing patches are
// dark blue-grey (28, 36, 64).
torch::Tensor kept_patches_image(const torch::Tensor& image, const torch::Tensor& positions, int64_t patch);
// Writes `text` (a-z, 0-9, - . % : / _ @ space; others as '?') into an RGB image at (x, y), scale s.
void draw_text(torch::Tensor& rgb, const std::string& text, int64_t x, int64_t y, int64_t scale, uint8_t r, uint8_t g, uint8_t b);

// Grid of RGB cells (all the same size), each row captioned on its left and each column on top.
torch::Tensor captioned_grid(const std::vector<std::vector<torch::Tensor>>& cells, const std::vector<std::string>& row_captions,
                             const std::vector<std::string>& column_captions);

// The `cts explain` figure (like the paper's Fig. 7): one row per method with the image, the
// relevance heat map and the kept patches.
torch::Tensor explanation_figure(const torch::Tensor& image, const Explanation& e, int64_t patch);

// Writes the buffer's partial images (missing patches dark blue-grey) as DIR/NNNNNN_task{t}_class{c}.png
// for the first `limit` samples (all if limit <= 0), upscaled by `scale` (0: to >= 112 px), plus
// DIR/grid.png, a contact sheet of up to 64 of them. Returns the number of images written.
int64_t render_buffer(const TokenBuffer& buffer, const std::filesystem::path& dir, int64_t limit, int64_t scale);

}  // namespace cts
