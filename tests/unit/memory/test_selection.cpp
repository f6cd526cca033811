// Memory selection: byte-budget arithmetic and the held-out probe by hand, per-class budgets
// with uneven and tiny classes for every coreset method, byte budgets for every strategy,
// predicted-class targets (the model's eval predictions), joint selection by hand and
// within its byte budget.
#include <torch/torch.h>

#include <map>

#include "cts/attribution/registry.hpp"
#include "cts/core/error.hpp"
#include "cts/coreset/registry.hpp"
#include "cts/data/dataset.hpp"
#include "cts/data/task_split.hpp"
#include "cts/learners/vit_classifier/vit_classifier.hpp"
#include "cts/memory/budget.hpp"
#include "cts/memory/joint_selection.hpp"
#include "cts/memory/selection.hpp"
#include "cts/memory/token_buffer.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;

// ------------------------------------------------------------------ budgets

TEST(Budget, ArithmeticByHand) {
  // 1 channel, patch 4: 16 pixel bytes + 2 position bytes per token, 8 per sample (+4 weight).
  EXPECT_EQ(stored_sample_bytes(1, 4, 5, false, 49), 5 * 18 + 8);
  EXPECT_EQ(stored_sample_bytes(3, 16, 195, true, 196), 195 * (768 + 2) + 12);
  // A whole sample (every token, as a coreset keeps it) stores no positions: 49 x 16 + 8 = 792
  // bytes for a 28-px gray image, not 49 x 18 + 8 = 890.
  EXPECT_EQ(stored_sample_bytes(1, 4, 49, false, 49), 792);
  EXPECT_EQ(stored_sample_bytes(3, 16, 196, true, 196), 196 * 768 + 12);
  // ... and the buffer agrees.
  TokenBuffer b(1, 28, 4);
  b.add(torch::zeros({2, 1, 28, 28}, torch::kUInt8), torch::tensor({0, 1}, torch::kInt64), 0, torch::tensor({{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9}}, torch::kInt64));
  EXPECT_EQ(b.bytes(), 2 * stored_sample_bytes(1, 4, 5, false, 49));
  EXPECT_EQ(task_byte_share(1000, 0, 30, 100), 300);
  EXPECT_EQ(task_byte_share(1000, 290, 30, 70), 304);  // floor(710 · 30 / 70) = floor(304.28)
  EXPECT_EQ(task_byte_share(1000, 1000, 30, 30), 0);
  // 10 over {50, 13, 1, 7} with one each first: 6 over caps {49, 12, 0, 6} (sum 67):
  // quotas 4.388, 1.075, 0, 0.537 -> floors 4, 1, 0, 0 and the one left to the largest remainder (0.537).
  EXPECT_EQ(allocate_proportional(10, {50, 13, 1, 7}, true), (std::vector<int64_t>{5, 2, 1, 2}));
  EXPECT_EQ(allocate_proportional(10, {50, 13, 1, 7}, false), (std::vector<int64_t>{7, 2, 0, 1}));  // 7.04, 1.83, 0.14, 0.99
  EXPECT_EQ(allocate_proportional(100, {3, 4}, true), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(allocate_proportional(3, {5, 5, 5}, false), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(allocate_proportional(2, {5, 5, 5}, false), (std::vector<int64_t>{1, 1, 0}));  // ties to the earlier class
  EXPECT_THROW(allocate_proportional(2, {5, 5, 5}, true), c10::Error);
  // Bytes: no caps. 1000 over {50, 13, 1, 7} (71): 704.2, 183.1, 14.08, 98.59 -> 704, 183, 14, 99.
  EXPECT_EQ(share_proportional(1000, {50, 13, 1, 7}), (std::vector<int64_t>{704, 183, 14, 99}));
  EXPECT_EQ(share_proportional(10, {1, 1, 1}), (std::vector<int64_t>{4, 3, 3}));
  EXPECT_EQ(token_grid(49), (std::vector<int64_t>{49, 25, 12, 6, 3, 2, 1}));
  EXPECT_EQ(token_grid(196), (std::vector<int64_t>{196, 98, 49, 25, 12, 6, 3, 2, 1}));
  EXPECT_EQ(token_grid(1), (std::vector<int64_t>{1}));
}

TEST(Budget, FixedMemoryQuotaByHand) {
  MemoryFractions f;
  f.fixed_samples = 2000;
  EXPECT_EQ(fixed_class_quota(f, 10, 890), 200);
  EXPECT_EQ(fixed_class_quota(f, 30, 890), 66);  // floor(2000 / 30)
  EXPECT_EQ(fixed_class_quota(f, 3000, 890), 0);
  MemoryFractions b;
  b.fixed_bytes = 1000;
  EXPECT_EQ(fixed_class_quota(b, 3, 100), 3);  // floor(floor(1000 / 3) / 100) = floor(333 / 100)
  EXPECT_EQ(fixed_class_quota(b, 3, 334), 0);
  EXPECT_EQ(fixed_class_quota(b, 1, 1000), 1);
}

TEST(Budget, ProbeLossPrefersInformativeMemories) {
  // Two Gaussian classes; a probe trained on clean samples beats one trained on noise.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
  auto make = [&](int64_t n, double noise) {
    auto y = torch::arange(n, torch::kInt64) % 2;
    auto x = torch::randn({n, 5}, gen) * noise + (y.to(torch::kFloat32) * 2 - 1).unsqueeze(1) * 1.5;
    return std::make_pair(x, y);
  };
  auto [xt, yt] = make(200, 1.0);
  auto [xc, yc] = make(40, 1.0);
  auto xn = torch::randn({40, 5}, gen);
  const double clean = probe_holdout_loss(xc, yc, {}, xt, yt, 2);
  const double noise = probe_holdout_loss(xn, yc, {}, xt, yt, 2);
  EXPECT_LT(clean, 0.2);
  EXPECT_GT(noise, 0.5);
  EXPECT_EQ(clean, probe_holdout_loss(xc, yc, {}, xt, yt, 2));  // deterministic
}

// A small in-memory dataset with uneven classes: sizes 50, 13, 1, 7.
std::shared_ptr<const TensorDataset> uneven_dataset() {
  std::vector<int64_t> labels;
  const std::vector<int64_t> sizes = {50, 13, 1, 7};
  for (int64_t c = 0; c < 4; ++c)
    for (int64_t i = 0; i < sizes[size_t(c)]; ++i) labels.push_back(c);
  const int64_t n = int64_t(labels.size());
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto images = torch::randint(0, 256, {n, 1, 28, 28}, gen, torch::kInt64).to(torch::kUInt8);
  return std::make_shared<TensorDataset>("uneven", images, torch::tensor(labels, torch::kInt64), 4);
}

// An untrained nano ViT (seed 3) with a 4-class head, for selection on the uneven dataset.
VisionTransformer four_class_vit() {
  auto cfg = vit_preset("vit_nano_patch4_28");
  cfg.num_classes = 4;
  return VisionTransformer(cfg, 3);
}

TEST(Selection, PerClassBudgetsWithUnevenAndTinyClassesForEveryMethod) {
  auto data = uneven_dataset();
  auto split = make_task_split(4, 1, ClassOrder{"natural", {}}, 0);
  auto model = four_class_vit();
  auto tokens = make_token_selector("random", TokenSelectorOptions{});
  for (const auto& name : sample_selector_names()) {
    for (bool weights : {false, true}) {
      auto coreset = make_sample_selector(name);
      SelectionSettings st;
      st.fractions.sample_fraction = 0.1;
      st.fractions.token_fraction = 0.1;
      st.store_weights = weights;
      TokenBuffer buffer(1, 28, 4);
      ViTClassifierMemoryModel mm(model, split);
      auto rep = select_task_memory(mm, *data, split, 0, *coreset, *tokens, st, buffer);
      // ceil(0.1 · {50, 13, 1, 7}) = {5, 2, 1, 1}; round(0.1 · 49) = 5 tokens each.
      EXPECT_EQ(rep.per_class, (std::vector<int64_t>{5, 2, 1, 1})) << name;
      ASSERT_EQ(buffer.size(), 9) << name;
      EXPECT_EQ(buffer.tokens(), 9 * 5);
      EXPECT_TRUE(torch::equal(torch::bincount(buffer.labels(), {}, 4), torch::tensor({5, 2, 1, 1}, torch::kInt64))) << name;
      EXPECT_EQ(buffer.has_weights(), weights);
      if (weights) {
        EXPECT_GE(buffer.weights().min().item<float>(), 0.0f) << name;
        if (name == "craig") {  // cluster sizes: each class's weights add up to its size
          for (int64_t c = 0; c < 4; ++c)
            EXPECT_EQ(buffer.weights().masked_select(buffer.labels() == c).sum().item<float>(), float(std::vector<int64_t>{50, 13, 1, 7}[size_t(c)]));
        }
      }
    }
  }
}

TEST(Selection, ByteBudgetsAreRespectedForEveryStrategy) {
  auto data = uneven_dataset();  // 71 samples
  auto split = make_task_split(4, 1, ClassOrder{"natural", {}}, 0);
  auto model = four_class_vit();
  auto tokens = make_token_selector("random", TokenSelectorOptions{});
  auto coreset = make_sample_selector("herding");
  const int64_t whole = stored_sample_bytes(1, 4, 49, false, 49);  // 792: no positions
  struct Case {
    MemoryStrategy strategy;
    int64_t budget;
  };
  ViTClassifierMemoryModel mm(model, split);
  for (const auto& c : std::vector<Case>{{MemoryStrategy::Coreset, 10 * whole + 5},
                                         {MemoryStrategy::CoreTokens, 71 * stored_sample_bytes(1, 4, 3, false, 49) + 17},
                                         {MemoryStrategy::CoreTokenset, 3000},
                                         {MemoryStrategy::CoreTokenset, 20000}}) {
    SelectionSettings st;
    st.strategy = c.strategy;
    st.budget_bytes = c.budget;
    st.fill = FillMode::Drop;
    TokenBuffer buffer(1, 28, 4);
    auto rep = select_task_memory(mm, *data, split, 0, *coreset, *tokens, st, buffer);
    EXPECT_LE(buffer.bytes(), c.budget) << name_of(c.strategy);
    EXPECT_EQ(rep.added_bytes, buffer.bytes());
    if (c.strategy == MemoryStrategy::Coreset) {
      EXPECT_EQ(buffer.size(), 10);  // floor((10·792 + 5) / 792)
      EXPECT_EQ(buffer.tokens(), 490);
      EXPECT_EQ(rep.per_class, (std::vector<int64_t>{5, 2, 1, 2}));  // allocate_proportional(10, sizes, true)
    } else if (c.strategy == MemoryStrategy::CoreTokens) {
      EXPECT_EQ(buffer.size(), 71);
      EXPECT_EQ(buffer.tokens(), 71 * 3);
    } else {
      // The split search scored every affordable grid point and kept the best one.
      ASSERT_FALSE(rep.trials.empty());
      double best = 1e300;
      int64_t best_t = 0;
      for (const auto& t : rep.trials)
        if (t.holdout_loss < best) best = t.holdout_loss, best_t = t.tokens;
      EXPECT_EQ(rep.tokens_per_sample, best_t);
      EXPECT_EQ(buffer.size(), std::min<int64_t>(71, c.budget / stored_sample_bytes(1, 4, best_t, false, 49)));
      EXPECT_GE(buffer.size(), 4);  // one per class at least
    }
  }
  // A budget that cannot keep one whole sample per class is an input error.
  SelectionSettings st;
  st.strategy = MemoryStrategy::Coreset;
  st.budget_bytes = 3 * whole;
  TokenBuffer buffer(1, 28, 4);
  EXPECT_THROW(select_task_memory(mm, *data, split, 0, *coreset, *tokens, st, buffer), InputError);
}

// memory.target = predicted: token methods explain the model's predicted class, not the label.
// A spy token selector records the targets it is asked to explain; they are compared with the
// labels and with a forward pass done here, for the two-stage and the joint path.
struct TargetSpy : TokenSelector {
  std::map<int64_t, int64_t> target_of;  // sample id -> target passed
  std::string name() const override { return "spy"; }

 protected:
  torch::Tensor score_tokens(ExplainedModel& model, const torch::Tensor& images_u8, const torch::Tensor& sample_ids) override {
    const auto targets = dynamic_cast<ClassifierExplained&>(model).targets().cpu();
    for (int64_t i = 0; i < targets.size(0); ++i) target_of[sample_ids[i].item<int64_t>()] = targets[i].item<int64_t>();
    return torch::rand({images_u8.size(0), model.num_tokens()});
  }
};

TEST(Selection, PredictedTargetsAreTheModelsEvalPredictions) {
  auto data = uneven_dataset();
  auto split = make_task_split(4, 1, ClassOrder{"natural", {}}, 0);
  auto model = four_class_vit();
  const int64_t n = data->size();
  auto all = torch::arange(n, torch::kInt64);
  torch::Tensor predicted;
  {
    torch::NoGradGuard no_grad;
    model->eval();
    predicted = model->forward(model->normalize(data->images(all))).argmax(1);
  }
  const auto labels = data->labels();
  ASSERT_GT((predicted != labels).sum().item<int64_t>(), 0) << "the check needs predictions that differ from labels";
  auto coreset = make_sample_selector("random");
  for (bool joint : {false, true}) {
    for (bool use_prediction : {false, true}) {
      TargetSpy spy;
      SelectionSettings st;
      st.joint = joint;
      st.fractions.sample_fraction = 1.0;
      st.fractions.token_fraction = 0.5;
      st.target = use_prediction ? ExplainTarget::Predicted : ExplainTarget::Label;
      st.batch_size = 16;
      TokenBuffer buffer(1, 28, 4);
      model->train();
      ViTClassifierMemoryModel mm(model, split);
      select_task_memory(mm, *data, split, 0, *coreset, spy, st, buffer);
      EXPECT_TRUE(model->is_training()) << "the model's mode is restored";
      ASSERT_EQ(int64_t(spy.target_of.size()), n) << "joint=" << joint;
      const auto& expect = use_prediction ? predicted : labels;
      for (const auto& [id, target] : spy.target_of) {
        EXPECT_EQ(target, expect[id].item<int64_t>()) << "sample " << id << " joint=" << joint << " predicted=" << use_prediction;
      }
    }
  }
}

// A dataset whose samples carry a payload (e.g. question and answer ids): the memory keeps each
// kept sample's payload with it. Payload i = [i, 1000 + label_i, then i % 3 sevens].
TEST(Selection, PayloadsAreStoredWithTheirSamples) {
  auto base = uneven_dataset();
  std::vector<int32_t> values;
  std::vector<int64_t> lengths;
  for (int64_t i = 0; i < base->size(); ++i) {
    values.push_back(int32_t(i));
    values.push_back(int32_t(1000 + base->labels()[i].item<int64_t>()));
    for (int64_t r = 0; r < i % 3; ++r) values.push_back(7);
    lengths.push_back(2 + i % 3);
  }
  auto data = std::make_shared<TensorDataset>("uneven-text", base->all_images(), base->labels(), 4, std::vector<std::string>{},
                                              Payload{torch::tensor(values, torch::kInt32), torch::tensor(lengths, torch::kInt64)});
  auto split = make_task_split(4, 1, ClassOrder{"natural", {}}, 0);
  auto model = four_class_vit();
  ViTClassifierMemoryModel mm(model, split);
  auto tokens = make_token_selector("random", TokenSelectorOptions{});
  auto coreset = make_sample_selector("random");
  SelectionSettings st;
  st.fractions.sample_fraction = 0.3;
  st.fractions.token_fraction = 0.2;
  TokenBuffer buffer(1, 28, 4);
  select_task_memory(mm, *data, split, 0, *coreset, *tokens, st, buffer);
  ASSERT_TRUE(buffer.has_payload());
  ASSERT_EQ(buffer.size(), 15 + 4 + 1 + 3);  // ceil(0.3 · {50, 13, 1, 7})
  auto all = torch::arange(buffer.size(), torch::kInt64);
  auto g = buffer.gather(all, true, false);
  for (int64_t b = 0; b < buffer.size(); ++b) {
    const auto pl = buffer.payload().sample(b);
    const int64_t i = pl[0].item<int64_t>();
    EXPECT_EQ(pl.size(0), 2 + i % 3) << "sample " << b;
    EXPECT_EQ(pl[1].item<int64_t>(), 1000 + buffer.labels()[b].item<int64_t>()) << "sample " << b;
    EXPECT_EQ(data->labels()[i].item<int64_t>(), buffer.labels()[b].item<int64_t>()) << "sample " << b;
    // ... and it is the payload of the very image stored: its kept patch matches sample i.
    const int64_t t = g.positions[b][0].item<int64_t>(), r = t / 7, c = t % 7;
    auto stored = g.images[b][0].narrow(0, 4 * r, 4).narrow(1, 4 * c, 4);
    auto original = data->all_images()[i][0].narrow(0, 4 * r, 4).narrow(1, 4 * c, 4);
    EXPECT_TRUE(torch::equal(stored, original)) << "sample " << b;
  }
  // Byte budgets do not count payload bytes: refused with an InputError rather than exceeded.
  st.budget_bytes = 50000;
  TokenBuffer other(1, 28, 4);
  try {
    select_task_memory(mm, *data, split, 0, *coreset, *tokens, st, other);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("payload"), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------ joint selection

TEST(Joint, TopPairsByHand) {
  // scores: sample 0: 2·{0.5, 0.3, 0.2} = {1.0, 0.6, 0.4}; sample 1: {0.6, 0.4, 0.0}
  // token 10 bytes, sample 5 bytes, budget 40: (0,0) 15 -> (0,1) 10 [tie with (1,0), lower
  // sample first] -> (1,0) 15 = 40; nothing else fits.
  auto pos = joint_top_pairs(torch::tensor({2.0, 1.0}, torch::kFloat64), torch::tensor({{0.5, 0.3, 0.2}, {0.6, 0.4, 0.0}}, torch::kFloat64), 40, 10, 5);
  EXPECT_TRUE(torch::equal(pos, torch::tensor({{0, 1}, {0, -1}}, torch::kInt64)));
  // A pair that does not fit is skipped; a cheaper later one still fills the rest:
  // budget 35: (0,0) 15, (0,1) 10 -> 25; (1,0) needs 15 (skip); (0,2) needs 10 -> 35.
  pos = joint_top_pairs(torch::tensor({2.0, 1.0}, torch::kFloat64), torch::tensor({{0.5, 0.3, 0.2}, {0.6, 0.4, 0.0}}, torch::kFloat64), 35, 10, 5);
  EXPECT_TRUE(torch::equal(pos, torch::tensor({{0, 1, 2}, {-1, -1, -1}}, torch::kInt64)));
  auto shares = relevance_shares(torch::tensor({{1.0, -1.0, 3.0}, {0.0, 0.0, 0.0}}));
  EXPECT_TRUE(torch::allclose(shares, torch::tensor({{0.25, 0.0, 0.75}, {1.0 / 3, 1.0 / 3, 1.0 / 3}}, torch::kFloat64)));
  // u = max(0, <g_i, Σ g>): Σ g = (0, 3); u = {3, 6, 0}; mean 3 -> w = {2, 3, 1}.
  auto w = joint_sample_weights(torch::tensor({{1.0, 1.0}, {-1.0, 2.0}, {0.0, 0.0}}));
  EXPECT_TRUE(torch::allclose(w, torch::tensor({2.0, 3.0, 1.0}, torch::kFloat64)));
}

TEST(Joint, SelectionKeepsVaryingTokenCountsWithinTheByteBudget) {
  auto data = uneven_dataset();
  auto split = make_task_split(4, 1, ClassOrder{"natural", {}}, 0);
  auto model = four_class_vit();
  ViTClassifierMemoryModel mm(model, split);
  auto coreset = make_sample_selector("random");
  for (const auto& method : {"random", "rollout"}) {
    auto tokens = make_token_selector(method, TokenSelectorOptions{});
    SelectionSettings st;
    st.joint = true;
    st.budget_bytes = 2500;
    st.store_weights = true;
    TokenBuffer buffer(1, 28, 4);
    auto rep = select_task_memory(mm, *data, split, 0, *coreset, *tokens, st, buffer);
    EXPECT_LE(buffer.bytes(), 2500) << method;
    EXPECT_GT(buffer.bytes(), 2500 - 4 * (18 + 12)) << method << ": every class share is used up to less than one sample";
    const auto counts = buffer.counts();
    EXPECT_LT(counts.min().item<int64_t>(), counts.max().item<int64_t>()) << method << ": counts must vary";
    EXPECT_EQ(rep.tokens_per_sample, 0);
    // The varying-count buffer round-trips through safetensors.
    TempDir dir;
    buffer.save(dir / "b.safetensors");
    auto back = TokenBuffer::load(dir / "b.safetensors");
    EXPECT_TRUE(torch::equal(back.counts(), counts));
    EXPECT_EQ(back.bytes(), buffer.bytes());
    auto all = torch::arange(buffer.size(), torch::kInt64);
    EXPECT_TRUE(torch::equal(back.gather(all, true, true).images, buffer.gather(all, true, true).images));
  }
  // Without a byte budget joint spends what the two-stage memory at s × k would take.
  auto tokens = make_token_selector("random", TokenSelectorOptions{});
  SelectionSettings st;
  st.joint = true;
  st.fractions.sample_fraction = 0.3;
  st.fractions.token_fraction = 0.3;
  TokenBuffer buffer(1, 28, 4);
  auto rep = select_task_memory(mm, *data, split, 0, *coreset, *tokens, st, buffer);
  const int64_t two_stage = (15 + 4 + 1 + 3) * stored_sample_bytes(1, 4, 15, false, 49);  // ceil(0.3·N_c), round(0.3·49) = 15
  EXPECT_EQ(rep.budget_bytes, two_stage);
  EXPECT_LE(buffer.bytes(), two_stage);
}

}  // namespace
}  // namespace cts
