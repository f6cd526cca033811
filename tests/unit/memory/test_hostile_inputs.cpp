// Hostile input for the token buffer file (buffer.safetensors). Truncated, oversized-claimed-size, wrong-magic and inconsistent files must give
// an InputError naming the file and the offset or field, with what was expected and what was
// found; a header's claimed size is checked against the file before anything is allocated.
// Then a deterministic mutation sweep (every truncation length, seeded byte flips) over a
// valid file: the parser may accept or raise InputError, nothing else (fuzz/ goes further).
#include <torch/torch.h>

#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/memory/token_buffer.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::expect_error;
using test::MemFile;
using test::sweep;
using test::TempDir;
namespace fs = std::filesystem;

// ---------------------------------------------------------------- token buffer
TEST(HostileInput, TokenBuffer) {
  TempDir dir;
  const auto p = dir / "x.safetensors";
  const std::string f = p.string();
  // The token buffer: a valid file, then inconsistent variants of it.
  TokenBuffer b(1, 8, 4);  // 4 tokens per image
  auto pos = torch::tensor({{0, 3}, {1, -1}}, torch::kInt64);
  b.add(torch::full({2, 1, 8, 8}, 9, torch::kUInt8), torch::tensor({1, 2}), 0, pos);
  const auto good = dir / "buffer.safetensors";
  b.save(good);
  ASSERT_EQ(TokenBuffer::load(good).tokens(), 3);
  auto rewrite = [&](const std::function<void(std::vector<SafetensorsTensor>&, std::map<std::string, std::string>&)>& edit) {
    auto file = load_safetensors(good);
    std::vector<SafetensorsTensor> t;
    for (const auto& e : file.entries) t.push_back({e.name, file.at(e.name), e.dtype == "U16" ? "U16" : ""});
    auto meta = file.metadata;
    edit(t, meta);
    save_safetensors(p, t, meta);
    return [&] { TokenBuffer::load(p); };
  };
  auto set = [](std::vector<SafetensorsTensor>& t, const std::string& name, const torch::Tensor& v, const std::string& dtype = "") {
    for (auto& x : t)
      if (x.name == name) x.tensor = v, x.dtype = dtype;
  };
  expect_error("counts do not sum to the patches", rewrite([&](auto& t, auto&) { set(t, "counts", torch::tensor({2, 2}), "U16"); }),
               {f, "counts sum to 4 but there are 3 patches"});
  expect_error("position beyond the image", rewrite([&](auto& t, auto&) { set(t, "positions", torch::tensor({0, 3, 4}), "U16"); }),
               {f, "positions must be in [0, 4)", "found [0, 4]"});
  expect_error("negative position", rewrite([&](auto& t, auto&) { set(t, "positions", torch::tensor({0, -3, 1}, torch::kInt32)); }),
               {f, "positions must be in [0, 4)", "found [-3, 1]"});
  expect_error("float labels", rewrite([&](auto& t, auto&) { set(t, "labels", torch::tensor({1.5f, NAN})); }),
               {f, "labels must hold integers", "found Float"});
  expect_error("missing tensor", rewrite([&](auto& t, auto&) { t.pop_back(); }), {f, "has no tensor 'tasks'"});
  expect_error("huge image_size", rewrite([&](auto&, auto& m) { m["image_size"] = "9000000000000000000"; m["patch_size"] = "1"; }),
               {f, "image_size 9000000000000000000, patch_size 1", "patch_size x (1..256)"});
  expect_error("image_size not a number", rewrite([&](auto&, auto& m) { m["image_size"] = "8px"; }), {f, "metadata image_size = '8px' is not a positive integer"});
  expect_error("patches of another size", rewrite([&](auto&, auto& m) { m["patch_size"] = "2"; }), {f, "patches must be U8 [tokens, 1, 2, 2]"});
}

// ---------------------------------------------------------------- mutation sweep
TEST(HostileInput, TokenBufferMutationSweep) {
  TempDir dir;
  MemFile file;
  TokenBuffer b(3, 8, 4);
  auto images = torch::arange(3 * 8 * 8, torch::kInt64).remainder(251).to(torch::kUInt8).view({1, 3, 8, 8}).expand({3, 3, 8, 8}).contiguous();
  b.add(images, torch::tensor({1, 2, 3}), 1, torch::tensor({{0, 2}, {1, 3}, {3, -1}}, torch::kInt64), {},
        Payload{torch::tensor({4, 5, 6}, torch::kInt32), torch::tensor({2, 0, 1}, torch::kInt64)});
  b.save(dir / "buffer.safetensors");
  sweep("buffer", test::read_text(dir / "buffer.safetensors"), [&](const std::string& bytes) { TokenBuffer::load(file.set(bytes)); });
}

}  // namespace
}  // namespace cts
