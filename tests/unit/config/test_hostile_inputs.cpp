// Hostile input for the YAML run configuration. Truncated, oversized-claimed-size, wrong-magic and inconsistent files must give
// an InputError naming the file and the offset or field, with what was expected and what was
// found; a header's claimed size is checked against the file before anything is allocated.
// Then a deterministic mutation sweep (every truncation length, seeded byte flips) over a
// valid file: the parser may accept or raise InputError, nothing else (fuzz/ goes further).
#include <torch/torch.h>

#include "cts/core/error.hpp"
#include "cts/config/config.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::expect_error;
using test::MemFile;
using test::sweep;
using test::TempDir;
namespace fs = std::filesystem;

// ---------------------------------------------------------------- YAML config
TEST(HostileInput, YamlConfig) {
  TempDir dir;
  const auto p = dir / "exp.yaml";
  auto load = [&](const std::string& text) {
    test::write_text(p, text);
    return [&] { load_config(p); };
  };
  const std::string f = p.string();
  expect_error("unclosed flow mapping", load("data: {name: synthetic\nseed: 1\n"), {f, "invalid YAML"});
  expect_error("tab indentation", load("data:\n\tname: mnist\n"), {f, "line 2", "invalid YAML"});
  expect_error("a list, not a mapping", load("- seed\n- 1\n"), {f, "a config must be a YAML mapping"});
  expect_error("binary junk", load(std::string("\x00\x01\x02\xff\xfe", 5)), {f});
  expect_error("deep nesting", load("seed: " + std::string(20000, '[') + std::string(20000, ']') + "\n"), {f});
  expect_error("integer too large", load("seed: 99999999999999999999999\n"), {f, "line 1", "seed must be an integer, got '99999999999999999999999'"});
  expect_error("nan", load("train: {lr: .nan}\n"), {f, "train.lr must be a finite number"});
  expect_error("duplicate key", load("seed: 1\nseed: 2\n"), {f, "line 2", "key 'seed' is given twice"});
  expect_error("section is a scalar", load("train: fast\n"), {f, "line 1", "'train' must be a mapping of keys"});
  expect_error("non-scalar key", load("? [a, b]\n: 1\n"), {f, "keys must be plain names"});
  expect_error("anchor loop of aliases", load("a: &x [*x]\n"), {f});
  expect_error("alias bomb", load("x: &a [1, 1, 1, 1, 1, 1, 1, 1]\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nz: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
                                  "data: {class_order: [*c, *c, *c, *c, *c, *c, *c, *c]}\n"),
               {f, "unknown key"});
}

// ---------------------------------------------------------------- mutation sweep
TEST(HostileInput, ConfigMutationSweep) {
  const std::string config = test::read_text(fs::path(test::source_dir()) / "configs" / "quickstart.yaml");
  sweep("config", config, [](const std::string& s) { parse_config(s, "quickstart.yaml"); });
}

}  // namespace
}  // namespace cts
