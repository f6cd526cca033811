// ImageFolder scanning, class lists and threaded decoding.
#include "cts/data/image_folder.hpp"

#include <torch/torch.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "cts/core/error.hpp"
#include "cts/data/image_codec.hpp"

namespace cts {
namespace {

bool is_image_file(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

}  // namespace

std::vector<ClassListEntry> read_class_list(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw_input("class list not found: {} (data.class_list)", path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input("cannot open class list {}: {}", path.string(), std::strerror(errno));
  std::vector<ClassListEntry> out;
  std::set<std::string> seen;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.size() > 4096) throw_input("{} line {}: {} characters; expected at most 4096 (is this a class list?)", path.string(), lineno, line.size());
    if (lineno == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // UTF-8 byte order mark
    for (size_t i = 0; i < line.size(); ++i) {
      const unsigned char ch = static_cast<unsigned char>(line[i]);
      if ((ch < 0x20 && ch != '\t' && ch != '\r') || ch == 0x7F) {
        throw_input("{} line {} column {}: control byte 0x{:02x}; expected text (a folder name, optional readable name)", path.string(),
                    lineno, i + 1, ch);
      }
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    line = line.substr(start);
    ClassListEntry e;
    const size_t sep = line.find_first_of(" \t");
    e.folder = line.substr(0, sep);
    if (sep != std::string::npos) {
      const size_t name_start = line.find_first_not_of(" \t", sep);
      if (name_start != std::string::npos) e.readable_name = line.substr(name_start);
    }
    if (e.folder.find('/') != std::string::npos || e.folder == "." || e.folder == "..") {
      throw_input("{} line {}: '{}' is not a class folder name", path.string(), lineno, e.folder);
    }
    if (!seen.insert(e.folder).second) throw_input("{} line {}: class '{}' is listed twice", path.string(), lineno, e.folder);
    out.push_back(std::move(e));
  }
  if (out.empty()) throw_input("{}: no classes listed (one class folder per line, optional readable name after it)", path.string());
  return out;
}

ImageFolderDataset::ImageFolderDataset(const std::filesystem::path& root, const std::string& split,
                                       const std::filesystem::path& class_list, int64_t image_size, double crop_fraction,
                                       int64_t workers)
    : image_size_(image_size), crop_fraction_(crop_fraction), workers_(std::max<int64_t>(1, workers)) {
  const auto dir = root / split;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw_input("ImageFolder split not found: {} (expected <data.root>/{}/<class>/<image files>)", dir.string(), split);
  }
  if (!class_list.empty()) {
    classes_ = read_class_list(class_list);
    for (size_t i = 0; i < classes_.size(); ++i) {
      if (!std::filesystem::is_directory(dir / classes_[i].folder, ec)) {
        throw_input("{}: class '{}' (entry {}) has no folder {}", class_list.string(), classes_[i].folder, i + 1,
                    (dir / classes_[i].folder).string());
      }
    }
  } else {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
      if (entry.is_directory()) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    for (auto& n : names) classes_.push_back({n, ""});
  }
  if (classes_.empty()) throw_input("{}: no class folders found", dir.string());
  std::vector<int64_t> labels;
  for (size_t c = 0; c < classes_.size(); ++c) {
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir / classes_[c].folder, ec))
      if (entry.is_regular_file() && is_image_file(entry.path())) files.push_back(entry.path());
    if (files.empty()) throw_input("{}: no .jpg/.jpeg/.png images", (dir / classes_[c].folder).string());
    std::sort(files.begin(), files.end());
    for (auto& f : files) {
      files_.push_back(std::move(f));
      labels.push_back(static_cast<int64_t>(c));
    }
  }
  labels_ = torch::tensor(labels, torch::kInt64);
}

std::vector<std::string> ImageFolderDataset::class_names() const {
  std::vector<std::string> names;
  for (const auto& c : classes_) names.push_back(c.readable_name.empty() ? c.folder : c.readable_name);
  return names;
}

torch::Tensor ImageFolderDataset::images(const torch::Tensor& indices) const {
  auto idx = indices.to(torch::kInt64).contiguous();
  const int64_t n = idx.size(0);
  auto out = torch::empty({n, 3, image_size_, image_size_}, torch::kUInt8);
  const int64_t* ip = idx.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) TORCH_CHECK(ip[i] >= 0 && ip[i] < size(), "index ", ip[i], " out of range for ", size(), " images");
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  // `out` is an inference tensor when the caller runs under InferenceMode (a thread-local
  // state): the worker threads write it in the same mode.
  const bool inference = c10::InferenceMode::is_enabled();
  auto work = [&] {
    c10::InferenceMode mode(inference);
    for (int64_t i = next++; i < n; i = next++) {
      try {
        const auto& path = files_[static_cast<size_t>(ip[i])];
        out[i].copy_(resize_center_crop(read_image(path, 3), image_size_, crop_fraction_));
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  const int64_t threads = std::min<int64_t>(workers_, n);
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace cts
