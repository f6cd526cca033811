// Token overlays and buffer renders as PNG images.
#include "cts/report/overlay.hpp"

#include <fmt/format.h>
#include <torch/torch.h>

#include <array>
#include <map>

#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"
#include "cts/data/image_codec.hpp"
#include "cts/data/patches.hpp"

namespace cts {
namespace {

// 5x7 glyphs, one string of 7 rows x 5 columns each ('#' = ink).
const std::map<char, const char*>& font() {
  static const std::map<char, const char*> f = {
      {'a', " ### #   ##   #######   ##   ##   #"}, {'b', "#### #   ##   ##### #   ##   ##### "},
      {'c', " ### #   ##    #    #    #   # ### "}, {'d', "#### #   ##   ##   ##   ##   ##### "},
      {'e', "######    #    #### #    #    #####"}, {'f', "######    #    #### #    #    #    "},
      {'g', " ### #   ##    # ####   ##   # ####"}, {'h', "#   ##   ##   #######   ##   ##   #"},
      {'i', " ###   #    #    #    #    #   ### "}, {'j', "  ###   #    #    #    # #  #  ##  "},
      {'k', "#   ##  # # #  ##   # #  #  # #   #"}, {'l', "#    #    #    #    #    #    #####"},
      {'m', "#   ### ### # ##   ##   ##   ##   #"}, {'n', "#   ###  ## # ##  ###   ##   ##   #"},
      {'o', " ### #   ##   ##   ##   ##   # ### "}, {'p', "#### #   ##   ##### #    #    #    "},
      {'q', " ### #   ##   ##   ## # ##  #  ## #"}, {'r', "#### #   ##   ##### # #  #  # #   #"},
      {'s', " ####    #     ###     #    #####  "}, {'t', "#####  #    #    #    #    #    #  "},
      {'u', "#   ##   ##   ##   ##   ##   # ### "}, {'v', "#   ##   ##   ##   ##   # # #   #  "},
      {'w', "#   ##   ##   ## # ## # ## # # # # "}, {'x', "#   ##   # # #   #   # # #   ##   #"},
      {'y', "#   ##   # # #   #    #    #    #  "}, {'z', "#####    #   #   #   #   #    #####"},
      {'0', " ### #   ##  ### # ###  ##   # ### "}, {'1', "  #   ##    #    #    #    #   ### "},
      {'2', " ### #   #    #   #   #   #   #####"}, {'3', "#####   #   #     #     ##   # ### "},
      {'4', "   #   ##  # # #  # #####   #    # "}, {'5', "######    ####     #    ##   # ### "},
      {'6', "  ##  #   #    #### #   ##   # ### "}, {'7', "#####    #   #   #   #    #    #   "},
      {'8', " ### #   ##   # ### #   ##   # ### "}, {'9', " ### #   ##   # ####    #   #  ##  "},
      {'-', "               #####               "},   {'.', "                          ##   ##  "},
      {'%', "##   ##  #   #   #   #   #  ##   ##"}, {':', "      ##   ##        ##   ##       "},
      {'/', "    #    #   #   #   #   #    #    "}, {'_', "                              #####"},
      {'@', " ### #   ## #### # ## ####     ### "}, {'?', " ### #   #    #   #   #         #  "},
      {' ', "                                   "}};
  return f;
}

}  // namespace

torch::Tensor to_rgb(const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3), "to_rgb: expected [1|3, H, W], got ", image.sizes());
  return image.size(0) == 3 ? image.contiguous() : image.expand({3, -1, -1}).contiguous();
}

torch::Tensor upscale(const torch::Tensor& image, int64_t f) {
  if (f <= 1) return image.contiguous();
  return image.repeat_interleave(f, 1).repeat_interleave(f, 2).contiguous();
}

torch::Tensor colormap(const torch::Tensor& values) {
  // Anchors of a dark-to-bright map (inferno-like): value -> RGB.
  static const std::array<std::array<double, 4>, 5> anchors = {{{0.00, 0, 0, 4},
                                                                {0.25, 87, 16, 110},
                                                                {0.50, 188, 55, 84},
                                                                {0.75, 249, 142, 9},
                                                                {1.00, 252, 255, 164}}};
  auto v = values.to(torch::kFloat64).clamp(0.0, 1.0);
  auto out = torch::zeros({3, v.size(0), v.size(1)}, torch::kFloat64);
  for (size_t i = 0; i + 1 < anchors.size(); ++i) {
    const auto& a = anchors[i];
    const auto& b = anchors[i + 1];
    auto in = (v >= a[0]) & (i + 2 == anchors.size() ? v <= b[0] : v < b[0]);
    auto t = ((v - a[0]) / (b[0] - a[0])).clamp(0.0, 1.0);
    for (int c = 0; c < 3; ++c) out[c] = torch::where(in, a[size_t(c) + 1] + t * (b[size_t(c) + 1] - a[size_t(c) + 1]), out[c]);
  }
  return out.round().clamp(0, 255).to(torch::kUInt8);
}

torch::Tensor relevance_overlay(const torch::Tensor& image, const torch::Tensor& relevance, int64_t patch) {
  const int64_t H = image.size(1), g = H / patch;
  TORCH_CHECK(relevance.numel() == g * g, "relevance has ", relevance.numel(), " values for a ", g, "x", g, " grid");
  auto r = relevance.to(torch::kFloat64).reshape({g, g});
  const double lo = r.min().item<double>(), hi = r.max().item<double>();
  r = hi > lo ? (r - lo) / (hi - lo) : torch::zeros_like(r);
  auto heat = colormap(r.repeat_interleave(patch, 0).repeat_interleave(patch, 1)).to(torch::kFloat64);
  auto grey = to_rgb(image.size(0) == 3 ? image.to(torch::kFloat64).mean(0, true).round().to(torch::kUInt8) : image).to(torch::kFloat64);
  return (0.5 * heat + 0.5 * grey).round().clamp(0, 255).to(torch::kUInt8);
}

torch::Tensor kept_patches_image(const torch::Tensor& image, const torch::Tensor& positions, int64_t patch) {
  const int64_t H = image.size(1), g = H / patch;
  auto mask = positions_to_mask(positions.view({1, -1}).to(torch::kInt64), g * g)[0].to(torch::kBool).reshape({g, g});
  auto pix = mask.repeat_interleave(patch, 0).repeat_interleave(patch, 1).unsqueeze(0).expand({3, H, H});
  // Missing patches in a dark blue-grey that no grey image pixel has, so kept black patches stay visible.
  auto fill = torch::tensor({28, 36, 64}, torch::kUInt8).view({3, 1, 1}).expand({3, H, H});
  return torch::where(pix, to_rgb(image), fill).contiguous();
}

void draw_text(torch::Tensor& rgb, const std::string& text, int64_t x, int64_t y, int64_t s, uint8_t r, uint8_t g, uint8_t b) {
  const int64_t H = rgb.size(1), W = rgb.size(2);
  auto acc = rgb.accessor<uint8_t, 3>();
  const uint8_t col[3] = {r, g, b};
  for (size_t i = 0; i < text.size(); ++i) {
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
    auto it = font().find(c);
    const char* glyph = it == font().end() ? font().at('?') : it->second;
    const std::string rows(glyph);
    for (int64_t gy = 0; gy < 7; ++gy) {
      for (int64_t gx = 0; gx < 5; ++gx) {
        const size_t at = size_t(gy * 5 + gx);
        if (at >= rows.size() || rows[at] != '#') continue;
        for (int64_t dy = 0; dy < s; ++dy) {
          for (int64_t dx = 0; dx < s; ++dx) {
            const int64_t py = y + gy * s + dy, px = x + (int64_t(i) * 6 + gx) * s + dx;
            if (py < 0 || py >= H || px < 0 || px >= W) continue;
            for (int ch = 0; ch < 3; ++ch) acc[ch][py][px] = col[ch];
          }
        }
      }
    }
  }
}

torch::Tensor captioned_grid(const std::vector<std::vector<torch::Tensor>>& cells, const std::vector<std::string>& row_captions,
                             const std::vector<std::string>& column_captions) {
  TORCH_CHECK(!cells.empty() && !cells.front().empty(), "captioned_grid: no cells");
  const int64_t ch = cells[0][0].size(1), cw = cells[0][0].size(2), gap = 6, text_scale = 2;
  const int64_t rows = int64_t(cells.size()), cols = int64_t(cells[0].size());
  size_t longest = 0;
  for (const auto& s : row_captions) longest = std::max(longest, s.size());
  const int64_t left = longest ? int64_t(longest) * 6 * text_scale + 2 * gap : gap;
  const int64_t top = column_captions.empty() ? gap : 7 * text_scale + 2 * gap;
  auto out = torch::full({3, top + rows * (ch + gap), left + cols * (cw + gap)}, 255, torch::kUInt8);
  for (int64_t r = 0; r < rows; ++r) {
    TORCH_CHECK(int64_t(cells[size_t(r)].size()) == cols, "captioned_grid: ragged rows");
    const int64_t y = top + r * (ch + gap);
    if (size_t(r) < row_captions.size()) draw_text(out, row_captions[size_t(r)], gap, y + ch / 2 - 7 * text_scale / 2, text_scale, 20, 20, 20);
    for (int64_t c = 0; c < cols; ++c) {
      const auto& cell = cells[size_t(r)][size_t(c)];
      TORCH_CHECK(cell.size(1) == ch && cell.size(2) == cw, "captioned_grid: cells differ in size");
      out.narrow(1, y, ch).narrow(2, left + c * (cw + gap), cw).copy_(to_rgb(cell));
    }
  }
  for (size_t c = 0; c < column_captions.size() && int64_t(c) < cols; ++c) {
    draw_text(out, column_captions[c], left + int64_t(c) * (cw + gap), gap, text_scale, 20, 20, 20);
  }
  return out;
}

torch::Tensor explanation_figure(const torch::Tensor& image, const Explanation& e, int64_t patch) {
  const int64_t H = image.size(1);
  const int64_t f = std::max<int64_t>(1, (112 + H - 1) / H);
  std::vector<std::vector<torch::Tensor>> cells;
  std::vector<std::string> captions;
  for (const auto& m : e.methods) {
    cells.push_back({upscale(to_rgb(image), f), upscale(relevance_overlay(image, m.relevance, patch), f),
                     upscale(kept_patches_image(image, m.kept, patch), f)});
    captions.push_back(m.method);
  }
  return captioned_grid(cells, captions, {"image", "relevance", fmt::format("kept {}", e.kept_tokens)});
}

int64_t render_buffer(const TokenBuffer& buffer, const std::filesystem::path& dir, int64_t limit, int64_t scale) {
  ensure_directory(dir);
  const int64_t n = limit > 0 ? std::min(limit, buffer.size()) : buffer.size();
  const int64_t H = buffer.image_size();
  const int64_t f = scale > 0 ? scale : std::max<int64_t>(1, (112 + H - 1) / H);
  std::vector<torch::Tensor> sheet;
  for (int64_t i = 0; i < n; i += 256) {
    const int64_t b = std::min<int64_t>(256, n - i);
    auto batch = buffer.gather(torch::arange(i, i + b), /*want_images=*/true, /*want_patches=*/false);
    for (int64_t j = 0; j < b; ++j) {
      auto img = kept_patches_image(batch.images[j], batch.positions[j], buffer.patch_size());
      auto big = upscale(img, f);
      write_png(dir / fmt::format("{:06d}_task{}_class{}.png", i + j, batch.tasks[j].item<int64_t>(), batch.labels[j].item<int64_t>()), big);
      if (sheet.size() < 64) sheet.push_back(upscale(img, std::max<int64_t>(1, f / 2)));
    }
  }
  if (!sheet.empty()) {
    const size_t cols = 8;
    std::vector<std::vector<torch::Tensor>> cells;
    for (size_t k = 0; k < sheet.size(); k += cols) {
      std::vector<torch::Tensor> row(sheet.begin() + long(k), sheet.begin() + long(std::min(sheet.size(), k + cols)));
      while (row.size() < cols && cells.size() > 0) row.push_back(torch::full_like(sheet[0], 255));
      cells.push_back(row);
    }
    write_png(dir / "grid.png", captioned_grid(cells, {}, {}));
  }
  return n;
}

}  // namespace cts
