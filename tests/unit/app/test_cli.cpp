// The cts binary: exit codes and messages for bad usage, config and input files.
#include "test_util.hpp"

namespace cts {
namespace {

using test::run_cts;
using test::TempDir;

TEST(Cli, BadUsageExitsTwo) {
  auto r = run_cts("");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_cts("frobnicate");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_cts("run");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("needs a CONFIG.yaml"), std::string::npos) << r.output;
  r = run_cts("run x.yaml --device tpu");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

TEST(Cli, ConfigErrorsExitTwoNamingFileAndKey) {
  TempDir dir;
  auto r = run_cts("run " + (dir / "missing.yaml").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("config file not found: " + (dir / "missing.yaml").string()), std::string::npos) << r.output;

  test::write_text(dir / "bad.yaml", "data:\n  name: synthetic\n  taks: 2\n");
  r = run_cts("run " + (dir / "bad.yaml").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("bad.yaml line 3: unknown key 'data.taks' (did you mean 'data.tasks'?)"), std::string::npos) << r.output;

  test::write_text(dir / "ok.yaml", "data: {name: synthetic}\n");
  r = run_cts("run " + (dir / "ok.yaml").string() + " --set memory.strategy=everything");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("accepted: none, cumulative, coreset, core-tokens, core-tokenset"), std::string::npos) << r.output;

  // Missing dataset files: exit 2 with the path and a hint.
  test::write_text(dir / "cifar.yaml", "data: {name: cifar10, root: " + (dir / "nodata").string() + "}\nmodel: {preset: vit_micro_patch4_32}\n");
  r = run_cts("run " + (dir / "cifar.yaml").string() + " --out " + (dir / "run").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("CIFAR files not found"), std::string::npos) << r.output;

  // Impossible budget: 1% of 49 tokens is 0 tokens.
  test::write_text(dir / "tiny.yaml", "data: {name: synthetic, tasks: 2, train_per_class: 10, test_per_class: 5}\nmemory: {strategy: core-tokens, retention: 0.005}\n");
  r = run_cts("run " + (dir / "tiny.yaml").string() + " --out " + (dir / "run2").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("keeps 0 of the 49 tokens"), std::string::npos) << r.output;

  // Image size and channel mismatches between data and model: both in one message.
  test::write_text(dir / "size.yaml", "data: {name: synthetic, image_size: 32, channels: 3}\n");
  r = run_cts("run " + (dir / "size.yaml").string() + " --out " + (dir / "run3").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("takes 28x28 images"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("takes 1 channel(s) but synthetic images have 3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model.in_chans: 3"), std::string::npos) << r.output;
}

TEST(Cli, BufferInspectRejectsBadFiles) {
  TempDir dir;
  test::write_text(dir / "junk.safetensors", "definitely not safetensors");
  auto r = run_cts("buffer inspect " + (dir / "junk.safetensors").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("junk.safetensors"), std::string::npos) << r.output;
  r = run_cts("buffer inspect " + (dir / "none.safetensors").string());
  EXPECT_EQ(r.exit_code, 2);
}

TEST(Cli, DatasetsAndConfigKeys) {
  auto r = run_cts("datasets");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("fashion-mnist"), std::string::npos);
  EXPECT_NE(r.output.find("imagefolder"), std::string::npos);
  r = run_cts("config keys");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("memory.retention"), std::string::npos);
  r = run_cts("--version");
  EXPECT_EQ(r.exit_code, 0);
}

}  // namespace
}  // namespace cts
