// `cts explain` and `cts buffer render`: figures, scores JSON and partial-image PNGs, checked
// pixel by pixel against the images they were made from; bad arguments exit 2.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "cts/data/image_codec.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/models/vit.hpp"
#include "cts/report/overlay.hpp"
#include "test_util.hpp"

using namespace cts;
using test::TempDir;

namespace {
std::string cts_bin() { return CTS_BINARY; }
}  // namespace

TEST(Overlay, KeptPatchesImageKeepsExactlyTheKeptPixels) {
  auto img = torch::randint(0, 256, {1, 8, 8}, torch::kInt64).to(torch::kUInt8);
  auto out = kept_patches_image(img, torch::tensor({1, 2, -1}), 4);  // grid 2x2: patches 1 (top right), 2 (bottom left)
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{3, 8, 8}));
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_TRUE(torch::equal(out[c].narrow(0, 0, 4).narrow(1, 4, 4), img[0].narrow(0, 0, 4).narrow(1, 4, 4)));
    EXPECT_TRUE(torch::equal(out[c].narrow(0, 4, 4).narrow(1, 0, 4), img[0].narrow(0, 4, 4).narrow(1, 0, 4)));
  }
  EXPECT_EQ(out[0][0][0].item<int>(), 28);  // patch 0 missing
  EXPECT_EQ(out[2][7][7].item<int>(), 64);  // patch 3 missing
}

TEST(Overlay, ColormapEndsAndUpscale) {
  auto v = torch::tensor({0.0, 1.0}, torch::kFloat64).view({1, 2});
  auto c = colormap(v);
  EXPECT_EQ(c[0][0][0].item<int>(), 0);
  EXPECT_EQ(c[2][0][0].item<int>(), 4);
  EXPECT_EQ(c[0][0][1].item<int>(), 252);
  EXPECT_EQ(c[2][0][1].item<int>(), 164);
  auto u = upscale(torch::arange(4, torch::kUInt8).view({1, 2, 2}), 3);
  EXPECT_EQ(u.sizes(), (std::vector<int64_t>{1, 6, 6}));
  EXPECT_EQ(u[0][5][5].item<int>(), 3);
  EXPECT_EQ(u[0][2][3].item<int>(), 1);
}

TEST(CliRender, BufferRenderWritesThePartialImages) {
  TempDir dir;
  TokenBuffer buf(1, 8, 4);
  auto images = torch::randint(0, 256, {3, 1, 8, 8}, torch::kInt64).to(torch::kUInt8);
  buf.add(images, torch::tensor({7, 8, 9}), 2, torch::tensor({{0, 3}, {1, -1}, {2, 3}}));
  buf.save(dir / "buffer.safetensors");
  auto r = test::run_command(cts_bin() + " buffer render " + (dir / "buffer.safetensors").string() + " --out " + (dir / "png").string() + " --scale 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto png = read_image(dir / "png" / "000001_task2_class8.png", 3);  // keeps patch 1 only
  ASSERT_EQ(png.sizes(), (std::vector<int64_t>{3, 16, 16}));
  auto expect = upscale(kept_patches_image(images[1], torch::tensor({1}), 4), 2);
  EXPECT_TRUE(torch::equal(png, expect));
  EXPECT_TRUE(std::filesystem::exists(dir / "png" / "grid.png"));
  EXPECT_TRUE(std::filesystem::exists(dir / "png" / "000002_task2_class9.png"));

  auto bad = test::run_command(cts_bin() + " buffer render " + (dir / "missing.safetensors").string() + " --out " + (dir / "x").string());
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("missing.safetensors"), std::string::npos) << bad.output;
}

TEST(CliExplain, WritesFigureAndScores) {
  TempDir dir;
  auto cfg = vit_preset("vit_nano_patch4_28");
  VisionTransformer m(cfg, 1);
  save_vit_weights(m, dir / "w.safetensors");
  const std::string base = cts_bin() + " explain --weights " + (dir / "w.safetensors").string();
  auto r = test::run_command(base + " --dataset synthetic --index 5 --token-fraction 0.2 --methods rollout,gradlrp,atman,random --out " +
                             (dir / "fig.png").string() + " --scores " + (dir / "s.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto fig = read_image(dir / "fig.png", 3);
  EXPECT_GT(fig.size(1), 4 * 112);  // four method rows of 112 px cells
  auto j = nlohmann::json::parse(test::read_text(dir / "s.json"));
  EXPECT_EQ(j["kept_tokens"].get<int>(), 10);  // round(0.2 * 49)
  EXPECT_EQ(j["target_source"], "label");
  for (const char* name : {"rollout", "gradlrp", "atman", "random"}) {
    ASSERT_TRUE(j["methods"].contains(name)) << name;
    auto rel = j["methods"][name]["relevance"].get<std::vector<double>>();
    auto kept = j["methods"][name]["kept"].get<std::vector<int64_t>>();
    ASSERT_EQ(rel.size(), 49u);
    ASSERT_EQ(kept.size(), 10u);
    // The kept tokens are the 10 highest scores.
    std::vector<double> sorted = rel;
    std::sort(sorted.begin(), sorted.end(), std::greater<double>());
    for (auto k : kept) EXPECT_GE(rel[size_t(k)], sorted[9]) << name;
  }

  // An image file instead of a dataset index.
  write_png(dir / "img.png", torch::randint(0, 256, {1, 28, 28}, torch::kInt64).to(torch::kUInt8));
  auto ri = test::run_command(base + " --image " + (dir / "img.png").string() + " --methods gradcam --scores " + (dir / "t.json").string());
  ASSERT_EQ(ri.exit_code, 0) << ri.output;
  EXPECT_EQ(nlohmann::json::parse(test::read_text(dir / "t.json"))["target_source"], "predicted");

  for (const std::string& args : {std::string(" --dataset synthetic --index 5 --methods saliency --out x.png"),
                                  std::string(" --dataset synthetic --index 999999 --out x.png"),
                                  std::string(" --image /nonexistent.png --out x.png"),
                                  std::string(" --dataset synthetic --index 1 --token-fraction 1.5 --out x.png")}) {
    auto b = test::run_command(base + args);
    EXPECT_EQ(b.exit_code, 2) << args << "\n" << b.output;
  }
  auto nw = test::run_command(cts_bin() + " explain --weights /nonexistent.safetensors --dataset synthetic --index 1 --out x.png");
  EXPECT_EQ(nw.exit_code, 2) << nw.output;
  EXPECT_NE(nw.output.find("nonexistent.safetensors"), std::string::npos);
}
