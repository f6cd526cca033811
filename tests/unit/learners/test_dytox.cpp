// The DyTox learner: the task-attention block against the formula computed here in double with
// explicit loops (and that it leaves the patch tokens alone), the frozen-token and
// frozen-head rules (old parameters bit-identical after training a task; the finetuning
// phase freezes the SABs), α and the divergence head's class count, growth by exactly D + the
// new classifier per task, the loss (1 − α)·L_clf + α·L_kd + λ·L_div against a hand
// computation from the logits, checkpoint state round trips, the FWT preview, runs of the
// sequential loop with fixed herding and core-tokenset memories, and its errors.
#include <torch/torch.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cts/attribution/explain.hpp"
#include "cts/config/config.hpp"
#include "cts/core/console.hpp"
#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/task_split.hpp"
#include "cts/learners/dytox/dytox.hpp"
#include "cts/learners/registry.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/train/loop.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;
using Vec = std::vector<double>;

constexpr int64_t kD = 8;

// 8x8 gray images, patch 4 (T = 4 tokens), width 8, 2 heads, 1 SAB + the TAB; 6 classes in
// 3 tasks of 2 (natural order: task t holds classes 2t, 2t + 1).
struct DyToxFixture {
  DatasetSplits data;
  TaskSplit split;
  ModelConfig model;
  LearnerSettings settings;
  DyToxFixture() {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
    auto images = torch::randint(0, 256, {24, 1, 8, 8}, gen, torch::kInt64).to(torch::kUInt8);
    auto labels = torch::arange(24, torch::kInt64).remainder(6);
    auto ds = std::make_shared<TensorDataset>("tiny", images, labels, 6);
    data = {ds, ds};
    split = make_task_split(6, 3, ClassOrder{"natural", {}}, 0);
    model.learner = "dytox";
    model.img_size = 8, model.patch_size = 4, model.in_chans = 1, model.embed_dim = kD, model.num_heads = 2, model.depth = 2;
    settings.dytox.kd_temperature = 2.0;
  }
  std::unique_ptr<DyTox> learner(uint64_t seed = 3) {
    auto l = make_learner(LearnerContext{model, settings, data, split, "tiny", torch::kCPU, seed});
    return std::unique_ptr<DyTox>(dynamic_cast<DyTox*>(l.release()));
  }
  Batch batch(const std::vector<int64_t>& rows) const {
    auto idx = torch::tensor(rows, torch::kInt64);
    Batch b;
    b.images = data.train->images(idx);
    b.labels = data.train->labels().index_select(0, idx);
    return b;
  }
};

// ------------------------------------------------------------------ the formula in double

Vec row(const torch::Tensor& t) {
  auto d = t.detach().to(torch::kFloat64).contiguous().flatten();
  return Vec(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

Vec linear(const torch::nn::Linear& lin, const Vec& x) {
  auto W = lin->weight.detach().to(torch::kFloat64);
  const int64_t out = W.size(0), in = W.size(1);
  auto Wa = W.accessor<double, 2>();
  Vec bias = lin->bias.defined() ? row(lin->bias) : Vec(size_t(out), 0.0);
  Vec y(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    double s = bias[size_t(o)];
    for (int64_t i = 0; i < in; ++i) s += Wa[o][i] * x[size_t(i)];
    y[size_t(o)] = s;
  }
  return y;
}

Vec layer_norm(const torch::nn::LayerNorm& ln, const Vec& x) {
  const Vec w = row(ln->weight), b = row(ln->bias);
  double mean = 0, var = 0;
  for (double v : x) mean += v;
  mean /= double(x.size());
  for (double v : x) var += (v - mean) * (v - mean);
  var /= double(x.size());
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = (x[i] - mean) / std::sqrt(var + ln->options.eps()) * w[i] + b[i];
  return y;
}

// e = c' + MLP(norm2(c')), c' = θ + W_o softmax(q kᵀ / √dh) V + b_o over the valid keys.
Vec tab_by_hand(TaskAttentionBlockImpl& tab, const Vec& theta, const std::vector<Vec>& patches, const std::vector<bool>& valid) {
  const size_t D = theta.size(), H = size_t(tab.heads), dh = D / H;
  std::vector<Vec> z{theta};
  for (const auto& p : patches) z.push_back(p);
  std::vector<Vec> k, v;
  for (const auto& zi : z) {
    const Vec u = layer_norm(tab.norm1, zi);
    k.push_back(linear(tab.k, u));
    v.push_back(linear(tab.v, u));
  }
  const Vec q = linear(tab.q, layer_norm(tab.norm1, theta));
  Vec o(D, 0.0);
  for (size_t h = 0; h < H; ++h) {
    std::vector<double> s;
    double mx = -1e300;
    for (size_t i = 0; i < z.size(); ++i) {
      double dot = 0;
      for (size_t d = h * dh; d < (h + 1) * dh; ++d) dot += q[d] * k[i][d];
      s.push_back(dot / std::sqrt(double(dh)));
      if (i == 0 || valid[i - 1]) mx = std::max(mx, s.back());
    }
    double den = 0;
    for (size_t i = 0; i < z.size(); ++i) den += (i == 0 || valid[i - 1]) ? std::exp(s[i] - mx) : 0.0;
    for (size_t i = 0; i < z.size(); ++i) {
      const double a = (i == 0 || valid[i - 1]) ? std::exp(s[i] - mx) / den : 0.0;
      for (size_t d = h * dh; d < (h + 1) * dh; ++d) o[d] += a * v[i][d];
    }
  }
  Vec c = linear(tab.proj, o);
  for (size_t d = 0; d < D; ++d) c[d] += theta[d];
  Vec hdn = linear(tab.mlp->fc1, layer_norm(tab.norm2, c));
  for (double& x : hdn) x = 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
  const Vec m = linear(tab.mlp->fc2, hdn);
  for (size_t d = 0; d < D; ++d) c[d] += m[d];
  return c;
}

double max_abs_diff(const Vec& a, const Vec& b) {
  double w = 0;
  for (size_t i = 0; i < a.size(); ++i) w = std::max(w, std::abs(a[i] - b[i]));
  return w;
}

TEST(DyTox, TaskAttentionBlockFollowsTheFormulaAndLeavesThePatchTokensAlone) {
  DyToxFixture fx;
  auto learner = fx.learner();
  auto& net = learner->net();
  auto tab = std::dynamic_pointer_cast<TaskAttentionBlockImpl>(net->tabs->ptr(0));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
  auto patches = torch::randn({2, 4, kD}, gen), theta = torch::randn({1, 1, kD}, gen);
  const auto before = patches.clone();
  torch::NoGradGuard no_grad;
  for (bool masked : {false, true}) {
    torch::Tensor valid;
    std::vector<std::vector<bool>> v{{true, true, true, true}, {true, true, true, true}};
    if (masked) {
      valid = torch::tensor({{1, 1, 0, 1}, {0, 1, 0, 0}}, torch::kInt64).to(torch::kBool);
      v = {{true, true, false, true}, {false, true, false, false}};
    }
    auto out = tab->forward(theta, patches, valid);
    ASSERT_EQ(out.sizes(), torch::IntArrayRef({2, 1, kD})) << "only the task token comes out";
    EXPECT_TRUE(torch::equal(patches, before)) << "the TAB must not change the patch tokens";
    for (int64_t b = 0; b < 2; ++b) {
      std::vector<Vec> p;
      for (int64_t i = 0; i < 4; ++i) p.push_back(row(patches[b][i]));
      const double err = max_abs_diff(row(out[b][0]), tab_by_hand(*tab, row(theta), p, v[size_t(b)]));
      EXPECT_LT(err, 1e-5) << "sample " << b << (masked ? " masked" : "");
    }
  }
  // The network: one embedding per task token, logits of every task side by side.
  learner->begin_task(0);
  learner->begin_task(1);
  auto x = net->encode(net->normalize(fx.batch({0, 1, 2}).images), nullptr);
  EXPECT_EQ(x.first.sizes(), torch::IntArrayRef({3, 4, kD}));
  const auto tokens_before = x.first.clone();
  auto out = net->decode(x.first, x.second, true);
  EXPECT_EQ(out.embeddings.sizes(), torch::IntArrayRef({3, 2, kD}));
  EXPECT_EQ(out.logits.sizes(), torch::IntArrayRef({3, 4}));
  EXPECT_EQ(out.divergence.sizes(), torch::IntArrayRef({3, 3}));
  EXPECT_TRUE(torch::equal(x.first, tokens_before));
  // Task i's logits are its classifier on e_i.
  auto clf1 = std::dynamic_pointer_cast<TaskClassifierImpl>(net->head->ptr(1));
  EXPECT_TRUE(torch::allclose(out.logits.narrow(1, 2, 2), clf1->forward(out.embeddings.select(1, 1))));
  EXPECT_TRUE(torch::allclose(out.embeddings.select(1, 0), net->embed(x.first, x.second, net->task_tokens[0])));
}

// ------------------------------------------------------------------ structure rules

std::map<std::string, torch::Tensor> snapshot(DyTox& l) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : l.net()->state()) out[k] = v.detach().clone();
  return out;
}

// A few SGD steps on the loss terms of `phase` (train or finetune) for task t.
void train_steps(DyToxFixture& fx, DyTox& l, int64_t t, bool finetune, int steps) {
  std::vector<torch::Tensor> params;
  for (auto& [name, p] : l.trainable_parameters()) params.push_back(p);
  torch::optim::SGD opt(params, torch::optim::SGDOptions(0.5));
  for (int s = 0; s < steps; ++s) {
    const int64_t c = 2 * t;
    auto fresh = fx.batch({c + 6 * s % 24, c + 1 + 6 * s % 24, c + 6, c + 7});
    std::vector<int64_t> old;
    for (int64_t u = 0; u < t; ++u) old.insert(old.end(), {2 * u, 2 * u + 1 + 6});
    auto replay = fx.batch(old);
    opt.zero_grad();
    auto terms = finetune ? l.finetune_loss(t, fresh, t ? &replay : nullptr) : l.step_loss(t, fresh, t ? &replay : nullptr);
    torch::Tensor loss = torch::zeros({});
    for (auto& term : terms) {
      auto v = term.compute();
      if (v.defined()) loss = loss + v;
    }
    loss.backward();
    opt.step();
  }
}

std::set<std::string> trainable_names(DyTox& l) {
  std::set<std::string> out;
  for (const auto& [k, v] : l.trainable_parameters()) out.insert(k);
  return out;
}

TEST(DyTox, OldTokensAndHeadsStayBitIdenticalFinetuningFreezesTheSabs) {
  DyToxFixture fx;
  auto l = fx.learner();
  l->begin_task(0);
  train_steps(fx, *l, 0, false, 3);
  const auto after0 = snapshot(*l);
  l->begin_task(1);
  auto names = trainable_names(*l);
  EXPECT_EQ(names.count("task_tokens.0"), 0u);
  EXPECT_EQ(names.count("head.0.head.weight"), 0u);
  EXPECT_EQ(names.count("head.0.norm.weight"), 0u);
  for (const char* n : {"task_tokens.1", "head.1.head.weight", "head_div.head.weight", "sabs.0.attn.qkv.weight", "tabs.0.q.weight", "pos_embed"})
    EXPECT_EQ(names.count(n), 1u) << n;
  // The new token is a fresh trunc-normal draw (the original code), not the old token.
  EXPECT_FALSE(torch::equal(l->net()->task_tokens[1], l->net()->task_tokens[0]));
  EXPECT_LE(l->net()->task_tokens[1].abs().max().item<double>(), 2.0);
  train_steps(fx, *l, 1, false, 3);
  const auto after1 = snapshot(*l);
  for (const auto& [k, v] : after0) {
    const bool old = k == "task_tokens.0" || k.rfind("head.0.", 0) == 0;
    if (old) {
      EXPECT_TRUE(torch::equal(after1.at(k), v)) << k << " changed while training task 1";
    }
  }
  EXPECT_FALSE(torch::equal(after1.at("sabs.0.attn.qkv.weight"), after0.at("sabs.0.attn.qkv.weight")));
  EXPECT_FALSE(torch::equal(after1.at("tabs.0.q.weight"), after0.at("tabs.0.q.weight")));
  // The teacher is the model after task 0, untouched by task 1's steps.
  const auto st = l->state_tensors();
  for (const auto& [k, v] : after0) EXPECT_TRUE(torch::equal(st.at("teacher." + k), v)) << "teacher." << k;
  EXPECT_EQ(st.count("teacher.task_tokens.1"), 0u);
  // Balanced finetuning: patch embedding, positions and SABs frozen (and the divergence head
  // unused); the TAB, every token and every classifier trained.
  l->begin_finetune(1);
  names = trainable_names(*l);
  for (const auto& n : names) {
    EXPECT_TRUE(n.rfind("sabs.", 0) != 0 && n.rfind("patch_embed.", 0) != 0 && n != "pos_embed" && n.rfind("head_div.", 0) != 0) << n;
  }
  EXPECT_EQ(names.count("task_tokens.0"), 1u);
  EXPECT_EQ(names.count("head.0.head.weight"), 1u);
  train_steps(fx, *l, 1, true, 3);
  l->end_finetune(1);
  const auto after_ft = snapshot(*l);
  for (const auto& [k, v] : after1) {
    if (k.rfind("sabs.", 0) == 0 || k.rfind("patch_embed.", 0) == 0 || k == "pos_embed" || k.rfind("head_div.", 0) == 0) {
      EXPECT_TRUE(torch::equal(after_ft.at(k), v)) << k << " changed in finetuning";
    }
  }
  EXPECT_FALSE(torch::equal(after_ft.at("head.0.head.weight"), after1.at("head.0.head.weight")));
  EXPECT_EQ(trainable_names(*l).count("task_tokens.0"), 0u) << "end_finetune restores the task rules";
  // dytox.task_token_init: copy starts the new token from the previous one.
  fx.settings.dytox.task_token_init = "copy";
  auto c = fx.learner();
  c->begin_task(0);
  train_steps(fx, *c, 0, false, 2);
  c->begin_task(1);
  EXPECT_TRUE(torch::equal(c->net()->task_tokens[1], c->net()->task_tokens[0]));
}

TEST(DyTox, AlphaDivergenceHeadAndGrowthByExactlyOneTokenAndOneClassifier) {
  DyToxFixture fx;
  auto l = fx.learner();
  EXPECT_EQ(l->alpha(0), 0.0);
  EXPECT_DOUBLE_EQ(l->alpha(1), 2.0 / 4.0);
  EXPECT_DOUBLE_EQ(l->alpha(2), 4.0 / 6.0);
  // Per task: θ_t (D) + LayerNorm (2D) + Linear (D·2 + 2) = 8 + 16 + 18 = 42, counted by hand.
  const int64_t growth = kD + 2 * kD + kD * 2 + 2;
  int64_t count = l->parameter_count();
  torch::Tensor old_div;
  for (int64_t t = 0; t < 3; ++t) {
    l->begin_task(t);
    EXPECT_EQ(l->parameter_count() - count, growth) << "task " << t;
    count = l->parameter_count();
    EXPECT_EQ(l->net()->num_tasks(), t + 1);
    if (t == 0) {
      EXPECT_TRUE(l->net()->head_div.is_empty()) << "no divergence head before there are old classes";
      continue;
    }
    // "old" + the new task's 2 classes, a new head each task.
    ASSERT_FALSE(l->net()->head_div.is_empty());
    EXPECT_EQ(l->net()->head_div->head->weight.size(0), 3);
    if (old_div.defined()) {
      EXPECT_FALSE(torch::equal(old_div, l->net()->head_div->head->weight));
    }
    old_div = l->net()->head_div->head->weight.detach().clone();
  }
}

// ------------------------------------------------------------------ the loss by hand

double bce(double z, double y) { return std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::abs(z))); }

Vec log_softmax(const Vec& z, double tau) {
  double mx = -1e300, s = 0;
  for (double v : z) mx = std::max(mx, v / tau);
  for (double v : z) s += std::exp(v / tau - mx);
  Vec out;
  for (double v : z) out.push_back(v / tau - mx - std::log(s));
  return out;
}

TEST(DyTox, LossIsTheWeightedSumOfBceDistillationAndDivergenceByHand) {
  DyToxFixture fx;  // τ = 2, λ = 0.1
  auto l = fx.learner();
  l->begin_task(0);
  train_steps(fx, *l, 0, false, 3);
  auto teacher = fx.learner(77);
  teacher->load_state(l->state_info(), l->state_tensors());
  l->begin_task(1);
  train_steps(fx, *l, 1, false, 2);
  auto fresh = fx.batch({2, 3, 9, 14}), replay = fx.batch({0, 7});
  replay.weights = torch::tensor({1.0f, 3.0f});
  double got = 0;
  for (auto& term : l->step_loss(1, fresh, &replay)) got += term.compute().item<double>();

  // By hand from the logits: n = 6 samples, C = 4 classes, 2 old, α = 1/2.
  const double n = 6, C = 4, old = 2, a = 0.5, tau = 2.0, lambda = 0.1;
  torch::NoGradGuard no_grad;
  l->set_training(false);  // no dropout anywhere: train and eval forwards agree
  double want = 0;
  for (const Batch* b : {&fresh, &replay}) {
    auto& net = l->net();
    auto x = net->encode(net->normalize(b->images), nullptr);
    auto out = net->decode(x.first, x.second, true);
    auto& tnet = teacher->net();
    auto tx = tnet->encode(tnet->normalize(b->images), nullptr);
    auto tz = tnet->decode(tx.first, tx.second, false).logits;
    // Replay weights normalised to mean 1 within the part: {1, 3} -> {0.5, 1.5}.
    const Vec w = b == &replay ? Vec{0.5, 1.5} : Vec(size_t(b->size()), 1.0);
    for (int64_t i = 0; i < b->size(); ++i) {
      const int64_t y = b->labels[i].item<int64_t>();
      const Vec z = row(out.logits[i]), zt = row(tz[i]), zd = row(out.divergence[i]);
      double clf = 0, div = 0, kl = 0;
      for (int64_t c = 0; c < 4; ++c) clf += bce(z[size_t(c)], c == y ? 1.0 : 0.0);
      const int64_t dt = y < 2 ? 0 : 1 + (y - 2);
      for (int64_t c = 0; c < 3; ++c) div += bce(zd[size_t(c)], c == dt ? 1.0 : 0.0);
      const Vec lp = log_softmax({z[0], z[1]}, tau), lq = log_softmax(zt, tau);
      for (size_t c = 0; c < 2; ++c) kl += std::exp(lq[c]) * (lq[c] - lp[c]);
      want += w[size_t(i)] * ((1 - a) * clf / (n * C) + a * tau * tau * kl / (n * old) + lambda * div / (n * 3));
    }
  }
  std::cout << "loss " << got << " by hand " << want << "\n";
  EXPECT_NEAR(got, want, 1e-5 * std::abs(want));
  // Finetuning: L_clf only (no teacher, no divergence head), α = 0.
  double ft = 0;
  l->set_training(true);
  for (auto& term : l->finetune_loss(1, fresh, nullptr)) {
    auto v = term.compute();
    if (v.defined()) ft += v.item<double>();
  }
  l->set_training(false);
  double want_ft = 0;
  auto& net = l->net();
  auto x = net->encode(net->normalize(fresh.images), nullptr);
  auto z = net->decode(x.first, x.second, false).logits;
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t c = 0; c < 4; ++c) want_ft += bce(z[i][c].item<double>(), c == fresh.labels[i].item<int64_t>() ? 1.0 : 0.0) / (4 * 4);
  EXPECT_NEAR(ft, want_ft, 1e-5 * want_ft);
}

// ------------------------------------------------------------------ state, evaluation

TEST(DyTox, StateRoundTripsWithItsTeacherAndTheFwtPreviewIsTheNextTasksStart) {
  DyToxFixture fx;
  auto a = fx.learner();
  a->begin_task(0);
  train_steps(fx, *a, 0, false, 3);
  // FWT: task 1 scored before it is trained with the token and classifier it will start from.
  const auto preview = a->evaluate(*fx.data.test, 1, {0, 1}, 5);
  a->begin_task(1);
  const auto started = a->evaluate(*fx.data.test, 2, {1}, 5);
  EXPECT_EQ(preview[1].at("task_il_accuracy"), started[1].at("task_il_accuracy"));
  train_steps(fx, *a, 1, false, 2);
  // A learner built from another seed and loaded with a's state scores and trains like a.
  auto b = fx.learner(99);
  b->load_state(a->state_info(), a->state_tensors());
  // (Tasks trained only: an untrained task's preview is drawn from the learner's seed.)
  const auto sa = a->evaluate(*fx.data.test, 2, {0, 1}, 5), sb = b->evaluate(*fx.data.test, 2, {0, 1}, 5);
  for (size_t j = 0; j < 2; ++j)
    for (const char* metric : {"accuracy", "task_il_accuracy"}) EXPECT_EQ(sa[j].at(metric), sb[j].at(metric)) << "task " << j << " " << metric;
  auto fresh = fx.batch({2, 3, 8}), replay = fx.batch({0, 1});
  for (auto* l : {a.get(), b.get()}) l->set_training(true);
  auto ta = a->step_loss(1, fresh, &replay), tb = b->step_loss(1, fresh, &replay);
  for (size_t i = 0; i < ta.size(); ++i) EXPECT_TRUE(torch::equal(ta[i].compute(), tb[i].compute())) << ta[i].name << " (the teacher was restored)";
  // A checkpoint of another split is refused, naming what differs.
  DyToxFixture other;
  other.split = make_task_split(6, 2, ClassOrder{"natural", {}}, 0);
  auto c = other.learner();
  const std::string msg = test::input_error([&] { c->load_state(a->state_info(), a->state_tensors()); });
  EXPECT_NE(msg.find("task 0 has 2 classes; the run's has 3"), std::string::npos) << msg;
}

// ------------------------------------------------------------------ runs of the loop

Config dytox_config(const std::vector<std::string>& sets = {}) {
  auto c = parse_config(
      "seed: 5\nthreads: 1\ndata: {name: synthetic, tasks: 3, num_classes: 6, train_per_class: 40, test_per_class: 20}\n"
      "model: {learner: dytox, preset: vit_nano_patch4_28, embed_dim: 32, depth: 3, num_heads: 2}\n"
      "train: {epochs: 3, batch_size: 16, replay_batch_size: 16, warmup_steps: 2, lr: 3.0e-3}\n"
      "memory: {strategy: coreset, coreset: herding, size_policy: fixed, samples: 30}\n"
      "dytox: {finetune_epochs: 2, finetune_lr: 1.0e-4}\noutput: {progress: none}\n",
      "dytox", sets);
  c.name = "dytox";
  return c;
}

TEST(DyTox, SequentialRunsWithFixedHerdingAndCoreTokensetMemories) {
  TempDir dir;
  Console::get().set_quiet(true);
  RunOptions o;
  o.out_dir = dir / "herding";
  auto s = run_experiment(dytox_config(), o);
  ASSERT_TRUE(s.completed);
  // It learns task 0 and keeps task-IL well above chance (50 %).
  EXPECT_GT(s.record.matrix("accuracy")[0][0], 0.8);
  EXPECT_GT(s.record.metrics(s.record.metric_specs[1]).final_average_accuracy, 0.7);
  // Growth per task in metrics.json: D + LayerNorm + Linear(32 -> 2) = 32 + 64 + 66.
  auto m = test::read_json(dir / "herding" / "metrics.json");
  const auto params = m.at("parameters_per_task").get<std::vector<int64_t>>();
  ASSERT_EQ(params.size(), 3u);
  EXPECT_EQ(params[1] - params[0], 162);
  EXPECT_EQ(params[2] - params[1], 162);
  // A fixed memory of 30 samples: 5 per class after 6 classes (floor(30 / 6)).
  auto buffer = TokenBuffer::load(dir / "herding" / "buffer.safetensors");
  EXPECT_EQ(buffer.size(), 30);
  for (int64_t c = 0; c < 6; ++c) EXPECT_EQ((buffer.labels() == c).sum().item<int64_t>(), 5) << "class " << c;
  EXPECT_EQ(buffer.tokens(), 30 * 49);
  // Its weights are DyTox's; `cts explain` (ViT weights) refuses them, naming the learner.
  EXPECT_NE(test::input_error([&] { load_model_for_inference(dir / "herding" / "model.safetensors", ""); }).find("weights of the dytox learner"),
            std::string::npos);
  // A core tokenset at a fixed byte budget, token dropping with the drop fill, a CRAIG coreset
  // on DyTox's rows, MixUp: each runs and stays within its budget.
  for (const auto& sets : std::vector<std::vector<std::string>>{
           {"memory.strategy=core-tokenset", "memory.samples=0", "memory.budget_bytes=20000", "memory.token_fraction=0.25", "memory.fill=drop"},
           {"memory.coreset=craig", "memory.use_weights=true", "dytox.mixup_alpha=0.8", "memory.fill=zero-pixel"}}) {
    RunOptions r;
    r.out_dir = dir / std::to_string(std::hash<std::string>{}(sets.front()));
    auto t = run_experiment(dytox_config(sets), r);
    EXPECT_TRUE(t.completed) << sets.front();
    if (sets.size() == 5) {
      EXPECT_LE(t.record.memory.bytes, 20000);
      EXPECT_EQ(t.record.memory.tokens, t.record.memory.samples * 12);  // round(0.25 x 49)
    }
  }
  // Attribution needs a ViT encoder: a clear error naming the learner and what works.
  RunOptions g;
  g.out_dir = dir / "gradcam";
  const std::string msg = test::input_error([&] { run_experiment(dytox_config({"memory.strategy=core-tokenset", "memory.tokens=gradcam"}), g); });
  EXPECT_NE(msg.find("dytox"), std::string::npos) << msg;
  EXPECT_NE(msg.find("random"), std::string::npos) << msg;
  Console::get().set_quiet(false);
  // Timm ViT weights have no task-attention block: refused, naming the key.
  DyToxFixture fx;
  fx.model.weights = "vit.safetensors";
  EXPECT_NE(test::input_error([&] { fx.learner(); }).find("model.weights"), std::string::npos);
}

}  // namespace
}  // namespace cts
