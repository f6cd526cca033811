// Image decoding/encoding with libturbojpeg and libpng's simplified API.
#include "cts/data/image_codec.hpp"

#include <png.h>
#include <turbojpeg.h>

#include <torch/torch.h>

#include <cmath>

#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"

namespace cts {
namespace {

constexpr int64_t kMaxPixels = 1ll << 28;  // 268 M pixels: beyond any real photo

// The most pixels a file of `bytes` bytes can really hold, so that a header cannot make us
// allocate more than the data could fill. JPEG (Huffman): every 8x8 block costs at least one
// bit (its DC symbol), so at most 512 pixels per byte. PNG: deflate expands at most 1032:1
// and a 1-bit image has 8 pixels per byte, so at most 8256 pixels per byte. (An
// arithmetic-coded JPEG, or a progressive one with scans missing, can beat the JPEG bound;
// no camera or encoder default writes one, and such a file is rejected with the numbers.)
constexpr int64_t kJpegPixelsPerByte = 512;
constexpr int64_t kPngPixelsPerByte = 8 * 1032;

int64_t max_pixels(size_t bytes, int64_t per_byte) { return std::min<int64_t>(kMaxPixels, int64_t(bytes) * per_byte); }

bool starts_with(const std::string& s, const unsigned char* magic, size_t n) {
  return s.size() >= n && std::memcmp(s.data(), magic, n) == 0;
}

torch::Tensor decode_jpeg(const std::string& bytes, const std::string& origin, int64_t channels) {
  tjhandle h = tjInitDecompress();
  if (!h) throw_run("cannot initialise libturbojpeg");
  struct Guard {
    tjhandle h;
    ~Guard() { tjDestroy(h); }
  } guard{h};
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  auto* src = reinterpret_cast<const unsigned char*>(bytes.data());
  if (tjDecompressHeader3(h, src, static_cast<unsigned long>(bytes.size()), &width, &height, &subsamp, &colorspace) != 0) {
    throw_input("{}: not a readable JPEG: {}", origin, tjGetErrorStr2(h));
  }
  const int64_t limit = max_pixels(bytes.size(), kJpegPixelsPerByte);
  if (width <= 0 || height <= 0 || int64_t(width) * height > limit) {
    throw_input("{}: JPEG header (SOF marker) declares {}x{} pixels; a {}-byte JPEG holds 1..{} pixels (truncated or corrupt file)", origin,
                width, height, bytes.size(), limit);
  }
  const int pf = channels == 1 ? TJPF_GRAY : TJPF_RGB;
  auto hwc = torch::empty({height, width, channels}, torch::kUInt8);
  // TJFLAG_LIMITSCANS: a progressive JPEG with more than 500 scans is rejected (a crafted
  // file could otherwise make decoding take minutes).
  if (tjDecompress2(h, src, static_cast<unsigned long>(bytes.size()), hwc.data_ptr<uint8_t>(), width, 0, height, pf,
                    TJFLAG_ACCURATEDCT | TJFLAG_LIMITSCANS) != 0) {
    const std::string why = tjGetErrorStr2(h);
    // Warnings about a few corrupt bytes inside the data still produce the image (libjpeg,
    // PIL and torchvision accept such files; ImageNet has some). Errors do not, and
    // neither does a file that ends before its image data does.
    if (tjGetErrorCode(h) == TJERR_FATAL) throw_input("{}: corrupt JPEG: {}", origin, why);
    if (why.find("Premature end") != std::string::npos) {
      throw_input("{}: truncated JPEG: the {} bytes end before the image data of the {}x{} image does ({})", origin, bytes.size(), width,
                  height, why);
    }
  }
  return hwc.permute({2, 0, 1}).contiguous();
}

torch::Tensor decode_png(const std::string& bytes, const std::string& origin, int64_t channels) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) {
    throw_input("{}: not a readable PNG: {}", origin, image.message);
  }
  const int64_t limit = max_pixels(bytes.size(), kPngPixelsPerByte);
  if (image.width == 0 || image.height == 0 || int64_t(image.width) * image.height > limit) {
    png_image_free(&image);
    throw_input("{}: PNG header (IHDR at offset 16) declares {}x{} pixels; a {}-byte PNG holds 1..{} pixels (truncated or corrupt file)",
                origin, image.width, image.height, bytes.size(), limit);
  }
  image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  auto hwc = torch::empty({int64_t(image.height), int64_t(image.width), channels}, torch::kUInt8);
  png_color background{0, 0, 0};
  if (!png_image_finish_read(&image, &background, hwc.data_ptr<uint8_t>(), 0, nullptr)) {
    const std::string msg = image.message;
    png_image_free(&image);
    throw_input("{}: corrupt PNG: {}", origin, msg);
  }
  return hwc.permute({2, 0, 1}).contiguous();
}

torch::Tensor to_hwc(const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && (image.size(0) == 1 || image.size(0) == 3) && image.scalar_type() == torch::kUInt8,
              "image must be uint8 [C, H, W] with C = 1 or 3, got ", image.sizes(), " ", image.scalar_type());
  return image.permute({1, 2, 0}).contiguous().cpu();
}

}  // namespace

torch::Tensor decode_image(const std::string& bytes, const std::string& origin, int64_t channels) {
  TORCH_CHECK(channels == 1 || channels == 3, "channels must be 1 or 3, got ", channels);
  static const unsigned char kJpeg[] = {0xFF, 0xD8, 0xFF};
  static const unsigned char kPng[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (starts_with(bytes, kJpeg, 3)) return decode_jpeg(bytes, origin, channels);
  if (starts_with(bytes, kPng, 8)) return decode_png(bytes, origin, channels);
  throw_input("{}: not a JPEG or PNG file (unknown magic bytes at offset 0)", origin);
}

torch::Tensor read_image(const std::filesystem::path& path, int64_t channels) {
  return decode_image(read_file(path, "image"), path.string(), channels);
}

std::string encode_png(const torch::Tensor& image) {
  auto hwc = to_hwc(image);
  png_image img;
  std::memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(hwc.size(1));
  img.height = static_cast<png_uint_32>(hwc.size(0));
  img.format = hwc.size(2) == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&img, nullptr, &size, 0, hwc.data_ptr<uint8_t>(), 0, nullptr)) {
    throw_run("PNG encoding failed: {}", img.message);
  }
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&img, out.data(), &size, 0, hwc.data_ptr<uint8_t>(), 0, nullptr)) {
    throw_run("PNG encoding failed: {}", img.message);
  }
  out.resize(size);
  return out;
}

void write_png(const std::filesystem::path& path, const torch::Tensor& image) { write_file_atomic(path, encode_png(image)); }

std::string encode_jpeg(const torch::Tensor& image, int quality) {
  auto hwc = to_hwc(image);
  tjhandle h = tjInitCompress();
  if (!h) throw_run("cannot initialise libturbojpeg");
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  const bool gray = hwc.size(2) == 1;
  const int rc = tjCompress2(h, hwc.data_ptr<uint8_t>(), static_cast<int>(hwc.size(1)), 0, static_cast<int>(hwc.size(0)),
                             gray ? TJPF_GRAY : TJPF_RGB, &buf, &size, gray ? TJSAMP_GRAY : TJSAMP_444, quality, TJFLAG_ACCURATEDCT);
  std::string out;
  if (rc == 0) out.assign(reinterpret_cast<char*>(buf), size);
  const std::string err = rc == 0 ? "" : tjGetErrorStr2(h);
  tjFree(buf);
  tjDestroy(h);
  if (rc != 0) throw_run("JPEG encoding failed: {}", err);
  return out;
}

torch::Tensor resize_center_crop(const torch::Tensor& image, int64_t size, double crop_fraction) {
  TORCH_CHECK(image.dim() == 3, "image must be [C, H, W], got ", image.sizes());
  const int64_t h = image.size(1), w = image.size(2);
  const double scale_to = std::floor(static_cast<double>(size) / crop_fraction);
  const double scale = scale_to / static_cast<double>(std::min(h, w));
  const int64_t nh = std::max<int64_t>(size, std::llround(h * scale));
  const int64_t nw = std::max<int64_t>(size, std::llround(w * scale));
  torch::Tensor resized = image;
  if (nh != h || nw != w) {
    namespace F = torch::nn::functional;
    resized = F::interpolate(image.unsqueeze(0).to(torch::kFloat32),
                             F::InterpolateFuncOptions().size(std::vector<int64_t>{nh, nw}).mode(torch::kBilinear).align_corners(false).antialias(nh < h || nw < w))
                  .squeeze(0)
                  .round()
                  .clamp(0, 255)
                  .to(torch::kUInt8);
  }
  const int64_t top = (nh - size) / 2, left = (nw - size) / 2;
  return resized.narrow(1, top, size).narrow(2, left, size).contiguous();
}

}  // namespace cts
