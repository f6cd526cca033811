// Writes the seed corpus of every fuzz target (fuzz/corpus/<target>/): small valid files
// of each format in the variants the parsers handle (raw and gzip idx of 1-4 dimensions,
// CIFAR-10/100 records, baseline / progressive / subsampled / gray JPEGs, gray / RGB / RGBA
// / 16-bit / palette PNGs, safetensors of every dtype and token buffers, the repository's
// configs, class lists). `make fuzz-seeds` runs it; the output is committed.
//   make_seeds OUT_DIR REPO_DIR
#include <png.h>
#include <turbojpeg.h>
#include <zlib.h>

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "cts/core/fs.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/image_codec.hpp"
#include "cts/memory/token_buffer.hpp"

namespace fs = std::filesystem;

namespace {

fs::path g_out;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(g_out / target);
  std::ofstream(g_out / target / name, std::ios::binary) << bytes;
}

std::string be32(uint32_t v) { return {char(v >> 24), char((v >> 16) & 255), char((v >> 8) & 255), char(v & 255)}; }

std::string gzip(const std::string& content) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, uLong(content.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(content.data()));
  z.avail_in = uInt(content.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char((i * 37 + size_t(seed) * 11 + (i / 7) * 3) & 0xFF);
  return s;
}

void idx_seeds() {
  auto idx = [](const std::vector<uint32_t>& dims, int seed) {
    std::string s{char(0), char(0), char(8), char(dims.size())};
    size_t n = 1;
    for (auto d : dims) s += be32(d), n *= d;
    return s + pattern(n, seed);
  };
  put("idx", "labels-1d", idx({16}, 1));
  put("idx", "images-3d", idx({2, 6, 5}, 2));
  put("idx", "images-4d", idx({2, 3, 4, 2}, 3));
  put("idx", "matrix-2d", idx({3, 7}, 4));
  put("idx", "images-3d.gz", gzip(idx({3, 8, 8}, 5)));
  put("idx", "labels-1d.gz", gzip(idx({40}, 6)));
}

void cifar_seeds() {
  // First byte: even = CIFAR-10, odd = CIFAR-100 (see fuzz_cifar.cpp).
  put("cifar", "cifar10-2", std::string(1, '\0') + "\x03" + pattern(3072, 1) + "\x09" + pattern(3072, 2));
  put("cifar", "cifar100-1", std::string(1, '\1') + std::string("\x04\x2a", 2) + pattern(3072, 3));
}

std::string jpeg(int w, int h, int pf, int subsamp, int flags, int quality, int seed) {
  const int channels = tjPixelSize[pf];
  std::string px = pattern(size_t(w) * h * channels, seed);
  tjhandle t = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  if (tjCompress2(t, reinterpret_cast<unsigned char*>(px.data()), w, 0, h, pf, &buf, &size, subsamp, quality, flags) != 0) {
    throw std::runtime_error(std::string("tjCompress2: ") + tjGetErrorStr2(t));
  }
  std::string out(reinterpret_cast<char*>(buf), size);
  tjFree(buf);
  tjDestroy(t);
  return out;
}

void jpeg_seeds() {
  put("jpeg", "rgb-444.jpg", jpeg(16, 8, TJPF_RGB, TJSAMP_444, 0, 90, 1));
  put("jpeg", "rgb-420.jpg", jpeg(17, 9, TJPF_RGB, TJSAMP_420, 0, 75, 2));
  put("jpeg", "rgb-422-progressive.jpg", jpeg(24, 16, TJPF_RGB, TJSAMP_422, TJFLAG_PROGRESSIVE, 80, 3));
  put("jpeg", "gray.jpg", jpeg(8, 8, TJPF_GRAY, TJSAMP_GRAY, 0, 95, 4));
  put("jpeg", "gray-progressive.jpg", jpeg(12, 10, TJPF_GRAY, TJSAMP_GRAY, TJFLAG_PROGRESSIVE, 50, 5));
  put("jpeg", "rgb-411.jpg", jpeg(32, 8, TJPF_RGB, TJSAMP_411, 0, 60, 6));
}

std::string png(int w, int h, png_uint_32 format, int seed) {
  png_image img;
  std::memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  img.width = png_uint_32(w);
  img.height = png_uint_32(h);
  img.format = format;
  const size_t bytes = PNG_IMAGE_SIZE(img);
  std::string px = pattern(bytes, seed);
  std::string colormap;
  if (format & PNG_FORMAT_FLAG_COLORMAP) {
    img.colormap_entries = 16;
    colormap = pattern(16 * 3, seed + 1);
    for (auto& c : px) c = char(static_cast<unsigned char>(c) % 16);
  }
  png_alloc_size_t size = 0;
  const void* cmap = colormap.empty() ? nullptr : colormap.data();
  if (!png_image_write_to_memory(&img, nullptr, &size, 0, px.data(), 0, cmap)) throw std::runtime_error(img.message);
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&img, out.data(), &size, 0, px.data(), 0, cmap)) throw std::runtime_error(img.message);
  out.resize(size);
  return out;
}

void png_seeds() {
  put("png", "gray.png", png(7, 5, PNG_FORMAT_GRAY, 1));
  put("png", "rgb.png", png(9, 4, PNG_FORMAT_RGB, 2));
  put("png", "rgba.png", png(6, 6, PNG_FORMAT_RGBA, 3));
  put("png", "gray-alpha.png", png(5, 3, PNG_FORMAT_GA, 4));
  put("png", "linear-16bit.png", png(4, 4, PNG_FORMAT_LINEAR_RGB, 5));
  put("png", "palette.png", png(8, 8, PNG_FORMAT_RGB_COLORMAP, 6));
}

void safetensors_seeds() {
  const fs::path tmp = g_out / "tmp.safetensors";
  auto file = [&](const std::vector<cts::SafetensorsTensor>& t, const std::map<std::string, std::string>& meta) {
    cts::save_safetensors(tmp, t, meta);
    std::ifstream in(tmp, std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(in)), {});
    fs::remove(tmp);
    return s;
  };
  put("safetensors", "dtypes.safetensors",
      file({{"f32", torch::arange(6, torch::kFloat32).reshape({2, 3}), ""},
            {"bf16", torch::ones({3}, torch::kBFloat16), ""},
            {"f16", torch::ones({2}, torch::kFloat16), ""},
            {"f64", torch::ones({1}, torch::kFloat64), ""},
            {"i64", torch::arange(3, torch::kInt64), ""},
            {"i32", torch::arange(2, torch::kInt32), ""},
            {"i16", torch::arange(2, torch::kInt16), ""},
            {"i8", torch::arange(2, torch::kInt8), ""},
            {"u8", torch::arange(4, torch::kUInt8), ""},
            {"u16", torch::arange(3, torch::kInt64), "U16"},
            {"bool", torch::tensor({true, false}), ""},
            {"empty", torch::zeros({0, 4}), ""}},
           {{"format", "pt"}, {"note", "seed"}}));
  put("safetensors", "timm-like.safetensors",
      file({{"patch_embed.proj.weight", torch::ones({4, 1, 2, 2}), ""}, {"cls_token", torch::zeros({1, 1, 4}), ""}}, {}));
  auto buffer = [&](int64_t C, int64_t S, int64_t p, bool weights) {
    cts::TokenBuffer b(C, S, p);
    const int64_t T = (S / p) * (S / p);
    auto images = torch::arange(3 * C * S * S, torch::kInt64).remainder(251).to(torch::kUInt8).reshape({3, C, S, S});
    auto pos = torch::full({3, 2}, -1, torch::kInt64);
    pos[0][0] = 0, pos[0][1] = T - 1, pos[1][0] = 1, pos[2][0] = T / 2, pos[2][1] = 2;
    b.add(images, torch::tensor({0, 1, 2}), 1, pos, weights ? torch::tensor({1.0f, 2.0f, 0.5f}) : torch::Tensor());
    b.metadata()["strategy"] = "core-tokenset";
    b.save(tmp);
    std::ifstream in(tmp, std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(in)), {});
    fs::remove(tmp);
    return s;
  };
  put("safetensors", "buffer-gray.safetensors", buffer(1, 8, 4, false));
  put("safetensors", "buffer-rgb-weights.safetensors", buffer(3, 8, 2, true));
}

void config_seeds(const fs::path& repo) {
  int n = 0;
  for (const auto& entry : fs::recursive_directory_iterator(repo / "configs")) {
    if (entry.path().extension() != ".yaml") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    put("config", entry.path().stem().string() + ".yaml", std::string((std::istreambuf_iterator<char>(in)), {}));
    ++n;
  }
  put("config", "flow-style.yaml",
      "seed: 3\nthreads: 1\ndata: {name: synthetic, tasks: 3, num_classes: 6, class_order: [5, 4, 3, 2, 1, 0]}\n"
      "model: {preset: vit_nano_patch4_28, embed_dim: 32}\ntrain: {token_drop: 0.5, lr: 2.0e-3}\n"
      "memory: {strategy: core-tokenset, sample_fraction: 0.2, token_fraction: null}\n");
}

void class_list_seeds() {
  put("class_list", "imagenet100-head.txt", "# ImageNet-100 (one wnid per line, optional name)\nn01440764 tench\nn01443537 goldfish\n\nn01484850\tgreat white shark\n");
  put("class_list", "crlf.txt", "\xEF\xBB\xBF" "cat\r\ndog  a good dog\r\n# done\r\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_seeds OUT_DIR REPO_DIR\n";
    return 2;
  }
  g_out = argv[1];
  try {
    idx_seeds();
    cifar_seeds();
    jpeg_seeds();
    png_seeds();
    safetensors_seeds();
    config_seeds(argv[2]);
    class_list_seeds();
  } catch (const std::exception& e) {
    std::cerr << "make_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
