// The paper's ImageNet-100 config runs end to end on a tiny generated ImageFolder (JPEG files in
// the ImageNet layout, a class-list file in the ImageNet-100 format, timm-named weights with a
// 1000-class head); the shipped experiment scripts name only valid keys and methods.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cts/config/config.hpp"
#include "cts/data/image_codec.hpp"
#include "cts/models/vit.hpp"
#include "cts/core/console.hpp"
#include "cts/train/loop.hpp"
#include "test_util.hpp"

using namespace cts;
using test::TempDir;

TEST(PaperConfigs, ImageNet100PipelineOnATinyImageFolder) {
  TempDir dir;
  const std::vector<std::string> wnids = {"n01440764", "n01443537", "n01484850", "n01491361"};
  auto gen = at::detail::createCPUGenerator(1);
  for (size_t c = 0; c < wnids.size(); ++c) {
    for (const char* split : {"train", "val"}) {
      const int n = std::string(split) == "train" ? 8 : 3;
      for (int i = 0; i < n; ++i) {
        // A class-coloured image with noise, 40x36 px (resized and centre-cropped to 32).
        auto img = (torch::rand({3, 36, 40}, gen) * 60 + 40 * double(c + 1)).clamp(0, 255).to(torch::kUInt8);
        const auto path = dir / "imagenet" / split / wnids[c] / ("img_" + std::to_string(i) + ".JPEG");
        test::write_text(path, encode_jpeg(img, 90));
      }
    }
  }
  // An extra folder not in the class list must be ignored.
  test::write_text(dir / "imagenet" / "train" / "n09999999" / "x.JPEG", encode_jpeg(torch::zeros({3, 8, 8}, torch::kUInt8)));
  test::write_text(dir / "imagenet100.txt", "# ImageNet-100 (tiny)\nn01440764 tench\nn01443537 goldfish\nn01484850 great white shark\nn01491361\n");
  auto pre = vit_preset("vit_micro_patch4_32");
  pre.num_classes = 1000;
  VisionTransformer timm_like(pre, 3);
  save_vit_weights(timm_like, dir / "weights.safetensors");

  auto cfg = load_config(std::string(CTS_SOURCE_DIR) + "/configs/paper/imagenet100-vit-b16.yaml",
                         {"data.root=" + (dir / "imagenet").string(), "data.class_list=" + (dir / "imagenet100.txt").string(),
                          "data.tasks=2", "data.image_size=32", "data.workers=2", "model.preset=vit_micro_patch4_32",
                          "model.weights=" + (dir / "weights.safetensors").string(), "train.epochs=1", "train.batch_size=4",
                          "train.replay_batch_size=4", "train.warmup_steps=1", "memory.retention=0.25", "threads=1",
                          "output.progress=none"});
  EXPECT_EQ(cfg.memory.tokens, "gradlrp");
  Console::get().set_quiet(true);
  RunOptions o;
  o.out_dir = dir / "run";
  auto s = run_experiment(cfg, o);
  Console::get().set_quiet(false);
  ASSERT_TRUE(s.completed);
  auto m = nlohmann::json::parse(test::read_text(dir / "run" / "metrics.json"));
  EXPECT_EQ(m["num_tasks"], 2);
  EXPECT_EQ(m["tasks_done"], 2);
  EXPECT_EQ(m["memory"]["samples"].get<int64_t>(), 4 * 4);  // s = 0.5 of 8 per class
  EXPECT_NE(test::read_text(dir / "run" / "log.jsonl").find("head"), std::string::npos);  // the head re-creation is logged
}

// DyTox's CIFAR-100 B0 10-step config, at its full width (384, 12 heads, 5 SABs + TAB), on a
// tiny CIFAR-100 in the binary format (2 training and 1 test image of each of the 100 classes),
// 2 tasks of 1 epoch: the fixed herding memory of 2000 holds what exists (2 per class), the
// finetuning phase runs, the model grows by 384 + the classifier of 50 classes.
TEST(PaperConfigs, DyToxCifar100TenStepsOnATinyCifar100) {
  TempDir dir;
  auto gen = at::detail::createCPUGenerator(2);
  auto records = [&](int per_class) {
    std::string out;
    for (int i = 0; i < per_class; ++i)
      for (int c = 0; c < 100; ++c) {
        out += std::string{char(c / 5), char(c)};  // coarse, fine label
        auto px = (torch::rand({3072}, gen) * 50 + 2 * c).clamp(0, 255).to(torch::kUInt8);
        out += std::string(reinterpret_cast<const char*>(px.data_ptr<uint8_t>()), 3072);
      }
    return out;
  };
  test::write_text(dir / "cifar100" / "cifar-100-binary" / "train.bin", records(2));
  test::write_text(dir / "cifar100" / "cifar-100-binary" / "test.bin", records(1));
  auto cfg = load_config(std::string(CTS_SOURCE_DIR) + "/configs/paper/dytox-cifar100-10steps.yaml",
                         {"data.root=" + (dir / "cifar100").string(), "data.tasks=2", "train.epochs=1", "train.batch_size=50",
                          "train.replay_batch_size=25", "train.warmup_steps=1", "dytox.finetune_epochs=1", "threads=1", "device=cpu",
                          "output.progress=none"});
  EXPECT_EQ(cfg.model.learner, "dytox");
  EXPECT_EQ(cfg.memory.samples, 2000);
  Console::get().set_quiet(true);
  RunOptions o;
  o.out_dir = dir / "run";
  auto s = run_experiment(cfg, o);
  Console::get().set_quiet(false);
  ASSERT_TRUE(s.completed);
  auto m = nlohmann::json::parse(test::read_text(dir / "run" / "metrics.json"));
  EXPECT_EQ(m["tasks_done"], 2);
  EXPECT_EQ(m["memory"]["samples"].get<int64_t>(), 200);
  const auto p = m["parameters_per_task"].get<std::vector<int64_t>>();
  EXPECT_EQ(p[1] - p[0], 384 + 2 * 384 + 384 * 50 + 50);
  EXPECT_NE(test::read_text(dir / "run" / "log.jsonl").find("\"event\":\"finetune\""), std::string::npos);
}

// The pretraining config and the continual config that starts from its weights, on small
// generated data in their place (same keys otherwise: the halves, the weights path).
TEST(PaperConfigs, PretrainHalfAThenContinualHalfB) {
  TempDir dir;
  const std::string src = CTS_SOURCE_DIR;
  const std::vector<std::string> small = {"data.name=synthetic", "data.train_per_class=40", "data.test_per_class=10", "train.epochs=1",
                                          "train.batch_size=32", "threads=1", "output.progress=none"};
  auto pre = load_config(src + "/configs/pretrain/fmnist-half-a.yaml", small);
  EXPECT_EQ(pre.data.train_subset, "a");
  EXPECT_EQ(pre.data.tasks, 1);
  EXPECT_EQ(pre.memory.strategy, MemoryStrategy::None);
  Console::get().set_quiet(true);
  RunOptions o;
  o.out_dir = dir / "fmnist-half-a";
  ASSERT_TRUE(run_experiment(pre, o).completed);
  auto sets = small;
  sets.push_back("train.replay_batch_size=16");
  auto cont = load_config(src + "/configs/pretrained-fmnist-half-b.yaml", sets);
  EXPECT_EQ(cont.data.train_subset, "b");
  EXPECT_EQ(cont.data.subset_seed, pre.data.subset_seed);
  EXPECT_EQ(cont.data.subset_fraction, pre.data.subset_fraction);
  EXPECT_EQ(cont.model.weights, "runs/fmnist-half-a/model.safetensors");  // where the pretraining run writes
  cont.model.weights = (dir / "fmnist-half-a" / "model.safetensors").string();
  RunOptions c;
  c.out_dir = dir / "stream";
  ASSERT_TRUE(run_experiment(cont, c).completed);
  Console::get().set_quiet(false);
  auto m = nlohmann::json::parse(test::read_text(dir / "stream" / "metrics.json"));
  EXPECT_EQ(m["weights"]["train_subset"], "a");
  EXPECT_FALSE(m["weights"].value("overlaps_stream", false));
  EXPECT_EQ(m["memory"]["dataset_samples"].get<int64_t>(), 10 * 20);  // half B of 40 per class
}

TEST(PaperConfigs, ExperimentScriptsUseValidKeys) {
  // Every --grid / --set in the shipped scripts must be a key the config accepts with those values.
  for (const char* script : {"table1-fmnist.sh", "fill-modes-fmnist.sh", "dytox-fmnist.sh", "pretrained-fmnist.sh"}) {
    const auto text = test::read_text(std::string(CTS_SOURCE_DIR) + "/configs/paper/" + script);
    std::string joined;  // the script with line continuations joined and $R / $S expanded
    for (char c : text) joined += c == '\\' ? ' ' : c;
    size_t pos = 0;
    int axes = 0;
    while ((pos = joined.find("--grid ", pos)) != std::string::npos) {
      pos += 7;
      auto end = joined.find_first_of(" \n", pos);
      std::string spec = joined.substr(pos, end - pos);
      if (spec.find("$R_TOKENS") != std::string::npos) spec.replace(spec.find("$R_TOKENS"), 9, "0.8,0.6,0.4,0.2,0.1");
      if (spec.find("$R") != std::string::npos) spec.replace(spec.find("$R"), 2, "0.8,0.6,0.4,0.2,0.1,0.01");
      const auto eq = spec.find('=');
      ASSERT_NE(eq, std::string::npos) << spec;
      std::stringstream vs(spec.substr(eq + 1));
      for (std::string v; std::getline(vs, v, ',');) {
        EXPECT_NO_THROW(load_config(std::string(CTS_SOURCE_DIR) + "/configs/quickstart.yaml", {spec.substr(0, eq) + "=" + v}))
            << script << ": " << spec.substr(0, eq) << "=" << v;
      }
      ++axes;
    }
    EXPECT_GT(axes, 0) << script;
  }
}
