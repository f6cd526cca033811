// Token buffer: exact byte accounting, rebuilding partial images, varying token counts,
// payloads, file round trip (also of files written before payloads) and corrupt files;
// selection budgets and top-k.
#include <torch/torch.h>

#include "cts/attribution/registry.hpp"
#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/memory/selection.hpp"
#include "cts/memory/token_buffer.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;

TEST(TokenBuffer, ByteAccountingIsExact) {
  TokenBuffer b(1, 28, 4);  // 49 tokens of 16 bytes
  auto images = torch::randint(0, 256, {3, 1, 28, 28}, torch::kInt64).to(torch::kUInt8);
  b.add(images, torch::tensor({4, 4, 7}, torch::kInt64), 0, torch::tensor({{1, 2, 3, 4, 5}, {0, 9, 10, 11, 48}, {7, 8, 20, -1, -1}}, torch::kInt64));
  EXPECT_EQ(b.size(), 3);
  EXPECT_EQ(b.tokens(), 13);
  // 13 tokens x (16 pixel bytes + 2 position bytes) + 3 samples x (2 count + 4 label + 2 task)
  EXPECT_EQ(b.bytes(), 13 * 18 + 3 * 8);
  TempDir dir;
  b.save(dir / "buffer.safetensors");
  const auto header = read_safetensors_header(dir / "buffer.safetensors");
  EXPECT_EQ(int64_t(header.data_bytes), b.bytes());  // bytes() is the file's tensor data, nothing else
  // With weights: 4 more bytes per sample.
  TokenBuffer w(1, 28, 4);
  w.add(images, torch::tensor({1, 2, 3}, torch::kInt64), 1, torch::tensor({{1}, {2}, {3}}, torch::kInt64), torch::ones({3}));
  EXPECT_EQ(w.bytes(), 3 * 18 + 3 * 12);
}

// Fair bytes: a sample that keeps every token (a coreset's whole image) stores no positions;
// the file holds the positions of the partial samples only, and loads back to the same buffer.
TEST(TokenBuffer, WholeSamplesStoreNoPositions) {
  TokenBuffer b(1, 8, 4);  // 4 tokens of 16 bytes
  auto images = torch::randint(0, 256, {3, 1, 8, 8}, torch::kInt64).to(torch::kUInt8);
  b.add(images, torch::tensor({1, 2, 3}, torch::kInt64), 0, torch::tensor({{3, 1, 0, 2}, {1, 2, -1, -1}, {0, 1, 2, 3}}, torch::kInt64));
  // 10 tokens x 16 + 2 positions x 2 (sample 1 only) + 3 samples x 8.
  EXPECT_EQ(b.bytes(), 10 * 16 + 2 * 2 + 3 * 8);
  EXPECT_TRUE(torch::equal(b.stored_positions(), torch::tensor({1, 2}, torch::kInt64)));
  TempDir dir;
  b.save(dir / "b.safetensors");
  EXPECT_EQ(int64_t(read_safetensors_header(dir / "b.safetensors").data_bytes), b.bytes());
  auto f = load_safetensors(dir / "b.safetensors");
  EXPECT_EQ(f.at("positions").numel(), 2);
  EXPECT_EQ(f.meta("format"), "cts-token-buffer-v2");
  auto c = TokenBuffer::load(dir / "b.safetensors");
  EXPECT_TRUE(torch::equal(c.positions(), torch::tensor({0, 1, 2, 3, 1, 2, 0, 1, 2, 3}, torch::kInt64)));
  EXPECT_EQ(c.bytes(), b.bytes());
  const auto all = torch::arange(3, torch::kInt64);
  EXPECT_TRUE(torch::equal(c.gather(all, true, false).images, b.gather(all, true, false).images));
  EXPECT_TRUE(torch::equal(c.gather(all, true, false).images[0], images[0]));  // whole
  // A v1 file holds every token's position, whole samples too: it loads the same.
  save_safetensors(dir / "v1.safetensors",
                   {{"patches", b.patches(), ""},
                    {"positions", b.positions(), "U16"},
                    {"counts", torch::tensor({4, 2, 4}, torch::kInt64), "U16"},
                    {"labels", torch::tensor({1, 2, 3}, torch::kInt32), ""},
                    {"tasks", torch::tensor({0, 0, 0}, torch::kInt64), "U16"}},
                   {{"format", "cts-token-buffer-v1"}, {"patch_size", "4"}, {"image_size", "8"}, {"channels", "1"}, {"num_tokens", "4"}});
  auto v1 = TokenBuffer::load(dir / "v1.safetensors");
  EXPECT_TRUE(torch::equal(v1.positions(), c.positions()));
  EXPECT_EQ(v1.bytes(), b.bytes());  // what the memory needs, not how the old file spelled it
  // Any other number of positions is an error naming both accepted lengths.
  save_safetensors(dir / "bad.safetensors",
                   {{"patches", b.patches(), ""},
                    {"positions", torch::tensor({1, 2, 3}, torch::kInt64), "U16"},
                    {"counts", torch::tensor({4, 2, 4}, torch::kInt64), "U16"},
                    {"labels", torch::tensor({1, 2, 3}, torch::kInt32), ""},
                    {"tasks", torch::tensor({0, 0, 0}, torch::kInt64), "U16"}},
                   {{"patch_size", "4"}, {"image_size", "8"}, {"channels", "1"}, {"num_tokens", "4"}});
  try {
    TokenBuffer::load(dir / "bad.safetensors");
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("positions must be [10] (every token) or [2]"), std::string::npos) << e.what();
  }
}

TEST(TokenBuffer, GatherRebuildsKeptPatchesOnly) {
  TokenBuffer b(3, 8, 4);  // 4 tokens per image
  auto images = torch::randint(1, 256, {2, 3, 8, 8}, torch::kInt64).to(torch::kUInt8);
  b.add(images, torch::tensor({0, 1}, torch::kInt64), 2, torch::tensor({{3, 0}, {2, -1}}, torch::kInt64));
  auto batch = b.gather(torch::tensor({1, 0}, torch::kInt64), true, true);
  // Sample 1 kept token 2 only: bottom-left 4x4 block.
  EXPECT_TRUE(torch::equal(batch.images[0].narrow(1, 4, 4).narrow(2, 0, 4), images[1].narrow(1, 4, 4).narrow(2, 0, 4)));
  EXPECT_EQ(batch.images[0].narrow(1, 0, 4).sum().item<int64_t>(), 0);
  EXPECT_EQ(batch.images[0].narrow(1, 4, 4).narrow(2, 4, 4).sum().item<int64_t>(), 0);
  // Sample 0 kept tokens 0 and 3 (stored ascending).
  EXPECT_TRUE(torch::equal(batch.positions, torch::tensor({{2, -1}, {0, 3}}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(batch.patches[1][1], images[0].narrow(1, 4, 4).narrow(2, 4, 4)));
  EXPECT_EQ(batch.patches[0][1].sum().item<int64_t>(), 0);  // padding
  EXPECT_TRUE(torch::equal(batch.labels, torch::tensor({1, 0}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(batch.tasks, torch::tensor({2, 2}, torch::kInt64)));
}

TEST(TokenBuffer, RetainAndKeepFirstPerClassKeepOrderTokensAndBytes) {
  TokenBuffer b(1, 8, 4);  // 4 tokens of 16 pixel bytes
  auto images = torch::randint(1, 256, {5, 1, 8, 8}, torch::kInt64).to(torch::kUInt8);
  const auto positions = torch::tensor({{0, 1}, {2, -1}, {3, -1}, {0, 2}, {1, 3}}, torch::kInt64);
  b.add(images.narrow(0, 0, 3), torch::tensor({3, 5, 3}, torch::kInt64), 0, positions.narrow(0, 0, 3), torch::tensor({1.f, 2.f, 3.f}));
  b.add(images.narrow(0, 3, 2), torch::tensor({3, 5}, torch::kInt64), 1, positions.narrow(0, 3, 2), torch::tensor({4.f, 5.f}));
  const auto all = b.gather(torch::arange(5, torch::kInt64), true, true);
  // The first 2 of class 3 (samples 0, 2) and of class 5 (1, 4): sample 3 goes.
  EXPECT_EQ(b.keep_first_per_class(2), 1);
  ASSERT_EQ(b.size(), 4);
  EXPECT_EQ(b.tokens(), 2 + 1 + 1 + 2);
  EXPECT_EQ(b.bytes(), 6 * 18 + 4 * 12);  // tokens x (16 + 2) + samples x (count 2 + label 4 + task 2 + weight 4)
  EXPECT_TRUE(torch::equal(b.labels(), torch::tensor({3, 5, 3, 5}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.tasks(), torch::tensor({0, 0, 0, 1}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.weights(), torch::tensor({1.f, 2.f, 3.f, 5.f})));
  const auto kept = b.gather(torch::arange(4, torch::kInt64), true, true);
  const auto was = torch::tensor({0, 1, 2, 4}, torch::kInt64);
  EXPECT_TRUE(torch::equal(kept.images, all.images.index_select(0, was)));
  EXPECT_TRUE(torch::equal(kept.positions, all.positions.index_select(0, was)));
  // One of each: 2 removed; a second call removes nothing; the file round trip agrees.
  EXPECT_EQ(b.keep_first_per_class(1), 2);
  EXPECT_EQ(b.keep_first_per_class(1), 0);
  EXPECT_TRUE(torch::equal(b.labels(), torch::tensor({3, 5}, torch::kInt64)));
  TempDir dir;
  b.save(dir / "b.safetensors");
  auto c = TokenBuffer::load(dir / "b.safetensors");
  EXPECT_EQ(c.bytes(), 3 * 18 + 2 * 12);
  EXPECT_TRUE(torch::equal(c.gather(torch::arange(2, torch::kInt64), true, false).images, all.images.index_select(0, torch::tensor({0, 1}))));
  // Indices must be ascending and in range; retaining nothing empties the buffer.
  EXPECT_THROW(b.retain(torch::tensor({1, 0}, torch::kInt64)), c10::Error);
  EXPECT_THROW(b.retain(torch::tensor({2}, torch::kInt64)), c10::Error);
  b.retain(torch::zeros({0}, torch::kInt64));
  EXPECT_EQ(b.size(), 0);
  EXPECT_EQ(b.bytes(), 0);
}

TEST(TokenBuffer, SaveLoadRoundTripAndCorruptFiles) {
  TempDir dir;
  TokenBuffer b(1, 8, 4);
  b.add(torch::randint(0, 256, {4, 1, 8, 8}, torch::kInt64).to(torch::kUInt8), torch::tensor({3, 3, 5, 5}, torch::kInt64), 1,
        torch::tensor({{0, 1}, {2, 3}, {1, -1}, {0, 3}}, torch::kInt64));
  b.metadata()["strategy"] = "core-tokenset";
  b.save(dir / "b.safetensors");
  auto c = TokenBuffer::load(dir / "b.safetensors");
  EXPECT_EQ(c.size(), 4);
  EXPECT_EQ(c.bytes(), b.bytes());
  EXPECT_TRUE(torch::equal(c.patches(), b.patches()));
  EXPECT_TRUE(torch::equal(c.positions(), b.positions()));
  EXPECT_EQ(c.metadata().at("strategy"), "core-tokenset");
  auto all = torch::arange(4, torch::kInt64);
  EXPECT_TRUE(torch::equal(c.gather(all, true, false).images, b.gather(all, true, false).images));

  // counts that do not add up to the stored patches
  auto f = load_safetensors(dir / "b.safetensors");
  std::vector<SafetensorsTensor> t;
  for (const auto& e : f.entries) t.push_back({e.name, e.name == "counts" ? torch::tensor({2, 2, 2, 2}, torch::kInt64) : f.at(e.name), e.dtype});
  save_safetensors(dir / "bad.safetensors", t, f.metadata);
  try {
    TokenBuffer::load(dir / "bad.safetensors");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("counts sum to 8 but there are 7 patches"), std::string::npos) << e.what();
  }
  // positions beyond the image
  t.clear();
  for (const auto& e : f.entries) t.push_back({e.name, e.name == "positions" ? f.at(e.name) + 10 : f.at(e.name), e.dtype});
  save_safetensors(dir / "bad2.safetensors", t, f.metadata);
  EXPECT_THROW(TokenBuffer::load(dir / "bad2.safetensors"), InputError);
  // missing metadata
  save_safetensors(dir / "bad3.safetensors", t, {});
  EXPECT_THROW(TokenBuffer::load(dir / "bad3.safetensors"), InputError);
}

TEST(Payload, SelectAndConcatByHand) {
  // Three samples: [7, 8], [], [9, 10, 11].
  Payload p{torch::tensor({7, 8, 9, 10, 11}, torch::kInt32), torch::tensor({2, 0, 3}, torch::kInt64)};
  auto q = p.select(torch::tensor({2, 0, 1, 2}, torch::kInt64));
  EXPECT_TRUE(torch::equal(q.lengths, torch::tensor({3, 2, 0, 3}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(q.values, torch::tensor({9, 10, 11, 7, 8, 9, 10, 11}, torch::kInt32)));
  EXPECT_TRUE(torch::equal(q.sample(1), torch::tensor({7, 8}, torch::kInt32)));
  EXPECT_EQ(q.sample(2).numel(), 0);
  auto r = Payload::concat({p, {}, q});
  EXPECT_EQ(r.size(), 7);
  EXPECT_EQ(r.values.size(0), 13);
  EXPECT_TRUE(Payload{}.select(torch::tensor({0}, torch::kInt64)).empty());
}

TEST(TokenBuffer, PayloadsTravelWithTheirSamplesAndCountInBytes) {
  TokenBuffer b(1, 8, 4);  // 4 tokens of 16 bytes
  auto images = torch::randint(0, 256, {3, 1, 8, 8}, torch::kInt64).to(torch::kUInt8);
  Payload p{torch::tensor({1, 2, 3, 4, 5, 6}, torch::kInt32), torch::tensor({1, 2, 3}, torch::kInt64)};
  b.add(images, torch::tensor({0, 1, 2}, torch::kInt64), 0, torch::tensor({{0}, {1}, {2}}, torch::kInt64), {}, p);
  Payload p2{torch::tensor({9}, torch::kInt32), torch::tensor({1}, torch::kInt64)};
  b.add(images.narrow(0, 0, 1), torch::tensor({3}, torch::kInt64), 1, torch::tensor({{3}}, torch::kInt64), {}, p2);
  ASSERT_TRUE(b.has_payload());
  // 4 tokens x 18 + 4 samples x 8, plus 7 payload values x 4 bytes and 4 lengths x 2 bytes.
  EXPECT_EQ(b.bytes(), 4 * 18 + 4 * 8 + 7 * 4 + 4 * 2);
  auto g = b.gather(torch::tensor({3, 1}, torch::kInt64), false, true);
  EXPECT_TRUE(torch::equal(g.payload.values, torch::tensor({9, 2, 3}, torch::kInt32)));
  EXPECT_TRUE(torch::equal(g.payload.lengths, torch::tensor({1, 2}, torch::kInt64)));
  TempDir dir;
  b.save(dir / "p.safetensors");
  EXPECT_EQ(int64_t(read_safetensors_header(dir / "p.safetensors").data_bytes), b.bytes());
  auto back = TokenBuffer::load(dir / "p.safetensors");
  EXPECT_TRUE(torch::equal(back.payload().values, b.payload().values));
  EXPECT_TRUE(torch::equal(back.payload().lengths, b.payload().lengths));
  // Mixing samples with and without payload in one buffer is refused.
  EXPECT_THROW(b.add(images.narrow(0, 0, 1), torch::tensor({3}, torch::kInt64), 1, torch::tensor({{3}}, torch::kInt64)), c10::Error);
  // A file with only one of the two payload tensors is refused, naming them.
  auto f = load_safetensors(dir / "p.safetensors");
  std::vector<SafetensorsTensor> t;
  for (const auto& e : f.entries) {
    const bool u16 = e.name == "positions" || e.name == "counts" || e.name == "tasks";
    if (e.name != "payload_lengths") t.push_back({e.name, f.at(e.name), u16 ? "U16" : ""});
  }
  save_safetensors(dir / "half.safetensors", t, f.metadata);
  try {
    TokenBuffer::load(dir / "half.safetensors");
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("payload_lengths"), std::string::npos) << e.what();
  }
}

// A buffer file as cts wrote it before payloads existed: exactly the five tensors of format
// cts-token-buffer-v1, written here by hand.
TEST(TokenBuffer, FilesWrittenBeforePayloadsStillLoad) {
  TempDir dir;
  auto patches = torch::arange(2 * 16, torch::kInt64).to(torch::kUInt8).view({2, 1, 4, 4});
  save_safetensors(dir / "v1.safetensors",
                   {{"patches", patches, ""},
                    {"positions", torch::tensor({3, 0}, torch::kInt64), "U16"},
                    {"counts", torch::tensor({1, 1}, torch::kInt64), "U16"},
                    {"labels", torch::tensor({5, 6}, torch::kInt32), ""},
                    {"tasks", torch::tensor({0, 1}, torch::kInt64), "U16"}},
                   {{"format", "cts-token-buffer-v1"}, {"patch_size", "4"}, {"image_size", "8"}, {"channels", "1"}, {"num_tokens", "4"}});
  auto b = TokenBuffer::load(dir / "v1.safetensors");
  EXPECT_EQ(b.size(), 2);
  EXPECT_FALSE(b.has_payload());
  EXPECT_FALSE(b.has_weights());
  EXPECT_EQ(b.bytes(), 2 * 18 + 2 * 8);
  auto g = b.gather(torch::tensor({0}, torch::kInt64), true, false);
  EXPECT_TRUE(torch::equal(g.images[0][0].narrow(0, 4, 4).narrow(1, 4, 4), patches[0][0]));  // token 3: bottom right
  EXPECT_TRUE(g.payload.empty());
}

TEST(Selection, ClassBudgets) {
  EXPECT_EQ(class_budget(0.1, 6000), 600);  // not 601 through float error
  EXPECT_EQ(class_budget(0.1, 6001), 601);
  EXPECT_EQ(class_budget(0.01, 50), 1);     // ceil(0.5)
  EXPECT_EQ(class_budget(0.5, 1), 1);
  EXPECT_EQ(class_budget(1.0, 7), 7);
  EXPECT_EQ(class_budget(0.3, 0), 0);
  // Uneven classes: budgets are per class and sum as computed.
  int64_t total = 0;
  for (int64_t n : {100, 33, 7, 1}) total += class_budget(0.1, n);
  EXPECT_EQ(total, 10 + 4 + 1 + 1);
}

TEST(Selection, TopTokensAreSortedAndTiesGoLow) {
  auto rel = torch::tensor({{0.1, 0.9, 0.5, 0.9}, {1.0, 1.0, 1.0, 1.0}});
  EXPECT_TRUE(torch::equal(top_tokens(rel, 2), torch::tensor({{1, 3}, {0, 1}}, torch::kInt64)));
  EXPECT_THROW(top_tokens(rel, 5), c10::Error);
  EXPECT_THROW(top_tokens(torch::tensor({{NAN, 1.0}}), 1), c10::Error);
}

TEST(Selection, TopTokensWithACountPerSampleArePaddedLikeTheBuffer) {
  // Hand-derived: row 0 keeps its 3 best (0.9 at 1 and 3, then 0.5 at 2), row 1 its best one
  // (index 2), row 2 all four (the ties go low, order irrelevant once all are kept).
  auto rel = torch::tensor({{0.1, 0.9, 0.5, 0.9}, {0.2, 0.1, 0.8, 0.3}, {1.0, 1.0, 1.0, 1.0}});
  auto pos = top_tokens(rel, torch::tensor({3, 1, 4}, torch::kInt64));
  EXPECT_TRUE(torch::equal(pos, torch::tensor({{1, 2, 3, -1}, {2, -1, -1, -1}, {0, 1, 2, 3}}, torch::kInt64))) << pos;
  // Equal counts give exactly the fixed-k result, with and without tie keys.
  auto keys = torch::tensor({{0.4, 0.3, 0.2, 0.1}, {0.1, 0.2, 0.3, 0.4}, {0.9, 0.1, 0.5, 0.2}});
  EXPECT_TRUE(torch::equal(top_tokens(rel, torch::full({3}, 2, torch::kInt64), keys), top_tokens(rel, 2, keys)));
  EXPECT_TRUE(torch::equal(top_tokens(rel, torch::full({3}, 2, torch::kInt64), keys)[2], torch::tensor({1, 3}, torch::kInt64)));
  EXPECT_THROW(top_tokens(rel, torch::tensor({0, 1, 2}, torch::kInt64)), c10::Error);
  EXPECT_THROW(top_tokens(rel, torch::tensor({1, 5, 2}, torch::kInt64)), c10::Error);
  EXPECT_THROW(top_tokens(rel, torch::tensor({1, 2}, torch::kInt64)), c10::Error);
}

TEST(Selection, RandomTokensAreBatchInvariantPermutations) {
  auto sel = make_token_selector("random", TokenSelectorOptions{});
  VisionTransformer m(vit_preset("vit_nano_patch4_28"));
  auto imgs = torch::zeros({3, 1, 28, 28}, torch::kUInt8);
  auto r1 = sel->relevance(m, imgs, torch::zeros({3}, torch::kInt64), torch::tensor({10, 11, 12}, torch::kInt64));
  auto r2 = sel->relevance(m, imgs.narrow(0, 0, 1), torch::zeros({1}, torch::kInt64), torch::tensor({11}, torch::kInt64));
  EXPECT_TRUE(torch::equal(r1[1], r2[0]));
  EXPECT_FALSE(torch::equal(r1[0], r1[1]));
  // Over many samples every token is chosen about equally often.
  auto many = sel->relevance(m, torch::zeros({2000, 1, 28, 28}, torch::kUInt8), torch::zeros({2000}, torch::kInt64), torch::arange(2000, torch::kInt64));
  auto counts = torch::bincount(top_tokens(many, 5).flatten(), {}, 49).to(torch::kFloat64);
  EXPECT_NEAR(counts.mean().item<double>(), 2000.0 * 5 / 49, 1e-9);
  EXPECT_LT((counts - counts.mean()).abs().max().item<double>(), 80);  // ~204 expected, sd ~14
}

// tools/mask_probe.py on buffers written here: a planted pattern (class 0 keeps tokens 0-4,
// class 1 tokens 20-24, each plus 2 random others) must be read from the masks alone, both the
// label and replay-vs-new; uniformly random masks must stay near chance (the control).
TEST(PythonTools, MaskProbeFindsPlantedPatternsAndNotRandomOnes) {
  TempDir dir;
  auto gen = make_generator(9, "mask_probe_test");
  const int64_t n = 400, T = 49;
  auto images = torch::zeros({n, 1, 28, 28}, torch::kUInt8);
  auto labels = torch::arange(n, torch::kInt64).remainder(2);
  auto planted = torch::empty({n, 7}, torch::kInt64), random = torch::empty({n, 7}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t base = labels[i].item<int64_t>() == 0 ? 0 : 20;
    auto others = torch::randperm(T - 5, gen, torch::kInt64);  // two of the tokens outside the block
    std::vector<int64_t> row;
    for (int64_t t = 0; t < 5; ++t) row.push_back(base + t);
    for (int64_t j = 0, added = 0; added < 2; ++j) {
      int64_t t = others[j].item<int64_t>();
      t = t < base ? t : t + 5;
      row.push_back(t), ++added;
    }
    planted[i] = torch::tensor(row, torch::kInt64);
    random[i] = torch::randperm(T, gen, torch::kInt64).narrow(0, 0, 7);
  }
  TokenBuffer a(1, 28, 4), b(1, 28, 4);
  a.add(images, labels, 0, planted);
  b.add(images, labels, 0, random);
  a.save(dir / "planted.safetensors");
  b.save(dir / "random.safetensors");
  auto r = test::run_command(std::string(CTS_PYTHON) + " " + test::source_dir() + "/tools/mask_probe.py " + (dir / "planted.safetensors").string() +
                             " " + (dir / "random.safetensors").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto number_after = [&](const std::string& line, const std::string& key) {
    const auto p = line.find(key);
    EXPECT_NE(p, std::string::npos) << line;
    return std::stod(line.substr(p + key.size()));
  };
  std::istringstream lines(r.output);
  std::string planted_line, random_line;
  std::getline(lines, planted_line);
  std::getline(lines, random_line);
  EXPECT_NE(planted_line.find("400 samples, 7.0 of 49 tokens"), std::string::npos) << planted_line;
  EXPECT_GT(number_after(planted_line, "mask->label "), 99.0) << planted_line;
  EXPECT_GT(number_after(planted_line, "mask->replayed-vs-new "), 90.0) << planted_line;
  EXPECT_LT(number_after(random_line, "mask->label "), 65.0) << random_line;  // chance 50 %, 120 held-out samples
  EXPECT_LT(number_after(random_line, "mask->replayed-vs-new "), 62.0) << random_line;
}

}  // namespace
}  // namespace cts
