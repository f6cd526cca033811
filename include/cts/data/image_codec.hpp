// JPEG (libturbojpeg) and PNG (libpng) decoding to uint8 [C, H, W] tensors, PNG
// encoding for overlays and buffer renders, and the resize/crop used by ImageFolder.
#pragma once
#include <torch/types.h>

#include <filesystem>
#include <string>

namespace cts {

// Decodes a JPEG or PNG (detected from its magic bytes) to uint8 [channels, H, W]
// (channels 1 or 3; colour images with alpha lose it). `origin` names the file in errors.
torch::Tensor decode_image(const std::string& bytes, const std::string& origin, int64_t channels = 3);
torch::Tensor read_image(const std::filesystem::path& path, int64_t channels = 3);

// Encodes uint8 [C, H, W] (C = 1 or 3) as PNG.
std::string encode_png(const torch::Tensor& image);
// encode_png + atomic write.
void write_png(const std::filesystem::path& path, const torch::Tensor& image);
// Encodes uint8 [C, H, W] (C = 1 or 3) as JPEG (tests and tools).
std::string encode_jpeg(const torch::Tensor& image, int quality = 95);

// Resizes the short side to size / crop_fraction (bilinear, antialiased), then crops the
// centre size x size. uint8 [C, H, W] in and out.
torch::Tensor resize_center_crop(const torch::Tensor& image, int64_t size, double crop_fraction);

}  // namespace cts
