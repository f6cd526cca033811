// Hostile input for the safetensors reader (weights, checkpoints and buffers build on it). Truncated, oversized-claimed-size, wrong-magic and inconsistent files must give
// an InputError naming the file and the offset or field, with what was expected and what was
// found; a header's claimed size is checked against the file before anything is allocated.
// Then a deterministic mutation sweep (every truncation length, seeded byte flips) over a
// valid file: the parser may accept or raise InputError, nothing else (fuzz/ goes further).
#include <torch/torch.h>

#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::expect_error;
using test::MemFile;
using test::sweep;
using test::TempDir;
namespace fs = std::filesystem;

using test::le64;

// ---------------------------------------------------------------- safetensors
TEST(HostileInput, Safetensors) {
  TempDir dir;
  const auto p = dir / "x.safetensors";
  const std::string f = p.string();
  auto load = [&](const std::string& header, const std::string& data) {
    test::write_text(p, le64(header.size()) + header + data);
    return [&] { load_safetensors(p); };
  };
  expect_error("too short", [&] { test::write_text(p, "abc"); load_safetensors(p); }, {f, "3 bytes", "at least the 8-byte header length"});
  expect_error("header length past the end", [&] { test::write_text(p, le64(1ull << 60) + "{}"); load_safetensors(p); },
               {f, "header length 1152921504606846976 at offset 0 exceeds the 2 bytes that follow"});
  expect_error("wrong magic (a zip file)", [&] { test::write_text(p, "PK\x03\x04" + std::string(40, 'z')); load_safetensors(p); },
               {f, "header length", "exceeds"});
  expect_error("not JSON", load("{\"x\": [1, 2", ""), {f, "header (bytes 8..19) is not valid JSON"});
  expect_error("not an object", load("[1,2]", ""), {f, "must be a JSON object, found array"});
  expect_error("missing field", load(R"({"x":{"dtype":"U8","shape":[1]}})", "a"), {f, "tensor 'x' must have dtype, shape and data_offsets"});
  expect_error("unknown dtype", load(R"({"x":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", "a"),
               {f, "tensor 'x': dtype 'F8_E4M3' is not supported", "accepted: F64"});
  expect_error("shape vs offsets", load(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
               {f, "tensor 'x': shape needs 12 bytes of F32 but data_offsets span 8"});
  expect_error("offsets beyond the data", load(R"({"x":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}})", "abcd"),
               {f, "data_offsets [0, 16] outside the 4-byte data section"});
  expect_error("end before begin", load(R"({"x":{"dtype":"U8","shape":[0],"data_offsets":[3,1]}})", "abcd"), {f, "data_offsets [3, 1]"});
  // Oversized claims: 2^64-ish element counts, and a dimension above int64 with a zero beside it.
  expect_error("numel overflow", load(R"({"x":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", "abcd"),
               {f, "tensor 'x': shape [4294967296,4294967296,4294967296] overflows"});
  expect_error("dimension above int64", load(R"({"x":{"dtype":"U8","shape":[0,18446744073709551615],"data_offsets":[0,0]}})", ""),
               {f, "overflows"});
  std::string dims200;
  for (int i = 0; i < 200; ++i) dims200 += i ? ",1" : "1";
  expect_error("too many dimensions", load(R"({"x":{"dtype":"U8","shape":[)" + dims200 + R"(],"data_offsets":[0,1]}})", "a"),
               {f, "tensor 'x': shape has 200 dimensions; at most 64"});
  // Overlap hidden behind an empty tensor between the two.
  expect_error("overlap", load(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[0],"data_offsets":[4,4]},)"
                               R"("c":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})",
                               std::string(12, 'x')),
               {f, "tensors 'a' (data_offsets [0, 8]) and 'c' ([4, 12]) overlap"});
  expect_error("metadata not strings", load(R"({"__metadata__":{"n":3}})", ""), {f, "__metadata__[\"n\"] must be a string, found number"});
}

// ---------------------------------------------------------------- mutation sweep
TEST(HostileInput, SafetensorsMutationSweep) {
  TempDir dir;
  MemFile file;
  save_safetensors(dir / "t.safetensors", {{"a", torch::arange(6, torch::kFloat32).view({2, 3}), ""}, {"b", torch::tensor({1, 2}, torch::kInt64), "U16"}},
                   {{"format", "pt"}});
  sweep("safetensors", test::read_text(dir / "t.safetensors"), [&](const std::string& bytes) { load_safetensors(file.set(bytes)); });
}

}  // namespace
}  // namespace cts
