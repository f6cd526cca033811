// Token buffer storage, gathering for replay, and safetensors persistence.
#include "cts/memory/token_buffer.hpp"

#include <torch/torch.h>

#include "cts/core/error.hpp"
#include "cts/core/format.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/patches.hpp"

namespace cts {
namespace {
torch::Tensor cat_defined(const torch::Tensor& a, const torch::Tensor& b) { return a.defined() ? torch::cat({a, b}) : b; }
}  // namespace

TokenBuffer::TokenBuffer(int64_t channels, int64_t image_size, int64_t patch_size)
    : channels_(channels), image_size_(image_size), patch_size_(patch_size) {
  TORCH_CHECK(channels > 0 && patch_size > 0 && image_size % patch_size == 0, "buffer: image size ", image_size,
              " must be a multiple of patch size ", patch_size);
  TORCH_CHECK(num_tokens() <= 65536, "buffer: ", num_tokens(), " tokens per image exceed uint16 positions");
}

void TokenBuffer::add(const torch::Tensor& images, const torch::Tensor& labels, int64_t task, const torch::Tensor& positions,
                      const torch::Tensor& weights, const Payload& payload) {
  TORCH_CHECK(images.dim() == 4 && images.scalar_type() == torch::kUInt8 && images.size(1) == channels_ &&
                  images.size(2) == image_size_ && images.size(3) == image_size_,
              "buffer.add: images must be uint8 [n, ", channels_, ", ", image_size_, ", ", image_size_, "], got ", images.sizes());
  const int64_t n = images.size(0);
  TORCH_CHECK(labels.numel() == n && positions.dim() == 2 && positions.size(0) == n, "buffer.add: labels [n] and positions [n, K] needed");
  TORCH_CHECK(task >= 0 && task < 65536, "buffer.add: task id ", task, " does not fit uint16");
  TORCH_CHECK(weights.defined() == has_weights() || empty(), "buffer.add: all samples must have weights or none");
  TORCH_CHECK(payload.empty() == !has_payload() || empty(), "buffer.add: all samples must have a payload or none");
  payload.check("buffer.add");
  TORCH_CHECK(payload.empty() || payload.size() == n, "buffer.add: the payload has ", payload.size(), " entries for ", n, " samples");
  TORCH_CHECK(payload.empty() || n == 0 || payload.lengths.max().item<int64_t>() <= 65535, "buffer.add: a payload longer than 65535 values does not fit its uint16 length");
  if (n == 0) return;
  auto pos = positions.to(torch::kCPU, torch::kInt64);
  TORCH_CHECK(pos.max().item<int64_t>() < num_tokens(), "buffer.add: position out of range [0, ", num_tokens(), ")");
  auto valid = pos >= 0;
  auto counts = valid.sum(1);  // [n]
  TORCH_CHECK(counts.min().item<int64_t>() >= 1, "buffer.add: every sample must keep at least one token");
  auto all = patchify(images.cpu(), patch_size_);  // [n, T, C, p, p]
  // Keep each sample's valid positions in ascending order.
  auto sorted = std::get<0>(torch::sort(torch::where(valid, pos, torch::full_like(pos, num_tokens())), 1));
  auto sorted_valid = sorted < num_tokens();
  auto rows = torch::arange(n, torch::kInt64).unsqueeze(1).expand_as(sorted).masked_select(sorted_valid);
  auto cols = sorted.masked_select(sorted_valid);
  auto kept = all.reshape({n * num_tokens(), channels_, patch_size_, patch_size_}).index_select(0, rows * num_tokens() + cols);
  const int64_t base = tokens();
  auto offsets = torch::cumsum(counts, 0) - counts + base;
  patches_ = cat_defined(patches_, kept.contiguous());
  positions_ = cat_defined(positions_, cols);
  counts_ = cat_defined(counts_, counts);
  offsets_ = cat_defined(offsets_, offsets);
  labels_ = cat_defined(labels_, labels.to(torch::kCPU, torch::kInt64).flatten());
  tasks_ = cat_defined(tasks_, torch::full({n}, task, torch::kInt64));
  if (weights.defined()) weights_ = cat_defined(weights_, weights.to(torch::kCPU, torch::kFloat32).flatten());
  if (!payload.empty()) payload_ = Payload::concat({payload_, {payload.values.to(torch::kCPU).contiguous(), payload.lengths.to(torch::kCPU).contiguous()}});
}

torch::Tensor TokenBuffer::partial_samples() const {
  return counts_.defined() ? counts_ < num_tokens() : torch::zeros({0}, torch::kBool);
}

torch::Tensor TokenBuffer::stored_positions() const {
  if (!positions_.defined()) return torch::zeros({0}, torch::kInt64);
  auto partial = partial_samples();
  if (partial.all().item<bool>()) return positions_;
  // The tokens of partial samples, in buffer order.
  return positions_.masked_select(partial.repeat_interleave(counts_));
}

int64_t TokenBuffer::bytes() const {
  const int64_t n = size(), t = tokens();
  const int64_t patch_bytes = t * channels_ * patch_size_ * patch_size_;
  const int64_t positions = n ? counts_.masked_select(partial_samples()).sum().item<int64_t>() : 0;
  return patch_bytes + 2 * positions /*positions U16, partial samples only*/ + 2 * n /*counts U16*/ + 4 * n /*labels I32*/ + 2 * n /*tasks U16*/ +
         (has_weights() ? 4 * n : 0) + (has_payload() ? 4 * payload_.values.size(0) /*payload I32*/ + 2 * n /*payload_lengths U16*/ : 0);
}

void TokenBuffer::retain(const torch::Tensor& indices) {
  auto idx = indices.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t n = idx.size(0);
  TORCH_CHECK(n == 0 || (idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < size()), "buffer.retain: index out of range");
  TORCH_CHECK(n < 2 || (idx.narrow(0, 1, n - 1) > idx.narrow(0, 0, n - 1)).all().item<bool>(), "buffer.retain: indices must be ascending");
  if (n == size()) return;
  // The kept samples' tokens: offsets[i] .. offsets[i] + counts[i] for each kept i.
  auto counts = counts_.index_select(0, idx);
  auto starts = offsets_.index_select(0, idx).repeat_interleave(counts);
  auto first = (torch::cumsum(counts, 0) - counts).repeat_interleave(counts);
  auto tokens = starts + (torch::arange(counts.sum().item<int64_t>(), torch::kInt64) - first);
  patches_ = patches_.index_select(0, tokens).contiguous();
  positions_ = positions_.index_select(0, tokens);
  counts_ = counts;
  offsets_ = torch::cumsum(counts, 0) - counts;
  labels_ = labels_.index_select(0, idx);
  tasks_ = tasks_.index_select(0, idx);
  if (weights_.defined()) weights_ = weights_.index_select(0, idx);
  if (!payload_.empty()) payload_ = payload_.select(idx);
  if (n == 0) {  // an empty buffer holds no tensors at all
    auto meta = metadata_;
    *this = TokenBuffer(channels_, image_size_, patch_size_);
    metadata_ = meta;
  }
}

int64_t TokenBuffer::keep_first_per_class(int64_t per_class) {
  TORCH_CHECK(per_class >= 0, "buffer.keep_first_per_class: negative count");
  std::vector<int64_t> keep;
  std::map<int64_t, int64_t> seen;
  const int64_t n = size();
  auto labels = n ? labels_.contiguous() : torch::Tensor();
  for (int64_t i = 0; i < n; ++i)
    if (seen[labels.data_ptr<int64_t>()[i]]++ < per_class) keep.push_back(i);
  const int64_t removed = n - int64_t(keep.size());
  if (removed > 0) retain(torch::tensor(keep, torch::kInt64));
  return removed;
}

BufferBatch TokenBuffer::gather(const torch::Tensor& indices, bool want_images, bool want_patches) const {
  auto idx = indices.to(torch::kCPU, torch::kInt64).flatten();
  const int64_t B = idx.size(0), T = num_tokens(), C = channels_, p = patch_size_;
  TORCH_CHECK(B == 0 || (idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < size()), "buffer.gather: index out of range");
  BufferBatch out;
  out.labels = labels_.index_select(0, idx);
  out.tasks = tasks_.index_select(0, idx);
  out.weights = has_weights() ? weights_.index_select(0, idx) : torch::ones({B}, torch::kFloat32);
  out.payload = payload_.select(idx);
  auto counts = counts_.index_select(0, idx);
  auto offsets = offsets_.index_select(0, idx);
  const int64_t kmax = B ? counts.max().item<int64_t>() : 0;
  // Token j of sample b lives at offsets[b] + j for j < counts[b].
  auto j = torch::arange(kmax, torch::kInt64).unsqueeze(0).expand({B, kmax});
  auto valid = j < counts.unsqueeze(1);
  auto src = (offsets.unsqueeze(1) + j).masked_select(valid);                   // [total]
  auto b_of = torch::arange(B, torch::kInt64).unsqueeze(1).expand({B, kmax}).masked_select(valid);
  auto j_of = j.masked_select(valid);
  auto token_pos = positions_.index_select(0, src);
  out.positions = torch::full({B, kmax}, -1, torch::kInt64);
  out.positions.view({-1}).index_copy_(0, b_of * kmax + j_of, token_pos);
  auto kept = patches_.index_select(0, src);  // [total, C, p, p]
  if (want_patches) {
    out.patches = torch::zeros({B * kmax, C, p, p}, torch::kUInt8);
    out.patches.index_copy_(0, b_of * kmax + j_of, kept);
    out.patches = out.patches.view({B, kmax, C, p, p});
  }
  if (want_images) {
    auto grid = torch::zeros({B * T, C, p, p}, torch::kUInt8);
    grid.index_copy_(0, b_of * T + token_pos, kept);
    out.images = unpatchify(grid.view({B, T, C, p, p}), image_size_ / p, image_size_ / p);
  }
  return out;
}

void TokenBuffer::save(const std::filesystem::path& path) const {
  std::vector<SafetensorsTensor> t;
  const int64_t C = channels_, p = patch_size_;
  t.push_back({"patches", patches_.defined() ? patches_ : torch::zeros({0, C, p, p}, torch::kUInt8), ""});
  t.push_back({"positions", stored_positions(), "U16"});
  t.push_back({"counts", counts_.defined() ? counts_ : torch::zeros({0}, torch::kInt64), "U16"});
  t.push_back({"labels", (labels_.defined() ? labels_ : torch::zeros({0}, torch::kInt64)).to(torch::kInt32), ""});
  t.push_back({"tasks", tasks_.defined() ? tasks_ : torch::zeros({0}, torch::kInt64), "U16"});
  if (has_weights()) t.push_back({"weights", weights_, ""});
  if (has_payload()) {
    t.push_back({"payload", payload_.values, ""});
    t.push_back({"payload_lengths", payload_.lengths, "U16"});
  }
  auto meta = metadata_;
  meta["format"] = "cts-token-buffer-v2";
  meta["patch_size"] = std::to_string(patch_size_);
  meta["image_size"] = std::to_string(image_size_);
  meta["channels"] = std::to_string(channels_);
  meta["num_tokens"] = std::to_string(num_tokens());
  meta["samples"] = std::to_string(size());
  meta["tokens"] = std::to_string(tokens());
  meta["bytes"] = std::to_string(bytes());
  save_safetensors(path, t, meta);
}

TokenBuffer TokenBuffer::load(const std::filesystem::path& path) {
  auto f = load_safetensors(path);
  const std::string where = path.string();
  auto meta_int = [&](const char* key) -> int64_t {
    const std::string& v = f.meta(key);
    try {
      size_t used = 0;
      const long long x = std::stoll(v, &used);
      if (used != v.size() || x <= 0) throw std::invalid_argument("");
      return x;
    } catch (const std::exception&) {
      throw_input("{}: metadata {} = '{}' is not a positive integer", where, key, v);
    }
  };
  const int64_t C = meta_int("channels"), S = meta_int("image_size"), p = meta_int("patch_size");
  if (S % p != 0 || (C != 1 && C != 3) || S / p > 256) {
    throw_input("{}: metadata image_size {}, patch_size {}, channels {} are inconsistent; expected channels 1 or 3 and image_size = "
                "patch_size x (1..256)",
                where, S, p, C);
  }
  TokenBuffer b(C, S, p);
  const auto& patches = f.at("patches");
  const auto& positions = f.at("positions");
  const auto& counts = f.at("counts");
  const auto& labels = f.at("labels");
  const auto& tasks = f.at("tasks");
  if (patches.scalar_type() != torch::kUInt8 || patches.dim() != 4 || patches.size(1) != C || patches.size(2) != p || patches.size(3) != p) {
    throw_input("{}: patches must be U8 [tokens, {}, {}, {}], found {} {}", where, C, p, p, shape_str(patches.sizes()), c10::toString(patches.scalar_type()));
  }
  for (const auto& [tname, t] : {std::pair<const char*, const torch::Tensor*>{"positions", &positions}, {"counts", &counts}, {"labels", &labels},
                                 {"tasks", &tasks}}) {
    if (!at::isIntegralType(t->scalar_type(), /*includeBool=*/false)) {
      throw_input("{}: {} must hold integers (U16 or I32), found {}", where, tname, c10::toString(t->scalar_type()));
    }
  }
  const int64_t total = patches.size(0);
  const int64_t n = labels.numel();
  if (labels.dim() != 1 || counts.dim() != 1 || tasks.dim() != 1 || counts.size(0) != n || tasks.size(0) != n) {
    throw_input("{}: labels, counts and tasks must all be [n]; found {}, {}, {}", where, shape_str(labels.sizes()),
                shape_str(counts.sizes()), shape_str(tasks.sizes()));
  }
  const auto c64 = counts.to(torch::kInt64);
  if (n > 0 && (c64.min().item<int64_t>() < 1 || c64.max().item<int64_t>() > b.num_tokens())) throw_input("{}: counts must be in [1, {}]", where, b.num_tokens());
  if (c64.sum().item<int64_t>() != total) throw_input("{}: counts sum to {} but there are {} patches", where, c64.sum().item<int64_t>(), total);
  // Positions: one per token of every sample (v1), or only of the samples that keep fewer than
  // num_tokens tokens (v2: a whole sample's positions are 0 .. num_tokens - 1).
  const auto partial = c64 < b.num_tokens();
  const int64_t partial_tokens = n ? c64.masked_select(partial).sum().item<int64_t>() : 0;
  if (positions.dim() != 1 || (positions.size(0) != total && positions.size(0) != partial_tokens)) {
    throw_input("{}: positions must be [{}] (every token) or [{}] (the tokens of samples keeping fewer than {}), found {}", where, total,
                partial_tokens, b.num_tokens(), shape_str(positions.sizes()));
  }
  if (positions.numel() > 0 && (positions.max().item<int64_t>() >= b.num_tokens() || positions.min().item<int64_t>() < 0)) {
    throw_input("{}: positions must be in [0, {}) (the tokens of an image), found [{}, {}]", where, b.num_tokens(), positions.min().item<int64_t>(),
                positions.max().item<int64_t>());
  }
  if (n > 0 && labels.min().item<int64_t>() < 0) throw_input("{}: negative label", where);
  if (n > 0) {
    b.patches_ = patches.contiguous();
    auto pos = positions.to(torch::kInt64);
    if (positions.size(0) != total) {
      // Whole samples' positions are 0 .. T-1; the stored ones fill the partial samples' tokens.
      const int64_t whole = n - partial.sum().item<int64_t>();
      auto all = torch::empty({total}, torch::kInt64);
      auto token_partial = partial.repeat_interleave(c64);
      all.masked_scatter_(token_partial, pos);
      all.masked_scatter_(token_partial.logical_not(), torch::arange(b.num_tokens(), torch::kInt64).repeat({whole}));
      pos = all;
    }
    b.positions_ = pos;
    b.counts_ = c64;
    b.offsets_ = torch::cumsum(c64, 0) - c64;
    b.labels_ = labels.to(torch::kInt64);
    b.tasks_ = tasks.to(torch::kInt64);
    if (f.contains("weights")) {
      const auto& w = f.at("weights");
      if (w.dim() != 1 || w.size(0) != n || w.scalar_type() != torch::kFloat32) throw_input("{}: weights must be F32 [{}]", where, n);
      if (!torch::isfinite(w).all().item<bool>() || w.min().item<float>() < 0.0f) throw_input("{}: weights must be finite and >= 0", where);
      b.weights_ = w;
    }
  }
  if (f.contains("payload") != f.contains("payload_lengths")) throw_input("{}: payload and payload_lengths must both be present or both absent", where);
  if (f.contains("payload")) {
    const auto& values = f.at("payload");
    const auto& lengths = f.at("payload_lengths");
    if (values.dim() != 1 || values.scalar_type() != torch::kInt32) throw_input("{}: payload must be I32 [values], found {} {}", where, shape_str(values.sizes()), c10::toString(values.scalar_type()));
    if (lengths.dim() != 1 || lengths.size(0) != n || !at::isIntegralType(lengths.scalar_type(), false)) {
      throw_input("{}: payload_lengths must be U16 [{}] (one per sample), found {} {}", where, n, shape_str(lengths.sizes()), c10::toString(lengths.scalar_type()));
    }
    const auto l64 = lengths.to(torch::kInt64);
    if (n > 0 && l64.min().item<int64_t>() < 0) throw_input("{}: negative payload length", where);
    if (l64.sum().item<int64_t>() != values.size(0)) throw_input("{}: payload_lengths sum to {} but payload holds {} values", where, l64.sum().item<int64_t>(), values.size(0));
    if (n > 0) b.payload_ = {values.contiguous(), l64};
  }
  for (const auto& [k, v] : f.metadata) b.metadata_[k] = v;
  return b;
}

}  // namespace cts
