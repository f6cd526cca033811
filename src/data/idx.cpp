// idx reader: header validated against the data actually present (the file size for raw
// files; gzip is decompressed in chunks) so a lying header cannot force a huge allocation.
#include "cts/data/idx.hpp"

#include <zlib.h>

#include <torch/torch.h>

#include "cts/core/error.hpp"

namespace cts {
namespace {

constexpr uint64_t kMaxIdxBytes = 16ull << 30;  // 16 GiB: far above any idx dataset

struct GzFile {
  gzFile f = nullptr;
  ~GzFile() {
    if (f) gzclose(f);
  }
};

// Reads up to n bytes at file offset `offset` (of the decompressed stream); returns the
// count read.
size_t read_some(gzFile f, unsigned char* dst, size_t n, uint64_t offset, const std::filesystem::path& path) {
  size_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30));
    const int got = gzread(f, dst + done, chunk);
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      throw_input("{}: corrupt gzip data at byte {} of the decompressed stream: {}", path.string(), offset + done, msg ? msg : "read error");
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

}  // namespace

torch::Tensor read_idx(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw_input("idx file not found: {}", path.string());
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw_input("cannot read the size of idx file {}: {}", path.string(), ec.message());
  GzFile gz;
  gz.f = gzopen(path.c_str(), "rb");
  if (!gz.f) throw_input("cannot open idx file {}", path.string());
  unsigned char magic[4];
  const size_t got_magic = read_some(gz.f, magic, 4, 0, path);
  if (got_magic != 4) throw_input("{}: truncated: {} bytes, expected at least the 4-byte idx magic 00 00 08 <ndims>", path.string(), got_magic);
  if (magic[0] != 0 || magic[1] != 0) {
    throw_input("{}: wrong magic at offset 0: expected 00 00 <type> <ndims>, found {:02x} {:02x}", path.string(), magic[0], magic[1]);
  }
  if (magic[2] != 0x08) throw_input("{}: idx data type 0x{:02x} at offset 2 is not supported; expected 0x08 (unsigned byte)", path.string(), magic[2]);
  const int ndims = magic[3];
  if (ndims < 1 || ndims > 4) throw_input("{}: idx has {} dimensions at offset 3; expected 1 to 4", path.string(), ndims);
  std::vector<int64_t> dims;
  uint64_t total = 1;
  for (int d = 0; d < ndims; ++d) {
    unsigned char b[4];
    if (read_some(gz.f, b, 4, 4 + 4 * d, path) != 4) {
      throw_input("{}: truncated in the header: dimension {} at offset {} is missing ({} dimensions declared)", path.string(), d, 4 + 4 * d, ndims);
    }
    const uint64_t v = (uint64_t(b[0]) << 24) | (uint64_t(b[1]) << 16) | (uint64_t(b[2]) << 8) | uint64_t(b[3]);
    if (v == 0 || v > (1u << 31)) throw_input("{}: dimension {} at offset {} is {}: expected 1 to 2^31", path.string(), d, 4 + 4 * d, v);
    total *= v;
    if (total > kMaxIdxBytes) throw_input("{}: header claims more than {} GiB of data: not a plausible idx file", path.string(), kMaxIdxBytes >> 30);
    dims.push_back(static_cast<int64_t>(v));
  }
  const uint64_t header = 4 + 4 * uint64_t(ndims);
  auto dims_text = [&] { return fmt::format("{}", fmt::join(dims, " x ")); };
  if (gzdirect(gz.f)) {
    // Not compressed: the file size says at once whether the data is all there, and the
    // tensor is allocated only once it is known to fit.
    const uint64_t have = file_size - std::min(file_size, header);
    if (have != total) {
      throw_input("{}: {}: header (dimensions {}) declares {} data bytes after its {}-byte header, the file holds {}", path.string(),
                  have < total ? "truncated" : "trailing data", dims_text(), total, header, have);
    }
    auto t = torch::empty(dims, torch::kUInt8);
    const size_t got = read_some(gz.f, t.data_ptr<uint8_t>(), total, header, path);
    if (got != total) throw_input("{}: truncated: header declares {} data bytes, file holds {}", path.string(), total, got);
    return t;
  }
  // gzip: the decompressed size is known only by reading, so read in chunks into a growing
  // buffer (a lying header cannot allocate more than the data that is really there).
  std::vector<unsigned char> data;
  const size_t chunk = 1 << 20;
  while (data.size() < total) {
    const size_t want = std::min<size_t>(chunk, total - data.size());
    const size_t old = data.size();
    data.resize(old + want);
    const size_t got = read_some(gz.f, data.data() + old, want, header + old, path);
    if (got < want) {
      throw_input("{}: truncated: header (dimensions {}) declares {} data bytes, the decompressed file holds {}", path.string(), dims_text(),
                  total, old + got);
    }
  }
  unsigned char extra;
  if (read_some(gz.f, &extra, 1, header + total, path) != 0) {
    throw_input("{}: trailing data after the {} bytes the header (dimensions {}) declares", path.string(), total, dims_text());
  }
  auto t = torch::empty(dims, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), data.data(), total);
  return t;
}

std::shared_ptr<TensorDataset> load_idx_dataset(const std::filesystem::path& root, const std::string& prefix,
                                                const std::string& name, std::vector<std::string> class_names) {
  auto find = [&](const std::string& stem) {
    for (const auto& candidate : {root / (stem + ".gz"), root / stem}) {
      std::error_code ec;
      if (std::filesystem::is_regular_file(candidate, ec)) return candidate;
    }
    throw_input("{} not found: expected {} or {}.gz (set data.root to the folder holding the idx files)", stem,
                (root / stem).string(), (root / stem).string());
  };
  const auto image_path = find(prefix + "-images-idx3-ubyte");
  const auto label_path = find(prefix + "-labels-idx1-ubyte");
  torch::Tensor images = read_idx(image_path);
  torch::Tensor labels = read_idx(label_path);
  if (images.dim() != 3) throw_input("{}: expected 3 dimensions [N, H, W], found {}", image_path.string(), images.dim());
  if (labels.dim() != 1) throw_input("{}: expected 1 dimension [N], found {}", label_path.string(), labels.dim());
  if (labels.size(0) != images.size(0)) {
    throw_input("{} has {} labels but {} has {} images", label_path.string(), labels.size(0), image_path.string(), images.size(0));
  }
  const int64_t num_classes = static_cast<int64_t>(class_names.size());
  const int64_t max_label = labels.max().item<int64_t>();
  if (max_label >= num_classes) throw_input("{}: label {} out of range; {} has {} classes", label_path.string(), max_label, name, num_classes);
  return std::make_shared<TensorDataset>(name, images.unsqueeze(1), labels.to(torch::kInt64), num_classes, std::move(class_names));
}

}  // namespace cts
