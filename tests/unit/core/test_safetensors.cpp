// safetensors: round trip, an independent Python reader/writer, and malformed files.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;
using test::input_error;
using test::le64;

// A file from a header text and raw data, written by hand (not by our writer).
void write_raw(const std::filesystem::path& p, const std::string& header, const std::string& data) {
  test::write_text(p, le64(header.size()) + header + data);
}

TEST(Safetensors, RoundTripAllDtypesAndMetadata) {
  TempDir dir;
  auto f32 = torch::randn({3, 4});
  auto bf16 = torch::randn({5}).to(torch::kBFloat16);
  auto u8 = torch::randint(0, 256, {2, 3, 4}, torch::kInt64).to(torch::kUInt8);
  auto i64 = torch::tensor(std::vector<int64_t>{-5, 7, int64_t(1) << 40}, torch::kInt64);
  auto u16 = torch::tensor({0, 1, 65535, 300}, torch::kInt64);
  auto b = torch::tensor({true, false, true});
  auto empty = torch::zeros({0, 3});
  save_safetensors(dir / "a.safetensors",
                   {{"f32", f32, ""}, {"bf16", bf16, ""}, {"u8", u8, ""}, {"i64", i64, ""}, {"u16", u16, "U16"}, {"bool", b, ""}, {"empty", empty, ""}},
                   {{"key", "value"}, {"n", "3"}});
  auto f = load_safetensors(dir / "a.safetensors");
  EXPECT_TRUE(torch::equal(f.at("f32"), f32));
  EXPECT_TRUE(torch::equal(f.at("bf16"), bf16));
  EXPECT_TRUE(torch::equal(f.at("u8"), u8));
  EXPECT_TRUE(torch::equal(f.at("i64"), i64));
  EXPECT_TRUE(torch::equal(f.at("u16").to(torch::kInt64), u16));
  EXPECT_TRUE(torch::equal(f.at("bool"), b));
  EXPECT_EQ(f.at("empty").sizes(), empty.sizes());
  EXPECT_EQ(f.meta("key"), "value");
  // The data section starts 8-byte aligned and is exactly the tensors' bytes.
  const auto size = std::filesystem::file_size(dir / "a.safetensors");
  EXPECT_EQ(f.data_bytes, uint64_t(12 * 4 + 5 * 2 + 24 + 3 * 8 + 4 * 2 + 3));
  EXPECT_EQ((size - f.data_bytes) % 8, 0u);
}

TEST(Safetensors, ReadsAHandWrittenFile) {
  TempDir dir;
  // Two little-endian float32 values 1.0 and -2.5, and one U16 value 513, laid out by hand.
  std::string data("\x00\x00\x80\x3f\x00\x00\x20\xc0\x01\x02", 10);
  write_raw(dir / "h.safetensors",
            R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"p":{"dtype":"U16","shape":[1],"data_offsets":[8,10]},"__metadata__":{"a":"b"}})", data);
  auto f = load_safetensors(dir / "h.safetensors");
  EXPECT_FLOAT_EQ(f.at("x")[0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(f.at("x")[1].item<float>(), -2.5f);
  EXPECT_EQ(f.at("p")[0].item<int>(), 513);
  EXPECT_EQ(f.meta("a"), "b");
}

TEST(Safetensors, RejectsMalformedFiles) {
  TempDir dir;
  const auto p = dir / "bad.safetensors";
  test::write_text(p, "abc");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("at least the 8-byte header length"), std::string::npos);

  test::write_text(p, le64(1000) + "{}");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("exceeds"), std::string::npos);

  write_raw(p, "{not json", "");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("not valid JSON"), std::string::npos);

  write_raw(p, R"({"x":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}})", "abcd");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("dtype 'F99' is not supported"), std::string::npos);

  write_raw(p, R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", "abcd");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("outside the 4-byte data section"), std::string::npos);

  write_raw(p, R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("shape needs 8 bytes"), std::string::npos);

  write_raw(p, R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"y":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", "abcd");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("overlap"), std::string::npos);

  write_raw(p, R"({"x":{"dtype":"U8","shape":[-1],"data_offsets":[0,4]}})", "abcd");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("non-negative"), std::string::npos);

  write_raw(p, R"({"x":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", "abcd");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("overflows"), std::string::npos);

  write_raw(p, R"({"__metadata__":{"a":1}})", "");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("must be a string"), std::string::npos);

  write_raw(p, R"({"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", std::string("\x01\x07", 2));
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find("values other than 0/1"), std::string::npos);

  const std::string missing = input_error([&] { load_safetensors(dir / "nope.safetensors"); });
  EXPECT_NE(missing.find("nope.safetensors"), std::string::npos);
  // Every message names the file.
  write_raw(p, "[1,2]", "");
  EXPECT_NE(input_error([&] { load_safetensors(p); }).find(p.string()), std::string::npos);
}

TEST(Safetensors, MissingTensorNamesTheAlternatives) {
  TempDir dir;
  save_safetensors(dir / "a.safetensors", {{"alpha", torch::zeros({1}), ""}});
  auto f = load_safetensors(dir / "a.safetensors");
  EXPECT_NE(input_error([&] { f.at("beta"); }).find("it has: alpha"), std::string::npos);
}

// Independent check: Python (json + struct + numpy, no safetensors library) reads what we
// write and writes a file we must read back.
TEST(PythonSafetensors, CrossCheckWithIndependentPythonReader) {
  ASSERT_TRUE(test::python_torch_available()) << "Debian's python3-torch is needed (scripts/install-deps installs it)";
  TempDir dir;
  auto x = torch::arange(12, torch::kFloat32).reshape({3, 4}) / 7.0;
  save_safetensors(dir / "ours.safetensors", {{"x", x, ""}, {"p", torch::tensor({1, 2, 65000}, torch::kInt64), "U16"}}, {{"who", "cts"}});
  auto r = test::run_python("safetensors_check.py", (dir / "ours.safetensors").string() + " " + (dir / "theirs.safetensors").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto f = load_safetensors(dir / "theirs.safetensors");
  EXPECT_TRUE(torch::allclose(f.at("y"), torch::arange(6, torch::kFloat32).reshape({2, 3}) * 0.5));
  EXPECT_TRUE(torch::equal(f.at("z").to(torch::kInt64), torch::tensor({3, 65535}, torch::kInt64)));
  EXPECT_EQ(f.meta("who"), "python");
}

}  // namespace
}  // namespace cts
