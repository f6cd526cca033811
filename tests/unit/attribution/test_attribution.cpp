// Attribution (token relevance) methods: the LRP rules on hand-derived cases, relevance
// conservation layer by layer, batch invariance, AtMan's batching, an independent Python
// reference for every method, and a sanity check on a model whose label is decided by one patch.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "cts/attribution/attention_record.hpp"
#include "cts/attribution/gradlrp.hpp"
#include "cts/attribution/lrp.hpp"
#include "cts/attribution/registry.hpp"
#include "cts/attribution/rollout.hpp"
#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/synthetic.hpp"
#include "cts/config/config.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/core/console.hpp"
#include "cts/train/optimizer.hpp"
#include "cts/train/loop.hpp"
#include "test_util.hpp"

using namespace cts;
using test::TempDir;

namespace {

// A random ViT with non-trivial norms and biases (timm init leaves them 1 / 0).
VisionTransformer perturbed_model(uint64_t seed) {
  VisionTransformer m(test::tiny_vit_config(), seed);
  torch::NoGradGuard ng;
  auto gen = at::detail::createCPUGenerator(seed + 100);
  for (auto& p : m->parameters()) p.add_(torch::randn(p.sizes(), gen) * 0.1);
  m->eval();
  return m;
}

torch::Tensor random_images(int64_t b, int64_t c, int64_t s, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randint(0, 256, {b, c, s, s}, gen, torch::kInt64).to(torch::kUInt8);
}

const std::vector<std::string> kMethods = {"rollout", "gradcam", "gradlrp", "chefer-generic", "atman"};

}  // namespace

// ---------------------------------------------------------------- LRP rules, by hand

TEST(LrpRules, LinearAlphaOneBetaZeroByHand) {
  // x = [2, -1], w = [[1, -3], [0.5, 2]], R = [1, 2].
  // Unit 0: positive parts x+w+ = 2*1, x-w- = (-1)(-3) = 3 -> Z = 5; R_x = [2/5, 3/5] * 1.
  // Unit 1: x+w+ = 2*0.5 = 1, x-w- = 0 (w = 2 > 0)      -> Z = 1; R_x = [1, 0] * 2.
  auto x = torch::tensor({2.0, -1.0}, torch::kFloat64).view({1, 2});
  auto w = torch::tensor({1.0, -3.0, 0.5, 2.0}, torch::kFloat64).view({2, 2});
  auto r = torch::tensor({1.0, 2.0}, torch::kFloat64).view({1, 2});
  auto rx = lrp_linear(x, w, r);
  EXPECT_NEAR(rx[0][0].item<double>(), 0.4 + 2.0, 1e-12);
  EXPECT_NEAR(rx[0][1].item<double>(), 0.6, 1e-12);
  EXPECT_NEAR(rx.sum().item<double>(), 3.0, 1e-12);
}

TEST(LrpRules, MatmulHalvesGradientTimesInput) {
  // Z = a b for 1x2 @ 2x1: a = [1, 2], b = [3, -1]^T -> Z = 1; R = 4, S = 4.
  // R_a = a * (S b^T) / 2 = [1*3*4, 2*(-1)*4] / 2 = [6, -4]; R_b = b * (a^T S) / 2 = [3*4, -1*8]/2 = [6, -4].
  auto a = torch::tensor({1.0, 2.0}, torch::kFloat64).view({1, 2});
  auto b = torch::tensor({3.0, -1.0}, torch::kFloat64).view({2, 1});
  auto r = torch::full({1, 1}, 4.0, torch::kFloat64);
  auto [ra, rb] = lrp_matmul(a, b, r);
  EXPECT_TRUE(torch::allclose(ra, torch::tensor({6.0, -4.0}, torch::kFloat64).view({1, 2})));
  EXPECT_TRUE(torch::allclose(rb, torch::tensor({6.0, -4.0}, torch::kFloat64).view({2, 1})));
  EXPECT_NEAR((ra.sum() + rb.sum()).item<double>(), 4.0, 1e-12);
}

TEST(LrpRules, AddSplitsConservativelyPerSample) {
  // Sample 0: a = [1, 3], b = [1, -1], R = [2, 2]: a*S = [1, 3], b*S = [1, -1]; sums 4 and 0
  // -> all of Σ R = 4 goes to a (rescaled by 4/4), none to b.
  // Sample 1: a = [2], b = [2], R = [6] -> 3 and 3.
  auto a = torch::tensor({1.0, 3.0, 2.0, 0.0}, torch::kFloat64).view({2, 2});
  auto b = torch::tensor({1.0, -1.0, 2.0, 0.0}, torch::kFloat64).view({2, 2});
  auto r = torch::tensor({2.0, 2.0, 6.0, 0.0}, torch::kFloat64).view({2, 2});
  auto [ra, rb] = lrp_add(a, b, r);
  EXPECT_TRUE(torch::allclose(ra[0], torch::tensor({1.0, 3.0}, torch::kFloat64)));
  EXPECT_NEAR(rb[0].abs().sum().item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(ra[1][0].item<double>(), 3.0, 1e-12);
  EXPECT_NEAR(rb[1][0].item<double>(), 3.0, 1e-12);
}

TEST(LrpRules, ZBetaRuleByHand) {
  // x = [0.5, -1] with bounds l = -1, h = 1; w = [2, -1]; Z = (x-l)w+ + (x-h)w- = 1.5*2 + (-2)(-1) = 5.
  // R = 10 -> R_x = [(1.5)*2*2, (-2)*(-1)*2] = [6, 4].
  auto x = torch::tensor({0.5, -1.0}, torch::kFloat64).view({1, 1, 2});
  auto w = torch::tensor({2.0, -1.0}, torch::kFloat64).view({1, 2});
  auto r = torch::full({1, 1, 1}, 10.0, torch::kFloat64);
  auto rx = lrp_zb(x, w, torch::full({1}, -1.0, torch::kFloat64), torch::full({1}, 1.0, torch::kFloat64), r);
  EXPECT_NEAR(rx[0][0][0].item<double>(), 6.0, 1e-12);
  EXPECT_NEAR(rx[0][0][1].item<double>(), 4.0, 1e-12);
}

// ------------------------------------------------------------------ LRP through the ViT

TEST(Lrp, ExplicitForwardMatchesTheModel) {
  auto m = perturbed_model(1);
  auto x = m->normalize(random_images(3, 3, 16, 2));
  const auto targets = torch::tensor({0, 3, 4}, torch::kInt64);
  auto res = lrp_propagate(m, x, targets);
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::allclose(res.score, m->forward(x).gather(1, targets.view({-1, 1})).squeeze(1), 1e-5, 1e-5));
  AttentionProbe probe;
  probe.keep_maps = true;
  m->forward(x, {nullptr, &probe});
  ASSERT_EQ(res.attn.size(), probe.maps.size());
  for (size_t b = 0; b < probe.maps.size(); ++b) EXPECT_TRUE(torch::allclose(res.attn[b], probe.maps[b], 1e-5, 1e-6));
}

TEST(Lrp, ConservesRelevanceLayerByLayer) {
  auto m = perturbed_model(3);
  auto x = m->normalize(random_images(4, 3, 16, 4));
  LrpOptions opt;
  opt.trace = true;
  opt.input_relevance = true;
  opt.double_precision = true;
  auto res = lrp_propagate(m, x, torch::tensor({1, 2, 0, 4}), opt);
  // Every layer down to the embedding keeps the total of the layer above (1 for the
  // one-hot target logit, handed through the head to the final-norm tokens); the position add hands some relevance to pos_embed / cls_token, and
  // from the patch tokens on, the z^B rule conserves what the patch tokens received.
  ASSERT_GE(res.trace.size(), 4u + 10u * 2u);
  torch::Tensor prev = res.trace.front().total;
  EXPECT_TRUE(torch::allclose(prev, torch::ones({4}, torch::kFloat64)));
  for (size_t i = 1; i < res.trace.size(); ++i) {
    const auto& s = res.trace[i];
    if (s.name == "embed.patch_tokens") {  // a part of the previous total, by design
      prev = s.total;
      continue;
    }
    EXPECT_TRUE(torch::allclose(s.total, prev, 1e-8, 1e-8)) << s.name << ": " << s.total << " vs " << prev;
    prev = s.total;
  }
  EXPECT_EQ(res.trace.back().name, "patch_embed");
  // The pixel map carries exactly the patch-token total.
  auto pix = res.pixel_relevance.reshape({4, -1}).sum(1).to(torch::kCPU);
  EXPECT_TRUE(torch::allclose(pix, prev, 1e-8, 1e-8));
  // And float32 stays close to conservative too.
  opt.double_precision = false;
  auto res32 = lrp_propagate(m, x, torch::tensor({1, 2, 0, 4}), opt);
  for (const auto& s : res32.trace) {
    if (s.name.rfind("blocks.", 0) == 0) EXPECT_TRUE(torch::allclose(s.total, torch::ones({4}, torch::kFloat64), 1e-3, 1e-3)) << s.name;
  }
}

// ------------------------------------------------------------------ all methods

TEST(Attribution, TopTokensBreaksTiesByKeys) {
  auto rel = torch::tensor({0.5f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}).view({2, 4});
  // No keys: ties to the lower index.
  EXPECT_TRUE(torch::equal(top_tokens(rel, 2), torch::tensor({0, 1, 0, 1}, torch::kInt64).view({2, 2})));
  // Keys: the highest score first, then ties in key order.
  auto keys = torch::tensor({0.9f, 0.8f, 0.1f, 0.5f, 0.3f, 0.2f, 0.9f, 0.1f}).view({2, 4});
  EXPECT_TRUE(torch::equal(top_tokens(rel, 2, keys), torch::tensor({0, 2, 1, 3}, torch::kInt64).view({2, 2})));  // row 1: keys 0.1 (3), 0.2 (1)
  // Seeded keys: per sample id, whatever the batch; different samples differ.
  auto a = token_tie_keys(torch::tensor({7, 8}), 49, 1), b = token_tie_keys(torch::tensor({8}), 49, 1);
  EXPECT_TRUE(torch::equal(a[1], b[0]));
  EXPECT_FALSE(torch::equal(a[0], a[1]));
}

TEST(Attribution, RegistryNamesEveryMethod) {
  auto names = token_selector_names();
  for (const auto& m : kMethods) EXPECT_NE(std::find(names.begin(), names.end(), m), names.end()) << m;
  EXPECT_THROW(make_token_selector("saliency", {}), InputError);
  TokenSelectorOptions bad;
  bad.atman_factor = 1.5;
  EXPECT_THROW(make_token_selector("atman", bad), InputError);
}

TEST(Attribution, ScoresDoNotDependOnTheBatch) {
  auto m = perturbed_model(5);
  auto images = random_images(5, 3, 16, 6);
  auto targets = torch::tensor({0, 1, 2, 3, 4});
  auto ids = torch::arange(5);
  for (const auto& name : kMethods) {
    TokenSelectorOptions o;
    o.atman_chunk = 7;  // chunks straddle samples
    auto sel = make_token_selector(name, o);
    auto all = sel->relevance(m, images, targets, ids);
    ASSERT_EQ(all.sizes(), (std::vector<int64_t>{5, 16})) << name;
    EXPECT_TRUE(torch::isfinite(all).all().item<bool>()) << name;
    for (int64_t i : {0, 3}) {
      auto one = sel->relevance(m, images.narrow(0, i, 1), targets.narrow(0, i, 1), ids.narrow(0, i, 1));
      EXPECT_TRUE(torch::allclose(one[0], all[i], 1e-4, 1e-6)) << name << " sample " << i << "\n" << one[0] << "\n" << all[i];
    }
    // The batch reordered: the same scores per sample.
    auto perm = torch::tensor({4, 2, 0, 1, 3});
    auto shuffled = sel->relevance(m, images.index_select(0, perm), targets.index_select(0, perm), ids.index_select(0, perm));
    EXPECT_TRUE(torch::allclose(shuffled, all.index_select(0, perm), 1e-4, 1e-6)) << name;
  }
}

TEST(Attribution, AtmanChunkingDoesNotChangeScores) {
  auto m = perturbed_model(7);
  auto images = random_images(3, 3, 16, 8);
  auto targets = torch::tensor({1, 0, 2});
  TokenSelectorOptions a, b;
  a.atman_chunk = 1;
  b.atman_chunk = 1000;
  auto ra = make_token_selector("atman", a)->relevance(m, images, targets, torch::arange(3));
  auto rb = make_token_selector("atman", b)->relevance(m, images, targets, torch::arange(3));
  EXPECT_TRUE(torch::allclose(ra, rb, 1e-4, 1e-6));
}

TEST(Attribution, RejectsBadArguments) {
  auto m = perturbed_model(9);
  auto sel = make_token_selector("gradlrp", {});
  EXPECT_THROW(sel->relevance(m, random_images(2, 3, 16, 1), torch::tensor({0, 5}), torch::arange(2)), InputError);  // 5 classes
  EXPECT_THROW(sel->relevance(m, random_images(2, 3, 16, 1), torch::tensor({0}), torch::arange(2)), InputError);
  EXPECT_THROW(sel->relevance(m, random_images(2, 3, 20, 1), torch::tensor({0, 1}), torch::arange(2)), InputError);
}

TEST(Attribution, LeavesTrainingModeAndParameterGradientsAlone) {
  auto m = perturbed_model(11);
  m->train();
  for (const auto& name : kMethods) {
    auto sel = make_token_selector(name, {});
    sel->relevance(m, random_images(2, 3, 16, 3), torch::tensor({0, 1}), torch::arange(2));
    EXPECT_TRUE(m->is_training()) << name;
    for (auto& p : m->parameters()) EXPECT_FALSE(p.grad().defined() && p.grad().abs().sum().item<double>() > 0) << name;
  }
}

TEST(PythonAttribution, MatchesIndependentPyTorchReference) {
  ASSERT_TRUE(test::python_torch_available()) << "Debian's python3-torch is needed (scripts/install-deps installs it)";
  TempDir dir;
  auto m = perturbed_model(13);
  save_vit_weights(m, dir / "model.safetensors");
  auto images = random_images(3, 3, 16, 14);
  auto targets = torch::tensor({2, 0, 4}, torch::kInt64);
  auto ids = torch::arange(3);
  TokenSelectorOptions o;
  o.atman_factor = 0.1;
  o.atman_kappa = 0.5;  // low enough that some similar tokens get suppressed too
  std::vector<SafetensorsTensor> t = {{"images", m->normalize(images), ""},
                                      {"targets", targets, ""},
                                      {"atman_factor", torch::full({1}, o.atman_factor, torch::kFloat64), ""},
                                      {"atman_kappa", torch::full({1}, o.atman_kappa, torch::kFloat64), ""}};
  for (const auto& name : kMethods) {
    std::string key = "rel_" + name;
    std::replace(key.begin(), key.end(), '-', '_');
    t.push_back({key, make_token_selector(name, o)->relevance(m, images, targets, ids), ""});
  }
  o.atman_similarity_rank = true;
  t.push_back({"rel_atman_similarity", make_token_selector("atman", o)->relevance(m, images, targets, ids), ""});
  save_safetensors(dir / "case.safetensors", t);
  auto r = test::run_python("attribution_reference.py", (dir / "model.safetensors").string() + " " + (dir / "case.safetensors").string());
  std::cout << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// ------------------------------------------------ sanity: the label lives in one patch

// One block, so that every method (gradcam looks at the last block only) can see the input
// patches directly. Deeper models are in docs/results.md: at depth 3 the last block's CLS
// attention no longer points at the key patch and gradcam falls to chance, while rollout,
// gradlrp, chefer-generic and atman still find it on 100 % of the samples.
TEST(Attribution, FindsTheDecisivePatch) {
  at::manual_seed(0);
  SyntheticOptions so;
  so.num_classes = 4, so.channels = 1, so.image_size = 16, so.patch_size = 4, so.per_class = 400, so.seed = 3, so.key_patch = true;
  auto train = make_synthetic(so, 0);
  auto test_set = make_synthetic(so, 1);
  auto key = synthetic_key_patches(so, 1);
  ViTConfig c = test::tiny_vit_config();
  c.in_chans = 1, c.num_classes = 4, c.embed_dim = 48, c.depth = 1;
  VisionTransformer m(c, 21);
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& kv : m->named_parameters()) named.emplace_back(kv.key(), kv.value());
  Optimizer opt(named, {});
  const int64_t n = train->size();
  auto gen = at::detail::createCPUGenerator(5);
  m->train();
  for (int epoch = 0; epoch < 12; ++epoch) {
    auto perm = torch::randperm(n, gen);
    for (int64_t i = 0; i + 64 <= n; i += 64) {
      auto idx = perm.narrow(0, i, 64);
      auto loss = torch::nn::functional::cross_entropy(m->forward(m->normalize(train->images(idx))), train->labels().index_select(0, idx));
      opt.zero_grad();
      loss.backward();
      opt.step(epoch < 1 ? 1e-3 * (i + 64) / n : 1e-3);
    }
  }
  m->eval();
  auto idx = torch::arange(200);
  auto images = test_set->images(idx);
  auto labels = test_set->labels().index_select(0, idx);
  double acc;
  {
    torch::NoGradGuard ng;
    acc = (m->forward(m->normalize(images)).argmax(1) == labels).to(torch::kFloat64).mean().item<double>();
  }
  ASSERT_GT(acc, 0.9) << "the sanity model did not learn the key-patch task";
  auto truth = key.index_select(0, idx);
  for (const auto& name : kMethods) {
    auto rel = make_token_selector(name, {})->relevance(m, images, labels, idx);
    auto top3 = std::get<1>(rel.topk(3, 1));
    const double hit = (top3 == truth.view({-1, 1})).any(1).to(torch::kFloat64).mean().item<double>();
    std::cout << name << ": key patch in top 3 on " << hit * 100 << " % of samples (accuracy " << acc * 100 << " %)\n";
    EXPECT_GT(hit, 0.8) << name;
  }
  auto random = make_token_selector("random", {})->relevance(m, images, labels, idx);
  const double chance = (std::get<1>(random.topk(3, 1)) == truth.view({-1, 1})).any(1).to(torch::kFloat64).mean().item<double>();
  EXPECT_LT(chance, 0.4);  // 3 of 16 patches: ~19 %
}

// ------------------------------------------------ every method inside `cts run`

TEST(Attribution, EveryMethodRunsInCoreTokensAndCoreTokenset) {
  TempDir dir;
  Console::get().set_quiet(true);
  std::map<std::string, torch::Tensor> positions;
  for (const std::string& method : {"random", "rollout", "gradcam", "gradlrp", "chefer-generic", "atman"}) {
    for (const std::string& strategy : {"core-tokens", "core-tokenset"}) {
      auto c = parse_config(
          "seed: 2\nthreads: 1\ndata: {name: synthetic, tasks: 2, num_classes: 4, train_per_class: 20, test_per_class: 5}\n"
          "model: {preset: vit_nano_patch4_28, embed_dim: 32, depth: 2, num_heads: 2}\n"
          "train: {epochs: 1, batch_size: 16, replay_batch_size: 16, warmup_steps: 1}\n"
          "memory: {strategy: " + strategy + ", retention: 0.25, tokens: " + method + "}\noutput: {progress: none, save_model: false}\n",
          "test", {});
      c.name = "t";
      RunOptions o;
      o.out_dir = dir / (method + "-" + strategy);
      auto s = run_experiment(c, o);
      ASSERT_TRUE(s.completed) << method << " " << strategy;
      auto buf = TokenBuffer::load(dir / (method + "-" + strategy) / "buffer.safetensors");
      EXPECT_EQ(buf.metadata().at("token_method"), method);
      const int64_t samples = strategy == "core-tokens" ? 80 : 4 * 10;  // 4 classes: s = 1 or s = 0.5 of 20 per class
      const int64_t k = strategy == "core-tokens" ? 12 : 25;                // round(0.25 * 49) or round(0.5 * 49)
      EXPECT_EQ(buf.size(), samples) << method << " " << strategy;
      EXPECT_EQ(buf.tokens(), samples * k) << method << " " << strategy;
      if (strategy == "core-tokens") positions[method] = buf.positions();
    }
  }
  Console::get().set_quiet(false);
  // The methods really chose: none keeps the same tokens as random (nor as each other, mostly).
  for (const auto& [m, pos] : positions) {
    if (m != "random") EXPECT_FALSE(torch::equal(pos, positions.at("random"))) << m;
  }
}

TEST(Attribution, MemoryTokensDropPolicyTrainsOnTheSelectorsTokens) {
  TempDir dir;
  Console::get().set_quiet(true);
  int runs = 0;
  auto run = [&](const std::string& policy, const std::string& tokens) {
    const std::string name = policy + tokens + std::to_string(runs++);
    auto c = parse_config(
        "seed: 3\nthreads: 1\ndata: {name: synthetic, tasks: 2, num_classes: 4, train_per_class: 20, test_per_class: 5}\n"
        "model: {preset: vit_nano_patch4_28, embed_dim: 32, depth: 2, num_heads: 2}\n"
        "train: {epochs: 1, batch_size: 16, replay_batch_size: 16, warmup_steps: 1, token_drop_policy: " + policy + "}\n"
        "memory: {strategy: core-tokenset, retention: 0.25, tokens: " + tokens + "}\noutput: {progress: none, save_model: false}\n",
        "test", {});
    c.name = "t";
    RunOptions o;
    o.out_dir = dir / name;
    auto s = run_experiment(c, o);
    EXPECT_TRUE(s.completed);
    // The buffer's kept tokens are chosen by the trained model: they differ when training did.
    return std::make_pair(test::read_text(dir / name / "metrics.json"), test::read_text(dir / name / "buffer.safetensors"));
  };
  const auto random_policy = run("random", "rollout");
  const auto matched = run("memory-tokens", "rollout");
  const auto matched_again = run("memory-tokens", "rollout");
  Console::get().set_quiet(false);
  auto buffer_of = [](const std::pair<std::string, std::string>& r) { return r.second; };
  auto metrics_of = [](const std::pair<std::string, std::string>& r) {
    auto j = nlohmann::json::parse(r.first);
    j.erase("timing");
    return j;
  };
  EXPECT_NE(buffer_of(random_policy), buffer_of(matched));          // the policy changes training
  EXPECT_EQ(buffer_of(matched), buffer_of(matched_again));          // and stays deterministic
  EXPECT_EQ(metrics_of(matched), metrics_of(matched_again));
  EXPECT_THROW(parse_config("train: {token_drop_policy: attention}\n", "test", {}), InputError);
}
