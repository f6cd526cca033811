// Config: defaults, YAML parsing, --set, errors naming file/line/key and what is accepted,
// memory fraction resolution, resolved-YAML round trip, and docs/config.md freshness.
#include "cts/config/config.hpp"
#include "cts/core/error.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

std::string error_of(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  try {
    parse_config(yaml, "exp.yaml", sets);
  } catch (const InputError& e) {
    return e.what();
  }
  return "<accepted>";
}

TEST(Config, DefaultsAndParsing) {
  auto c = parse_config("seed: 3\ndata: {name: synthetic, tasks: 2}\ntrain:\n  lr: 2.0e-4\n  token_drop: 0.5\nmemory:\n  strategy: coreset\n  retention: 0.2\n", "x");
  EXPECT_EQ(c.seed, 3);
  EXPECT_EQ(c.data.name, "synthetic");
  EXPECT_EQ(c.data.tasks, 2);
  EXPECT_DOUBLE_EQ(c.train.lr, 2e-4);
  EXPECT_FALSE(c.train.token_drop.is_auto);
  EXPECT_DOUBLE_EQ(c.train.token_drop.value, 0.5);
  EXPECT_EQ(c.train.batch_size, 128);  // default
  auto e = parse_config("", "empty");
  EXPECT_EQ(e.memory.strategy, MemoryStrategy::CoreTokenset);
  EXPECT_TRUE(e.train.token_drop.is_auto);
}

TEST(Config, OverridesWin) {
  auto c = parse_config("memory: {tokens: random}\n", "x", {"memory.fill=drop", "data.class_order=[3, 1, 2]", "train.epochs=4"});
  EXPECT_EQ(c.memory.fill, FillMode::Drop);
  EXPECT_EQ(c.data.class_order.mode, "list");
  EXPECT_EQ(c.data.class_order.classes, (std::vector<int64_t>{3, 1, 2}));
  EXPECT_EQ(c.train.epochs, 4);
}

TEST(Config, ErrorsNameTheKeyAndWhatIsAccepted) {
  auto e = error_of("train:\n  lrr: 0.1\n");
  EXPECT_NE(e.find("exp.yaml line 2"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'train.lrr'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'train.lr'"), std::string::npos) << e;

  e = error_of("trian: {epochs: 1}\n");
  EXPECT_NE(e.find("unknown key 'trian' (did you mean 'train'?)"), std::string::npos) << e;

  e = error_of("train: {epochs: two}\n");
  EXPECT_NE(e.find("train.epochs must be an integer, got 'two'"), std::string::npos) << e;

  e = error_of("train: {epochs: 0}\n");
  EXPECT_NE(e.find("train.epochs = 0 is out of range; accepted: >= 1"), std::string::npos) << e;

  e = error_of("memory: {tokens: gradlrpp}\n");
  EXPECT_NE(e.find("memory.tokens = 'gradlrpp' is not accepted; accepted: random"), std::string::npos) << e;

  e = error_of("memory: {retention: 1.5}\n");
  EXPECT_NE(e.find("memory.retention = 1.5 is out of range; accepted: (0, 1]"), std::string::npos) << e;

  e = error_of("train: 3\n");
  EXPECT_NE(e.find("'train' must be a mapping"), std::string::npos) << e;

  e = error_of("seed: [1\n");
  EXPECT_NE(e.find("invalid YAML"), std::string::npos) << e;

  e = error_of("seed: 1\nseed: 2\n");
  EXPECT_NE(e.find("given twice"), std::string::npos) << e;

  e = error_of("", {"memory.fill"});
  EXPECT_NE(e.find("expected key=value"), std::string::npos) << e;

  e = error_of("", {"memory.nope=1"});
  EXPECT_NE(e.find("--set memory.nope=1: unknown key 'memory.nope'"), std::string::npos) << e;

  e = error_of("data: {class_order: [1, x]}\n");
  EXPECT_NE(e.find("data.class_order"), std::string::npos) << e;

  e = error_of("data: {name: imagefolder, image_size: 224}\n");
  EXPECT_NE(e.find("data.root"), std::string::npos) << e;

  e = error_of("model: {weights: model.pt}\n");
  EXPECT_NE(e.find("expected a .safetensors file"), std::string::npos) << e;
}

TEST(Config, MissingFileIsAnInputError) {
  try {
    load_config("/nonexistent/exp.yaml");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("config file not found: /nonexistent/exp.yaml"), std::string::npos);
  }
}

TEST(Config, MemoryFractions) {
  MemoryConfig m;
  m.strategy = MemoryStrategy::CoreTokenset;
  m.retention = 0.01;
  auto f = resolve_memory_fractions(m);
  EXPECT_NEAR(f.sample_fraction, 0.1, 1e-12);
  EXPECT_NEAR(f.token_fraction, 0.1, 1e-12);
  m.token_fraction = 0.25;
  f = resolve_memory_fractions(m);
  EXPECT_NEAR(f.sample_fraction, 0.04, 1e-12);
  m.sample_fraction = 0.5;
  f = resolve_memory_fractions(m);  // both given: they define retention
  EXPECT_NEAR(f.retention, 0.125, 1e-12);
  m = MemoryConfig{};
  m.strategy = MemoryStrategy::CoreTokenset;
  m.retention = 0.5;
  m.token_fraction = 0.2;  // needs s = 2.5: impossible
  EXPECT_THROW(resolve_memory_fractions(m), InputError);
  m = MemoryConfig{};
  m.strategy = MemoryStrategy::Coreset;
  m.retention = 0.1;
  f = resolve_memory_fractions(m);
  EXPECT_DOUBLE_EQ(f.sample_fraction, 0.1);
  EXPECT_DOUBLE_EQ(f.token_fraction, 1.0);
  m.token_fraction = 0.5;
  EXPECT_THROW(resolve_memory_fractions(m), InputError);
  m = MemoryConfig{};
  m.strategy = MemoryStrategy::CoreTokens;
  m.retention = 0.3;
  f = resolve_memory_fractions(m);
  EXPECT_DOUBLE_EQ(f.sample_fraction, 1.0);
  EXPECT_DOUBLE_EQ(f.token_fraction, 0.3);
  m.strategy = MemoryStrategy::None;
  EXPECT_FALSE(resolve_memory_fractions(m).uses_memory);
  m.strategy = MemoryStrategy::Cumulative;
  EXPECT_DOUBLE_EQ(resolve_memory_fractions(m).retention, 1.0);
}

TEST(Config, ResolvedYamlRoundTrips) {
  auto c = parse_config("seed: 5\ndata: {class_order: [1, 0], tasks: 1, root: /tmp/x}\nmemory: {sample_fraction: 0.3, token_fraction: 0.5}\ntrain: {token_drop: 0.25}\n", "x");
  const std::string yaml = config_to_yaml(c);
  auto back = parse_config(yaml, "resolved");
  EXPECT_EQ(config_to_yaml(back), yaml);
  EXPECT_NE(yaml.find("  retention: 0.01"), std::string::npos);
  EXPECT_NE(yaml.find("  class_order: [1, 0]"), std::string::npos);
  EXPECT_NE(yaml.find("  weights: \"\""), std::string::npos);
}

TEST(Config, DocsConfigMdIsUpToDate) {
  const auto path = std::filesystem::path(test::source_dir()) / "docs" / "config.md";
  EXPECT_EQ(test::read_text(path), config_reference_markdown())
      << "docs/config.md is stale: regenerate it with `build/cts config keys --markdown > docs/config.md`";
}

}  // namespace
}  // namespace cts
