// .safetensors reader/writer with strict validation of untrusted headers.
#include "cts/core/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <limits>

#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"

namespace cts {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;  // the reference implementation's limit

struct DtypeInfo {
  const char* name;
  int64_t bytes;
  torch::ScalarType load_as;
};

const DtypeInfo kDtypes[] = {
    {"F64", 8, torch::kFloat64}, {"F32", 4, torch::kFloat32}, {"F16", 2, torch::kFloat16},
    {"BF16", 2, torch::kBFloat16}, {"I64", 8, torch::kInt64}, {"I32", 4, torch::kInt32},
    {"I16", 2, torch::kInt16},   {"I8", 1, torch::kInt8},     {"U8", 1, torch::kUInt8},
    {"BOOL", 1, torch::kBool},   {"U16", 2, torch::kInt32},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string accepted_dtypes() {
  std::string s;
  for (const auto& d : kDtypes) s += std::string(s.empty() ? "" : ", ") + d.name;
  return s;
}

std::string dtype_of(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64: return "F64";
    case torch::kFloat32: return "F32";
    case torch::kFloat16: return "F16";
    case torch::kBFloat16: return "BF16";
    case torch::kInt64: return "I64";
    case torch::kInt32: return "I32";
    case torch::kInt16: return "I16";
    case torch::kInt8: return "I8";
    case torch::kUInt8: return "U8";
    case torch::kBool: return "BOOL";
    default: throw_run("safetensors: tensor type {} cannot be stored", c10::toString(t));
  }
}

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

SafetensorsFile parse_header(const std::filesystem::path& path, std::ifstream& in, uint64_t file_size) {
  SafetensorsFile file;
  file.path = path;
  const std::string where = path.string();
  if (file_size < 8) throw_input("{}: not a safetensors file: {} bytes, need at least the 8-byte header length", where, file_size);
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  if (!in) throw_input("{}: cannot read the header length", where);
  const uint64_t header_len = read_u64_le(len_bytes);
  if (header_len > file_size - 8) {
    throw_input("{}: header length {} at offset 0 exceeds the {} bytes that follow (truncated or not a safetensors file)",
                where, header_len, file_size - 8);
  }
  if (header_len > kMaxHeaderBytes) throw_input("{}: header length {} exceeds the limit of {} bytes", where, header_len, kMaxHeaderBytes);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  if (!in) throw_input("{}: cannot read the {}-byte header", where, header_len);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const std::exception& e) {
    throw_input("{}: header (bytes 8..{}) is not valid JSON: {}", where, 8 + header_len, e.what());
  }
  if (!j.is_object()) throw_input("{}: header must be a JSON object, found {}", where, j.type_name());
  file.data_bytes = file_size - 8 - header_len;

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw_input("{}: __metadata__ must be an object of strings", where);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw_input("{}: __metadata__[\"{}\"] must be a string, found {}", where, m.key(), m.value().type_name());
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets")) {
      throw_input("{}: tensor '{}' must have dtype, shape and data_offsets", where, name);
    }
    SafetensorsEntry e;
    e.name = name;
    if (!v["dtype"].is_string()) throw_input("{}: tensor '{}': dtype must be a string", where, name);
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* info = find_dtype(e.dtype);
    if (!info) throw_input("{}: tensor '{}': dtype '{}' is not supported (accepted: {})", where, name, e.dtype, accepted_dtypes());
    if (!v["shape"].is_array()) throw_input("{}: tensor '{}': shape must be an array", where, name);
    if (v["shape"].size() > 64) throw_input("{}: tensor '{}': shape has {} dimensions; at most 64 are accepted", where, name, v["shape"].size());
    uint64_t numel = 1;
    uint64_t nonzero = 1;  // product of the non-zero dimensions: must fit int64 for torch even when numel is 0
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw_input("{}: tensor '{}': shape entries must be non-negative integers, found {}", where, name, d.dump());
      const uint64_t dim = d.get<uint64_t>();
      constexpr uint64_t kMaxNumel = uint64_t(std::numeric_limits<int64_t>::max());
      if (dim != 0 && nonzero > kMaxNumel / dim) {
        throw_input("{}: tensor '{}': shape {} overflows: more than 2^63 elements", where, name, v["shape"].dump());
      }
      if (dim != 0) nonzero *= dim;
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      throw_input("{}: tensor '{}': data_offsets must be [begin, end]", where, name);
    }
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.begin > e.end || e.end > file.data_bytes) {
      throw_input("{}: tensor '{}': data_offsets [{}, {}] outside the {}-byte data section", where, name, e.begin, e.end, file.data_bytes);
    }
    if (numel > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(info->bytes) ||
        e.end - e.begin != numel * static_cast<uint64_t>(info->bytes)) {
      throw_input("{}: tensor '{}': shape needs {} bytes of {} but data_offsets span {}", where, name,
                  numel * static_cast<uint64_t>(info->bytes), e.dtype, e.end - e.begin);
    }
    file.entries.push_back(std::move(e));
  }
  std::sort(file.entries.begin(), file.entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Sorted by begin: a tensor overlaps an earlier one iff it starts before the furthest end
  // seen so far (empty tensors occupy no bytes).
  const SafetensorsEntry* furthest = nullptr;
  for (const auto& cur : file.entries) {
    if (cur.end == cur.begin) continue;
    if (furthest && cur.begin < furthest->end) {
      throw_input("{}: tensors '{}' (data_offsets [{}, {}]) and '{}' ([{}, {}]) overlap in the data section", where, furthest->name,
                  furthest->begin, furthest->end, cur.name, cur.begin, cur.end);
    }
    if (!furthest || cur.end > furthest->end) furthest = &cur;
  }
  return file;
}

}  // namespace

const torch::Tensor& SafetensorsFile::at(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) {
    std::string have;
    for (const auto& e : entries) have += (have.empty() ? "" : ", ") + e.name;
    throw_input("{}: has no tensor '{}' (it has: {})", path.string(), name, have.empty() ? "none" : have);
  }
  return it->second;
}

const std::string& SafetensorsFile::meta(const std::string& key) const {
  auto it = metadata.find(key);
  if (it == metadata.end()) throw_input("{}: metadata has no key '{}'", path.string(), key);
  return it->second;
}

SafetensorsFile read_safetensors_header(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw_input("safetensors file not found: {}", path.string());
  const uint64_t size = std::filesystem::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input("cannot open {}", path.string());
  return parse_header(path, in, size);
}

SafetensorsFile load_safetensors(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw_input("safetensors file not found: {}", path.string());
  const uint64_t size = std::filesystem::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input("cannot open {}", path.string());
  SafetensorsFile file = parse_header(path, in, size);
  const uint64_t data_start = size - file.data_bytes;
  for (const auto& e : file.entries) {
    const DtypeInfo* info = find_dtype(e.dtype);
    torch::Tensor t;
    if (e.dtype == "U16") {
      std::vector<uint16_t> raw((e.end - e.begin) / 2);
      in.seekg(static_cast<std::streamoff>(data_start + e.begin));
      in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(e.end - e.begin));
      t = torch::empty(e.shape, torch::kInt32);
      auto* dst = t.data_ptr<int32_t>();
      for (size_t i = 0; i < raw.size(); ++i) dst[i] = raw[i];
    } else {
      t = torch::empty(e.shape, info->load_as);
      in.seekg(static_cast<std::streamoff>(data_start + e.begin));
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
    }
    if (!in) throw_input("{}: cannot read tensor '{}' (file truncated?)", path.string(), e.name);
    if (e.dtype == "BOOL") {
      // Only 0 and 1 are valid bool bytes; anything else is corrupt data.
      auto bytes = t.view(torch::kUInt8);
      if (bytes.numel() > 0 && bytes.max().item<int>() > 1) throw_input("{}: tensor '{}': BOOL data holds values other than 0/1", path.string(), e.name);
    }
    file.tensors[e.name] = t;
  }
  return file;
}

std::string serialize_safetensors(const std::vector<SafetensorsTensor>& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> payload;
  std::vector<std::vector<uint16_t>> u16_payload;
  uint64_t offset = 0;
  for (const auto& st : tensors) {
    if (header.contains(st.name)) throw_run("safetensors: duplicate tensor name '{}'", st.name);
    torch::Tensor t = st.tensor.detach().to(torch::kCPU).contiguous();
    std::string dtype = st.dtype.empty() ? dtype_of(t.scalar_type()) : st.dtype;
    uint64_t nbytes;
    if (dtype == "U16") {
      auto wide = t.to(torch::kInt64).contiguous();
      std::vector<uint16_t> raw(static_cast<size_t>(wide.numel()));
      const int64_t* src = wide.data_ptr<int64_t>();
      for (size_t i = 0; i < raw.size(); ++i) {
        if (src[i] < 0 || src[i] > 65535) throw_run("safetensors: tensor '{}' value {} does not fit U16", st.name, src[i]);
        raw[i] = static_cast<uint16_t>(src[i]);
      }
      nbytes = raw.size() * 2;
      u16_payload.push_back(std::move(raw));
      payload.push_back(torch::Tensor());
    } else {
      if (dtype != dtype_of(t.scalar_type())) throw_run("safetensors: tensor '{}' cannot be stored as {}", st.name, dtype);
      nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
      payload.push_back(t);
    }
    header[st.name] = {{"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string head = header.dump();
  while ((head.size() + 8) % 8 != 0) head.push_back(' ');  // align the data section to 8 bytes
  std::string out;
  out.reserve(8 + head.size() + offset);
  const uint64_t n = head.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  out += head;
  size_t u16_index = 0;
  for (const auto& t : payload) {
    if (t.defined()) {
      out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
    } else {
      const auto& raw = u16_payload[u16_index++];
      out.append(reinterpret_cast<const char*>(raw.data()), raw.size() * 2);
    }
  }
  return out;
}

void save_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

}  // namespace cts
