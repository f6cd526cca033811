// The vl-decoder learner (vision-language: ViT encoder + causal text decoder): the teacher-
// forcing layout and sequence log-likelihood by hand, causality (no position reads a later
// one) and image-key masking, generation against teacher forcing and against brute force
// (beam >= greedy; a beam as wide as the vocabulary finds the best 2-token sequence), the
// attribution scores' batch invariance, runs of both Sort-of-CLEVR sequences through the
// sequential loop with a core tokenset (buffer text, metrics, weights, vocabulary), the
// configuration errors, and an independent PyTorch reference of the VL relevance
// (tests/python/vl_reference.py).
#include <torch/torch.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cts/attribution/registry.hpp"
#include "cts/config/config.hpp"
#include "cts/core/console.hpp"
#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/task_split.hpp"
#include "cts/data/vl_dataset.hpp"
#include "cts/learners/registry.hpp"
#include "cts/learners/vl_decoder/vl_decoder.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/report/sweep.hpp"
#include "cts/train/loop.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;
constexpr int64_t kBos = Vocabulary::kBos, kEos = Vocabulary::kEos, kSep = Vocabulary::kSep, kPad = Vocabulary::kPad;

Payload payload_of(const std::vector<std::vector<int32_t>>& samples) {
  std::vector<int32_t> v;
  std::vector<int64_t> l;
  for (const auto& s : samples) {
    v.insert(v.end(), s.begin(), s.end());
    l.push_back(int64_t(s.size()));
  }
  return {torch::tensor(v, torch::kInt32), torch::tensor(l, torch::kInt64)};
}

TEST(VLDecoder, TeacherBatchLayout) {
  auto tb = teacher_batch(payload_of({{5, 6, kSep, 7, 8, kEos}, {9, kSep, 10, kEos}}), "test");
  ASSERT_EQ(tb.input.sizes(), (std::vector<int64_t>{2, 6}));
  const std::vector<int64_t> in0{kBos, 5, 6, kSep, 7, 8}, lab0{-1, -1, -1, 7, 8, kEos};
  const std::vector<int64_t> in1{kBos, 9, kSep, 10, kPad, kPad}, lab1{-1, -1, 10, kEos, -1, -1};
  for (int64_t j = 0; j < 6; ++j) {
    EXPECT_EQ(tb.input[0][j].item<int64_t>(), in0[size_t(j)]) << j;
    EXPECT_EQ(tb.labels[0][j].item<int64_t>(), lab0[size_t(j)]) << j;
    EXPECT_EQ(tb.input[1][j].item<int64_t>(), in1[size_t(j)]) << j;
    EXPECT_EQ(tb.labels[1][j].item<int64_t>(), lab1[size_t(j)]) << j;
  }
  test::expect_error("no sep", [] { teacher_batch(payload_of({{5, 6, 7}}), "batch X"); }, {"batch X", "<sep>"});
  test::expect_error("no target", [] { teacher_batch(payload_of({{5, kSep}}), "batch Y"); }, {"batch Y", "no target"});
}

TEST(VLDecoder, SequenceLogLikelihoodByHand) {
  // Position 0: uniform over 3 words, label 2: log 1/3. Position 1: softmax(log [1, 2, 1]) =
  // [1/4, 1/2, 1/4], label 1: log 1/2. Position 2: not labelled.
  auto logits = torch::stack({torch::zeros({3}), torch::tensor({1.0, 2.0, 1.0}).log(), torch::tensor({9.0, 0.0, 0.0})}).unsqueeze(0);
  auto ll = sequence_log_likelihood(logits, torch::tensor({{2, 1, -1}}, torch::kInt64));
  EXPECT_NEAR(ll.item<double>(), std::log(1.0 / 3.0) + std::log(0.5), 1e-6);
}

struct VLFixture {
  DatasetSplits data;
  TaskSplit split;
  ModelConfig model;
  LearnerSettings settings;
  explicit VLFixture(const std::string& task = "vqa", int64_t per_task = 8) {
    data = make_sort_of_clevr(task, 30, per_task, 4);
    split = make_task_split(data.train->num_classes(), data.train->num_classes(), ClassOrder{"natural", {}}, 0);
    model.learner = "vl-decoder";
    model.img_size = 30, model.patch_size = 6, model.in_chans = 3, model.embed_dim = 16, model.num_heads = 2, model.depth = 1;
    settings.vl.decoder_depth = 2;
    settings.vl.decoder_heads = 2;
    settings.vl.max_length = 4;
  }
  std::unique_ptr<Learner> learner(uint64_t seed = 3) {
    LearnerContext c{model, settings, data, split, "sort-of-clevr", torch::kCPU, seed};
    return make_learner(c);
  }
};

// Perturbs every parameter so that generations and scores are not those of an untrained model
// (whose outputs barely depend on the input).
void perturb(VLDecoder& m, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  torch::NoGradGuard ng;
  for (auto& [name, t] : m.trainable_parameters()) t.add_(torch::randn(t.sizes(), gen) * 0.3);
}

TEST(VLDecoder, NoPositionReadsALaterTokenAndMaskedImageKeysAreIgnored) {
  VLFixture f;
  auto l = f.learner();
  auto& m = dynamic_cast<VLDecoder&>(*l);
  perturb(m, 1);
  m.set_training(false);
  torch::NoGradGuard ng;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  const int64_t V = m.vocabulary().size();
  auto ids = torch::randint(5, V, {2, 7}, gen, torch::kInt64);
  auto image = torch::randn({2, 10, 16}, gen);
  auto out = m.decoder()->forward(ids, image, {});
  for (int64_t j = 0; j < 7; ++j) {  // change token j: positions < j unchanged, position j changed
    auto changed = ids.clone();
    changed.select(1, j).copy_((ids.select(1, j) - 5 + 1) % (V - 5) + 5);
    auto out2 = m.decoder()->forward(changed, image, {});
    if (j > 0) EXPECT_TRUE(torch::allclose(out.narrow(1, 0, j), out2.narrow(1, 0, j), 1e-6, 1e-6)) << "position < " << j << " read token " << j;
    EXPECT_FALSE(torch::allclose(out.narrow(1, j, 1), out2.narrow(1, j, 1), 1e-4, 1e-4)) << j;
  }
  // Image keys marked invalid (drop-fill padding) are never read.
  auto valid = torch::ones({2, 10}, torch::kBool);
  valid.narrow(1, 7, 3).fill_(false);
  auto img2 = image.clone();
  img2.narrow(1, 7, 3).normal_(0, 5, gen);
  EXPECT_TRUE(torch::allclose(m.decoder()->forward(ids, image, valid), m.decoder()->forward(ids, img2, valid), 1e-6, 1e-6));
  EXPECT_FALSE(torch::allclose(m.decoder()->forward(ids, image, {}), m.decoder()->forward(ids, img2, {}), 1e-4, 1e-4));
}

std::vector<std::vector<int64_t>> prefixes_of(const Dataset& d, int64_t n) {
  std::vector<std::vector<int64_t>> p;
  for (int64_t i = 0; i < n; ++i) p.push_back(split_vl_payload(d.payloads(torch::tensor({i})).sample(0), "t").prefix);
  return p;
}

// Greedy generation (incremental, per-sample lengths) scores its output as teacher forcing
// does; beam search never ends below greedy; a beam as wide as the vocabulary with at most 2
// tokens finds the best sequence of brute force.
TEST(VLDecoder, GenerationMatchesTeacherForcingAndBruteForce) {
  VLFixture f;
  auto l = f.learner();
  auto& m = dynamic_cast<VLDecoder&>(*l);
  perturb(m, 4);
  const int64_t n = 6, V = m.vocabulary().size();
  auto images = f.data.test->images(torch::arange(n));
  const auto prefixes = prefixes_of(*f.data.test, n);
  const auto greedy = m.generate(images, prefixes, 1, 4);
  const auto beam = m.generate(images, prefixes, 5, 4);
  std::vector<std::vector<int32_t>> seqs;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_FALSE(greedy[size_t(i)].ids.empty());
    EXPECT_GE(beam[size_t(i)].log_likelihood, greedy[size_t(i)].log_likelihood - 1e-5) << i;  // float order of two summations
    std::vector<int32_t> s(prefixes[size_t(i)].begin(), prefixes[size_t(i)].end());
    s.push_back(int32_t(kSep));
    for (int64_t id : greedy[size_t(i)].ids) s.push_back(int32_t(id));
    if (s.back() != kEos) s.push_back(int32_t(kEos));  // cut by the limit: teacher forcing adds <eos>, so compare those that ended
    seqs.push_back(s);
  }
  const auto ll = m.log_likelihood(images, payload_of(seqs));
  int64_t ended = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (greedy[size_t(i)].ids.back() != kEos) continue;
    ++ended;
    EXPECT_NEAR(ll[i].item<double>(), greedy[size_t(i)].log_likelihood, 1e-4) << i;
  }
  // ExplainTarget::Predicted explains the model's own greedy output.
  {
    SampleBatch b{images, f.data.test->labels().narrow(0, 0, n), torch::arange(n), f.data.test->payloads(torch::arange(n))};
    auto e = m.explained(b, ExplainTarget::Predicted);
    torch::NoGradGuard ng;
    m.set_training(false);
    auto score = e->score(m.encoder()->forward_features(m.encoder()->normalize(images)), {});
    for (int64_t i = 0; i < n; ++i)
      if (greedy[size_t(i)].ids.back() == kEos) EXPECT_NEAR(score[i].item<double>(), greedy[size_t(i)].log_likelihood, 1e-4) << i;
  }
  // Brute force over every sequence of at most 2 tokens (y1 = <eos>, or y1 y2 cut by the limit).
  m.set_training(false);
  torch::NoGradGuard ng;
  auto tokens = m.encoder()->forward_features(m.encoder()->normalize(images.narrow(0, 0, 1)));
  std::vector<int64_t> start{kBos};
  start.insert(start.end(), prefixes[0].begin(), prefixes[0].end());
  start.push_back(kSep);
  auto ids1 = torch::tensor(start, torch::kInt64).unsqueeze(0);
  auto lp1 = torch::log_softmax(m.decoder()->forward(ids1, tokens, {}).select(1, -1), -1).squeeze(0).to(torch::kFloat64);
  auto ids2 = torch::cat({ids1.expand({V, -1}), torch::arange(V, torch::kInt64).unsqueeze(1)}, 1);
  auto lp2 = torch::log_softmax(m.decoder()->forward(ids2, tokens.expand({V, -1, -1}), {}).select(1, -1), -1).to(torch::kFloat64);  // [V, V]
  double best = lp1[kEos].item<double>();
  for (int64_t a = 0; a < V; ++a)
    if (a != kEos) best = std::max(best, lp1[a].item<double>() + lp2[a].max().item<double>());
  const auto wide = m.generate(images.narrow(0, 0, 1), {prefixes[0]}, V, 2);
  EXPECT_NEAR(wide[0].log_likelihood, best, 1e-4);
  RecordProperty("greedy_ended", int(ended));
}

// Attribution through the decoder: each sample's relevance is the same alone and in a batch.
TEST(VLDecoder, AttributionIsBatchInvariant) {
  VLFixture f;
  auto l = f.learner();
  auto& m = dynamic_cast<VLDecoder&>(*l);
  perturb(m, 5);
  SelectionModeScope scope(m);
  SampleBatch b;
  b.ids = torch::arange(4);
  b.images = f.data.train->images(b.ids);
  b.labels = f.data.train->labels().index_select(0, b.ids);
  b.payload = f.data.train->payloads(b.ids);
  for (const std::string name : {"rollout", "gradcam", "chefer-generic", "gradlrp", "atman"}) {
    auto sel = make_token_selector(name, {});
    auto all = sel->relevance(*m.explained(b, ExplainTarget::Label), b.images, b.ids);
    ASSERT_EQ(all.sizes(), (std::vector<int64_t>{4, 25})) << name;
    EXPECT_GT(all.abs().sum().item<double>(), 0.0) << name;
    for (int64_t i = 0; i < 4; ++i) {
      SampleBatch one{b.images.narrow(0, i, 1), b.labels.narrow(0, i, 1), b.ids.narrow(0, i, 1), b.payload.select(torch::tensor({i}))};
      auto r = sel->relevance(*m.explained(one, ExplainTarget::Label), one.images, one.ids);
      EXPECT_TRUE(torch::allclose(r[0], all[i], 1e-4, 1e-5)) << name << " sample " << i << "\n" << r[0] << "\n" << all[i];
    }
  }
}

TEST(VLDecoder, CoresetRowsAreTheMeanOutputGradient) {
  VLFixture f;
  auto l = f.learner();
  auto& m = dynamic_cast<VLDecoder&>(*l);
  perturb(m, 6);
  auto rows = m.coreset_rows(*f.data.train, torch::arange(5), 2);
  ASSERT_EQ(rows.gradients.sizes(), (std::vector<int64_t>{5, m.vocabulary().size()}));
  ASSERT_EQ(rows.features.sizes(), (std::vector<int64_t>{5, 16}));
  // Each row is a mean of (softmax − onehot) vectors: it sums to 0, and equals the gradient
  // of the mean NLL with respect to the output bias (autograd, independently).
  EXPECT_LT(rows.gradients.sum(1).abs().max().item<double>(), 1e-5);
  m.set_training(false);
  auto tb = teacher_batch(f.data.train->payloads(torch::tensor({3})), "t");
  auto tokens = m.encoder()->forward_features(m.encoder()->normalize(f.data.train->images(torch::tensor({3}))));
  auto ll = sequence_log_likelihood(m.decoder()->forward(tb.input, tokens, {}), tb.labels);
  auto nll = -ll / tb.labels.ge(0).sum().to(torch::kFloat32);
  auto g = torch::autograd::grad({nll.sum()}, {m.decoder()->out_bias})[0];
  EXPECT_TRUE(torch::allclose(g, rows.gradients[3], 1e-5, 1e-6)) << g << rows.gradients[3];
}

TEST(VLDecoder, ConfigurationErrors) {
  VLFixture f;
  auto plain = std::make_shared<TensorDataset>("plain", torch::zeros({4, 3, 30, 30}, torch::kUInt8), torch::tensor({0, 1, 0, 1}), 2);
  VLFixture g;
  g.data = {plain, plain};
  g.split = make_task_split(2, 1, ClassOrder{"natural", {}}, 0);
  test::expect_error("no text", [&] { g.learner(); }, {"vl-decoder", "no text payload", "sort-of-clevr-vqa"});
  f.settings.vl.decoder_heads = 3;
  test::expect_error("heads", [&] { f.learner(); }, {"vl.decoder_dim = 16", "vl.decoder_heads = 3"});
  f.settings.vl.decoder_heads = 2;
  f.settings.vl.beam_size = 0;
  test::expect_error("beam", [&] { f.learner(); }, {"vl.beam_size = 0", ">= 1"});
}

// Both sequences through the sequential loop with a core tokenset: the buffer keeps each
// sample's text next to its tokens, the metrics matrices are the learner's, the weights carry
// the vocabulary and a second run resumes from them.
TEST(VLDecoder, SequencesRunWithACoreTokensetAndKeepTheirText) {
  TempDir dir;
  Console::get().set_quiet(true);
  for (const std::string task : {"vqa", "caption"}) {
    auto c = parse_config(fmt::format("seed: 1\nthreads: 1\ndata: {{name: sort-of-clevr-{}, tasks: {}, class_order: natural, image_size: 30, "
                                      "train_per_class: 40, test_per_class: 10}}\n"
                                      "model: {{learner: vl-decoder, img_size: 30, patch_size: 6, in_chans: 3, embed_dim: 16, depth: 1, num_heads: 2}}\n"
                                      "vl: {{decoder_depth: 1, decoder_heads: 2, max_length: {}}}\n"
                                      "train: {{epochs: 1, batch_size: 16, warmup_steps: 2, token_drop: auto}}\n"
                                      "memory: {{strategy: core-tokenset, retention: 0.1, sample_fraction: 0.25, token_fraction: 0.4, tokens: gradlrp}}\n"
                                      "output: {{progress: none}}\n",
                                      task, task == "vqa" ? 3 : 5, task == "vqa" ? 3 : 20),
                          "test");
    c.name = task;
    RunOptions o;
    o.out_dir = dir / task;
    ASSERT_TRUE(run_experiment(c, o).completed) << task;
    auto m = test::read_json(dir / task / "metrics.json");
    for (const std::string key : task == "vqa" ? std::vector<std::string>{"exact_match_matrix"} : std::vector<std::string>{"bleu4_matrix", "rouge_l_matrix"}) {
      ASSERT_TRUE(m.contains(key)) << m.dump();
      const auto& last = m[key].back();
      for (const auto& v : last) EXPECT_TRUE(v.is_number() && v.get<double>() >= 0.0 && v.get<double>() <= 1.0) << key << m.dump();
    }
    EXPECT_FALSE(m.contains("accuracy_matrix"));
    EXPECT_EQ(m["primary_metric"]["title"], task == "vqa" ? "VQA exact match" : "BLEU-4");
    // A sweep's table names the metric its averages are of.
    const auto cell = dir / ("sweep-" + task) / "strategy-core-tokenset" / "seed-0";
    std::filesystem::create_directories(cell.parent_path());
    std::filesystem::copy(dir / task, cell, std::filesystem::copy_options::recursive);
    const auto md = summarize_sweep(dir / ("sweep-" + task), {GridAxis{"memory.strategy", {"core-tokenset"}}}, {0});
    EXPECT_NE(md.find(task == "vqa" ? "final avg. VQA exact match (%)" : "final avg. BLEU-4 (%)"), std::string::npos) << md;
    auto buf = TokenBuffer::load(dir / task / "buffer.safetensors");
    ASSERT_TRUE(buf.has_payload());
    const int64_t per_task = 10;  // 25 % of 40 samples
    EXPECT_EQ(buf.size(), (task == "vqa" ? 3 : 5) * per_task);
    EXPECT_EQ(buf.counts().to(torch::kInt64).min().item<int64_t>(), 10);  // 40 % of 25 tokens
    EXPECT_EQ(buf.counts().to(torch::kInt64).max().item<int64_t>(), 10);
    auto vocab = Vocabulary::from_json(test::read_json(dir / task / "vocabulary.json"), "vocabulary.json");
    auto st = load_safetensors(dir / task / "model.safetensors");
    EXPECT_EQ(st.meta("cts.learner"), "vl-decoder");
    EXPECT_EQ(Vocabulary::from_json(nlohmann::json::parse(st.meta("cts.vocabulary")), "meta").size(), vocab.size());
    EXPECT_TRUE(st.tensors.count("decoder.embed.weight"));
    // Every stored text decodes to a question / prompt and a target of its task.
    for (int64_t i = 0; i < buf.size(); ++i) {
      auto s = split_vl_payload(buf.payload().sample(i), "buffer");
      const std::string prefix = vocab.decode(s.prefix);
      if (task == "caption") EXPECT_EQ(prefix, caption_prompt());
      else EXPECT_EQ(prefix.back(), '?') << prefix;
    }
  }
  Console::get().set_quiet(false);
}

TEST(PythonVLDecoder, RelevanceMatchesIndependentPyTorchReference) {
  ASSERT_TRUE(test::python_torch_available()) << "Debian's python3-torch is needed (scripts/install-deps installs it)";
  TempDir dir;
  VLFixture f;
  auto l = f.learner();
  auto& m = dynamic_cast<VLDecoder&>(*l);
  perturb(m, 7);
  m.save_weights(dir / "model.safetensors", {});
  SelectionModeScope scope(m);
  SampleBatch b;
  b.ids = torch::arange(3);
  b.images = f.data.train->images(b.ids);
  b.labels = f.data.train->labels().index_select(0, b.ids);
  b.payload = f.data.train->payloads(b.ids);
  const auto tb = teacher_batch(b.payload, "t");
  TokenSelectorOptions o;
  o.atman_factor = 0.1;
  o.atman_kappa = 0.5;
  std::vector<SafetensorsTensor> t = {{"images", m.encoder()->normalize(b.images), ""},
                                      {"input", tb.input, ""},
                                      {"labels", tb.labels, ""},
                                      {"log_likelihood", m.log_likelihood(b.images, b.payload), ""},
                                      {"atman_factor", torch::full({1}, o.atman_factor, torch::kFloat64), ""},
                                      {"atman_kappa", torch::full({1}, o.atman_kappa, torch::kFloat64), ""}};
  for (const std::string name : {"rollout", "gradcam", "chefer-generic", "gradlrp", "atman"}) {
    std::string key = "rel_" + name;
    std::replace(key.begin(), key.end(), '-', '_');
    t.push_back({key, make_token_selector(name, o)->relevance(*m.explained(b, ExplainTarget::Label), b.images, b.ids), ""});
  }
  save_safetensors(dir / "case.safetensors", t);
  auto r = test::run_python("vl_reference.py", (dir / "model.safetensors").string() + " " + (dir / "case.safetensors").string());
  std::cout << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace cts
