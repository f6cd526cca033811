// Vision-language learner: ViT encoder + causal text decoder with cross-attention; the
// formulas are in learners/vl_decoder/vl_decoder.hpp.
#include "cts/learners/vl_decoder/vl_decoder.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "cts/core/console.hpp"
#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/core/threads.hpp"
#include "cts/data/vl_dataset.hpp"
#include "cts/eval/evaluate.hpp"
#include "cts/eval/text_metrics.hpp"
#include "cts/memory/token_buffer.hpp"

namespace cts {

TeacherBatch teacher_batch(const Payload& payload, const std::string& origin) {
  const int64_t B = payload.size();
  std::vector<VLSequence> seqs;
  int64_t L = 1;
  for (int64_t i = 0; i < B; ++i) {
    seqs.push_back(split_vl_payload(payload.sample(i), origin));
    L = std::max<int64_t>(L, int64_t(seqs.back().prefix.size() + seqs.back().target.size()) + 1);
  }
  auto input = torch::full({B, L}, Vocabulary::kPad, torch::kInt64), labels = torch::full({B, L}, -1, torch::kInt64);
  auto in = input.accessor<int64_t, 2>();
  auto lab = labels.accessor<int64_t, 2>();
  for (int64_t i = 0; i < B; ++i) {
    const auto& s = seqs[size_t(i)];
    int64_t j = 0;
    in[i][j++] = Vocabulary::kBos;
    for (int64_t id : s.prefix) in[i][j++] = id;
    in[i][j++] = Vocabulary::kSep;
    // Position P + 1 (<sep>) predicts y_1, ..., position P + n predicts y_n = <eos>.
    for (size_t k = 0; k < s.target.size(); ++k) {
      lab[i][j - 1] = s.target[k];
      if (k + 1 < s.target.size()) in[i][j++] = s.target[k];
    }
  }
  return {input, labels};
}

torch::Tensor sequence_log_likelihood(const torch::Tensor& logits, const torch::Tensor& labels) {
  auto lp = torch::log_softmax(logits.to(torch::kFloat32), -1);
  auto mask = labels.ge(0);
  auto tok = lp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1);
  return (tok * mask.to(tok.dtype())).sum(1);
}

namespace {

torch::Tensor label_counts(const torch::Tensor& labels) { return labels.ge(0).sum(1).to(torch::kFloat32).clamp_min(1.0); }

// Multi-head attention of queries q [B, Lq, D] over keys / values [B, Lk, D]; `allowed` is a
// bool mask broadcastable to [B, H, Lq, Lk] (undefined: every key).
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t heads, const torch::Tensor& allowed,
                     std::vector<torch::Tensor>* keep = nullptr) {
  const int64_t B = q.size(0), Lq = q.size(1), Lk = k.size(1), D = q.size(2), dh = D / heads;
  auto split = [&](const torch::Tensor& x, int64_t L) { return x.reshape({B, L, heads, dh}).transpose(1, 2); };
  auto scores = torch::matmul(split(q, Lq), split(k, Lk).transpose(-2, -1)) * (1.0 / std::sqrt(double(dh)));
  if (allowed.defined()) scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  auto probs = torch::softmax(scores, -1);  // [B, H, Lq, Lk]
  if (keep) keep->push_back(probs);
  auto out = torch::matmul(probs, split(v, Lk));
  return out.transpose(1, 2).reshape({B, Lq, D});
}

}  // namespace

DecoderBlockImpl::DecoderBlockImpl(int64_t dim, int64_t h, double ln_eps) : heads(h) {
  auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(ln_eps)); };
  norm1 = register_module("norm1", ln());
  self_qkv = register_module("self_qkv", torch::nn::Linear(dim, 3 * dim));
  self_proj = register_module("self_proj", torch::nn::Linear(dim, dim));
  norm2 = register_module("norm2", ln());
  cross_q = register_module("cross_q", torch::nn::Linear(dim, dim));
  cross_kv = register_module("cross_kv", torch::nn::Linear(dim, 2 * dim));
  cross_proj = register_module("cross_proj", torch::nn::Linear(dim, dim));
  norm3 = register_module("norm3", ln());
  fc1 = register_module("fc1", torch::nn::Linear(dim, 4 * dim));
  fc2 = register_module("fc2", torch::nn::Linear(4 * dim, dim));
}

torch::Tensor DecoderBlockImpl::forward(const torch::Tensor& h, const torch::Tensor& memory, const torch::Tensor& memory_valid, DecoderAttention* probe) {
  const int64_t L = h.size(1);
  auto causal = torch::ones({L, L}, torch::TensorOptions().dtype(torch::kBool).device(h.device())).tril();  // [Lq, Lk]: j <= i
  auto qkv = self_qkv(norm1(h)).chunk(3, -1);
  auto a = h + self_proj(attend(qkv[0], qkv[1], qkv[2], heads, causal, probe ? &probe->self : nullptr));
  auto kv = cross_kv(memory).chunk(2, -1);
  torch::Tensor allowed;
  if (memory_valid.defined()) allowed = memory_valid.to(torch::kBool).view({memory_valid.size(0), 1, 1, memory_valid.size(1)});
  auto c = a + cross_proj(attend(cross_q(norm2(a)), kv[0], kv[1], heads, allowed, probe ? &probe->cross : nullptr));
  return c + fc2(torch::gelu(fc1(norm3(c))));
}

TextDecoderImpl::TextDecoderImpl(int64_t vocab, int64_t max_positions, int64_t encoder_dim, int64_t dim, int64_t depth, int64_t heads, double ln_eps,
                                 uint64_t seed) {
  torch::manual_seed(derive_seed(seed, "vl_decoder"));  // Linear / LayerNorm defaults from the run seed
  embed = register_module("embed", torch::nn::Embedding(vocab, dim));
  memory_proj = register_module("memory_proj", torch::nn::Linear(encoder_dim, dim));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < depth; ++i) blocks->push_back(DecoderBlock(dim, heads, ln_eps));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(ln_eps)));
  auto gen = make_generator(seed, "vl_decoder_embeddings");
  {
    torch::NoGradGuard no_grad;
    embed->weight.copy_(trunc_normal({vocab, dim}, 0.02, gen));
  }
  pos = register_parameter("pos_embed", trunc_normal({1, max_positions, dim}, 0.02, gen));
  out_bias = register_parameter("out_bias", torch::zeros({vocab}));
}

torch::Tensor TextDecoderImpl::states(const torch::Tensor& ids, const torch::Tensor& image_tokens, const torch::Tensor& image_valid,
                                      DecoderAttention* probe) {
  const int64_t L = ids.size(1);
  if (L > pos.size(1)) throw_run("vl-decoder: a text of {} tokens exceeds the decoder's {} positions", L, pos.size(1));
  auto h = embed(ids) + pos.narrow(1, 0, L);
  auto m = memory_proj(image_tokens);
  for (auto& b : blocks->children()) h = std::static_pointer_cast<DecoderBlockImpl>(b)->forward(h, m, image_valid, probe);
  return norm(h);
}

torch::Tensor TextDecoderImpl::logits(const torch::Tensor& states) { return torch::matmul(states, embed->weight.t()) + out_bias; }

// ------------------------------------------------------------------ explained score

namespace {

class VLExplained : public ExplainedModel {
 public:
  VLExplained(VisionTransformer& encoder, TextDecoder& decoder, TeacherBatch teacher, torch::Device device)
      : encoder_(encoder), decoder_(decoder), input_(teacher.input.to(device)), labels_(teacher.labels.to(device)) {}
  VisionTransformer* encoder() override { return &encoder_; }
  int64_t num_tokens() const override { return encoder_->config().num_patches(); }
  std::string kind() const override { return "vl-decoder"; }
  // `rows` undefined: every sample of the explained batch, in order.
  torch::Tensor score(const torch::Tensor& tokens, const torch::Tensor& rows) override {
    return sequence_log_likelihood(decoder_->forward(select(input_, rows), tokens, {}), select(labels_, rows)).to(tokens.dtype());
  }
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& rows) override {
    return -score(tokens, rows) / label_counts(select(labels_, rows)).to(tokens.dtype());
  }
  torch::Tensor output_relevance(const torch::Tensor& tokens, double /*alpha*/) override {
    torch::AutoGradMode grad(true);
    auto z = tokens.detach().requires_grad_(true);
    auto s = score(z, {}).sum();
    auto g = torch::autograd::grad({s}, {z})[0];
    return (z * g).detach();
  }
  // The encoder's relevance R^{ii} carried to the explained text through the decoder (the
  // additive rules of Chefer et al. 2021b, learners/vl_decoder/vl_decoder.hpp), read at the
  // positions that predict the target.
  torch::Tensor token_relevance(const torch::Tensor& encoder_relevance, const torch::Tensor& tokens, bool gradient_weighted) override {
    torch::AutoGradMode grad(true);
    auto z = tokens.detach().requires_grad_(true);
    DecoderAttention att;
    auto score = sequence_log_likelihood(decoder_->forward(input_, z, {}, &att), labels_);
    std::vector<torch::Tensor> maps = att.self, grads;
    maps.insert(maps.end(), att.cross.begin(), att.cross.end());
    if (gradient_weighted) grads = torch::autograd::grad({score.sum()}, maps, {}, false, false, /*allow_unused=*/true);
    torch::NoGradGuard no_grad;
    auto bar = [&](size_t i) {  // Ā: mean over heads of (∇A ⊙ A)^+, or of A
      const auto a = maps[i].detach();
      if (!gradient_weighted) return a.mean(1);
      return grads[i].defined() ? (grads[i] * a).clamp_min(0).mean(1) : torch::zeros_like(a.mean(1));
    };
    auto r_ii = encoder_relevance.to(z.dtype());
    if (gradient_weighted) {  // R̄ = (R − I) with rows scaled to sum 1 (0 where empty), + I
      const auto eye = torch::eye(r_ii.size(1), r_ii.options());
      auto res = r_ii - eye;
      const auto sum = res.sum(-1, true);
      r_ii = torch::where(sum.abs() > 0, res / torch::where(sum.abs() > 0, sum, torch::ones_like(sum)), torch::zeros_like(res)) + eye;
    }
    const size_t depth = att.self.size();
    auto r_ti = torch::zeros({z.size(0), input_.size(1), z.size(1)}, z.options());  // [B, L, N]
    for (size_t b = 0; b < depth; ++b) {
      r_ti = r_ti + torch::matmul(bar(b), r_ti);                   // self-attention: R^{ti} += Ā^{tt} R^{ti}
      r_ti = r_ti + torch::matmul(bar(depth + b), r_ii);           // cross-attention: R^{ti} += Ā^{ti} R̄^{ii}
    }
    auto rel = (r_ti * labels_.ge(0).to(r_ti.dtype()).unsqueeze(-1)).sum(1);  // Σ over the scored positions
    return rel.narrow(1, 1, rel.size(1) - 1).to(torch::kCPU, torch::kFloat32).contiguous();
  }

 private:
  static torch::Tensor select(const torch::Tensor& t, const torch::Tensor& rows) {
    return rows.defined() ? t.index_select(0, rows.to(t.device(), torch::kInt64)) : t;
  }
  VisionTransformer& encoder_;
  TextDecoder& decoder_;
  torch::Tensor input_, labels_;
};

}  // namespace

// ------------------------------------------------------------------ learner

VLDecoder::VLDecoder(const LearnerContext& ctx) : device_(ctx.device), split_(ctx.split), settings_(ctx.settings.vl) {
  vocab_ = ctx.data.train->vocabulary();
  text_task_ = ctx.data.train->text_task();
  if (!vocab_ || (text_task_ != "vqa" && text_task_ != "caption"))
    throw_input("model.learner vl-decoder generates text: data.name = {} has no text payload and vocabulary (accepted: sort-of-clevr-vqa, "
                "sort-of-clevr-caption)",
                ctx.dataset);
  if (const char* w = std::getenv("WORLD_SIZE"); w && std::atoi(w) > 1 && text_task_ == "caption")
    throw_input("model.learner vl-decoder on captions: corpus BLEU-4 over test shards cannot be combined exactly across {} processes; run "
                "captioning in one process (WORLD_SIZE 1)",
                w);
  const auto& s = settings_;
  if (s.max_length < 1) throw_input("vl.max_length = {}; accepted: >= 1", s.max_length);
  if (s.beam_size < 1) throw_input("vl.beam_size = {}; accepted: >= 1", s.beam_size);
  cfg_ = vit_config_for_data(ctx.model, ctx.data.train->shape(), ctx.dataset, 1);
  encoder_ = VisionTransformer(cfg_, ctx.seed);
  encoder_->set_attention_mode(ctx.model.attention);
  if (!ctx.model.weights.empty()) {
    notes_ = load_vit_weights(encoder_, ctx.model.weights).notes;
    Console::get().info("loaded {}", ctx.model.weights);
  }
  const int64_t dim = s.decoder_dim > 0 ? s.decoder_dim : cfg_.embed_dim;
  if (dim % s.decoder_heads != 0) throw_input("vl.decoder_dim = {} is not a multiple of vl.decoder_heads = {}", dim, s.decoder_heads);
  // Positions for the longest text of either split plus what generation may add.
  int64_t longest = 0;
  for (const auto* d : {ctx.data.train.get(), ctx.data.test.get()})
    if (d->size() > 0) longest = std::max(longest, d->payloads(torch::arange(d->size(), torch::kInt64)).lengths.max().item<int64_t>());
  decoder_ = TextDecoder(vocab_->size(), longest + s.max_length + 2, cfg_.embed_dim, dim, s.decoder_depth, s.decoder_heads, cfg_.ln_eps, ctx.seed);
  encoder_->to(device_);
  decoder_->to(device_);
}

std::vector<MetricSpec> VLDecoder::metrics() const {
  if (text_task_ == "vqa") return {{"exact_match", "VQA exact match", "", "", true}};
  return {{"bleu4", "BLEU-4", "", "", true}, {"rouge_l", "ROUGE-L", "rouge_l", "", true}};
}

std::vector<std::pair<std::string, torch::Tensor>> VLDecoder::encoder_parameters() const { return encoder_parameters_without_head(encoder_); }

std::vector<std::pair<std::string, torch::Tensor>> VLDecoder::trainable_parameters() {
  auto out = encoder_parameters();
  for (auto& p : prefixed_parameters(*decoder_, "decoder.")) out.push_back(p);
  return out;
}

int64_t VLDecoder::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, t] : encoder_parameters()) n += t.numel();
  for (const auto& p : decoder_->parameters()) n += p.numel();
  return n;
}

bool VLDecoder::set_training(bool training) {
  const bool was = training_;
  training_ = training;
  encoder_->train(training);
  decoder_->train(training);
  return was;
}

std::pair<torch::Tensor, torch::Tensor> VLDecoder::encode(const Batch& b) {
  std::pair<torch::Tensor, torch::Tensor> e;
  if (b.patches.defined()) e = encoder_->embed_patches(encoder_->normalize_patches(b.patches), b.keep.positions, b.keep.rescale);
  else e = encoder_->embed(encoder_->normalize(b.images), b.partial() ? &b.keep : nullptr);
  return {encoder_->encode(e.first, e.second, nullptr), e.second};
}

StepLoss VLDecoder::step_loss(int64_t, const Batch& new_data, const Batch* replay) {
  auto nll_loss = [this](const Batch& b) -> torch::Tensor {
    if (b.size() == 0) return {};
    if (b.payload.empty()) throw_run("vl-decoder: a batch without text payloads");
    const auto tb = teacher_batch(b.payload, "training batch");
    auto [tokens, valid] = encode(b);
    auto labels = tb.labels.to(device_);
    auto nll = -sequence_log_likelihood(decoder_->forward(tb.input.to(device_), tokens, valid), labels) / label_counts(labels);
    return b.weights.defined() ? b.weighted_mean_of(nll, b.weights.to(nll.device())) : b.mean_of(nll);
  };
  StepLoss loss;
  loss.push_back({"new", [nll_loss, &new_data] { return nll_loss(new_data); }});
  loss.push_back({"replay", [nll_loss, replay] { return replay ? nll_loss(*replay) : torch::Tensor(); }});
  return loss;
}

std::vector<Generation> VLDecoder::greedy(const torch::Tensor& tokens, const std::vector<std::vector<int64_t>>& prefixes, int64_t max_length) {
  const int64_t B = int64_t(prefixes.size());
  std::vector<Generation> out(static_cast<size_t>(B));
  int64_t longest = 0;
  for (const auto& p : prefixes) longest = std::max<int64_t>(longest, int64_t(p.size()) + 2);
  auto ids = torch::full({B, longest + max_length}, Vocabulary::kPad, torch::kInt64);
  std::vector<int64_t> len(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) {
    auto row = ids[i];
    row[0] = Vocabulary::kBos;
    for (size_t k = 0; k < prefixes[size_t(i)].size(); ++k) row[int64_t(k) + 1] = prefixes[size_t(i)][k];
    row[int64_t(prefixes[size_t(i)].size()) + 1] = Vocabulary::kSep;
    len[size_t(i)] = int64_t(prefixes[size_t(i)].size()) + 2;
  }
  std::vector<int64_t> active(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) active[size_t(i)] = i;
  for (int64_t step = 0; step < max_length && !active.empty(); ++step) {
    int64_t L = 0;
    for (int64_t i : active) L = std::max(L, len[size_t(i)]);
    auto rows = torch::tensor(active, torch::kInt64);
    auto logits = decoder_->forward(ids.index_select(0, rows).narrow(1, 0, L).to(device_), tokens.index_select(0, rows.to(device_)), {});
    std::vector<int64_t> last;
    for (int64_t i : active) last.push_back(len[size_t(i)] - 1);
    auto at = logits.gather(1, torch::tensor(last, torch::kInt64).to(device_).view({-1, 1, 1}).expand({-1, 1, logits.size(2)})).squeeze(1);
    auto lp = torch::log_softmax(at.to(torch::kFloat32), -1).to(torch::kCPU);
    auto [best, arg] = lp.max(-1);
    std::vector<int64_t> still;
    for (size_t r = 0; r < active.size(); ++r) {
      const int64_t i = active[r], token = arg[int64_t(r)].item<int64_t>();
      auto& g = out[size_t(i)];
      g.ids.push_back(token);
      g.log_likelihood += best[int64_t(r)].item<double>();
      ids[i][len[size_t(i)]++] = token;
      if (token != Vocabulary::kEos) still.push_back(i);
    }
    active = std::move(still);
  }
  return out;
}

Generation VLDecoder::beam(const torch::Tensor& tokens, const std::vector<int64_t>& prefix, int64_t beam_size, int64_t max_length) {
  struct Hyp {
    std::vector<int64_t> ids;
    double lp = 0.0;
  };
  std::vector<int64_t> start{Vocabulary::kBos};
  start.insert(start.end(), prefix.begin(), prefix.end());
  start.push_back(Vocabulary::kSep);
  std::vector<Hyp> alive{Hyp{}};
  std::vector<Hyp> finished;
  for (int64_t step = 0; step < max_length && !alive.empty(); ++step) {
    const int64_t A = int64_t(alive.size()), L = int64_t(start.size()) + step;
    auto ids = torch::empty({A, L}, torch::kInt64);
    for (int64_t a = 0; a < A; ++a) {
      for (size_t k = 0; k < start.size(); ++k) ids[a][int64_t(k)] = start[k];
      for (size_t k = 0; k < alive[size_t(a)].ids.size(); ++k) ids[a][int64_t(start.size() + k)] = alive[size_t(a)].ids[k];
    }
    auto logits = decoder_->forward(ids.to(device_), tokens.expand({A, tokens.size(1), tokens.size(2)}), {});
    auto lp = torch::log_softmax(logits.select(1, L - 1).to(torch::kFloat32), -1).to(torch::kCPU, torch::kFloat64);  // [A, V]
    const int64_t V = lp.size(1);
    std::vector<double> base;
    for (const auto& h : alive) base.push_back(h.lp);
    auto total = lp + torch::tensor(base, torch::kFloat64).view({A, 1});
    // The 2k best extensions: at most k of them end (<eos>), so k live ones remain when possible.
    auto [vals, idx] = total.view({-1}).topk(std::min<int64_t>(2 * beam_size, A * V));
    std::vector<Hyp> next;
    for (int64_t c = 0; c < vals.size(0) && int64_t(next.size()) < beam_size; ++c) {
      const int64_t flat = idx[c].item<int64_t>(), a = flat / V, token = flat % V;
      Hyp h{alive[size_t(a)].ids, vals[c].item<double>()};
      h.ids.push_back(token);
      if (token == Vocabulary::kEos || step + 1 == max_length) finished.push_back(std::move(h));
      else next.push_back(std::move(h));
    }
    alive = std::move(next);
    // Log-likelihoods only fall as a hypothesis grows: stop once a finished one beats every live one.
    double best_finished = -INFINITY, best_alive = -INFINITY;
    for (const auto& h : finished) best_finished = std::max(best_finished, h.lp);
    for (const auto& h : alive) best_alive = std::max(best_alive, h.lp);
    if (best_finished >= best_alive) break;
  }
  for (auto& h : alive) finished.push_back(std::move(h));  // cut by the length limit
  const auto best = std::max_element(finished.begin(), finished.end(), [](const Hyp& a, const Hyp& b) { return a.lp < b.lp; });
  return {best->ids, best->lp};
}

std::vector<Generation> VLDecoder::generate_eval(const torch::Tensor& images_u8, const std::vector<std::vector<int64_t>>& prefixes, int64_t beam_size,
                                                 int64_t max_length) {
  torch::NoGradGuard no_grad;
  auto tokens = encoder_->forward_features(encoder_->normalize(images_u8));
  if (beam_size <= 1) return greedy(tokens, prefixes, max_length);
  std::vector<Generation> out;
  for (size_t i = 0; i < prefixes.size(); ++i) out.push_back(beam(tokens.narrow(0, int64_t(i), 1), prefixes[i], beam_size, max_length));
  return out;
}

std::vector<Generation> VLDecoder::generate(const torch::Tensor& images_u8, const std::vector<std::vector<int64_t>>& prefixes, int64_t beam_size,
                                            int64_t max_length) {
  const bool was = set_training(false);
  auto out = generate_eval(images_u8, prefixes, beam_size, max_length);
  set_training(was);
  return out;
}

torch::Tensor VLDecoder::log_likelihood(const torch::Tensor& images_u8, const Payload& payload) {
  const bool was = set_training(false);
  torch::NoGradGuard no_grad;
  const auto tb = teacher_batch(payload, "log_likelihood");
  auto tokens = encoder_->forward_features(encoder_->normalize(images_u8));
  auto out = sequence_log_likelihood(decoder_->forward(tb.input.to(device_), tokens, {}), tb.labels.to(device_)).to(torch::kCPU);
  set_training(was);
  return out;
}

std::vector<TaskScores> VLDecoder::evaluate(const Dataset& test, int64_t tasks_trained, const std::vector<int64_t>& tasks, int64_t batch_size) {
  (void)tasks_trained;
  const bool was = set_training(false);
  std::vector<TaskScores> out(static_cast<size_t>(split_.num_tasks()));
  for (auto& s : out)
    for (const auto& m : metrics()) s[m.name] = NAN;
  for (int64_t t : tasks) {
    const auto idx = split_.task_indices(test, t);
    const int64_t n = idx.size(0), batches = (n + batch_size - 1) / batch_size;
    if (n == 0) continue;
    std::vector<std::string> hyps(static_cast<size_t>(n)), refs(static_cast<size_t>(n));
    parallel_jobs(batches, [&](int64_t k) {
      const int64_t i0 = k * batch_size, b = std::min(batch_size, n - i0);
      const auto ids = idx.narrow(0, i0, b);
      const auto payload = test.payloads(ids);
      std::vector<std::vector<int64_t>> prefixes;
      for (int64_t i = 0; i < b; ++i) {
        auto s = split_vl_payload(payload.sample(i), "test sample");
        prefixes.push_back(s.prefix);
        refs[size_t(i0 + i)] = vocab_->decode(s.target);
      }
      const auto gen = generate_eval(test.images(ids), prefixes, settings_.beam_size, settings_.max_length);
      for (int64_t i = 0; i < b; ++i) hyps[size_t(i0 + i)] = vocab_->decode(gen[size_t(i)].ids);
    });
    auto& s = out[size_t(t)];
    if (text_task_ == "vqa") {
      int64_t right = 0;
      for (int64_t i = 0; i < n; ++i) right += vqa_exact_match(hyps[size_t(i)], refs[size_t(i)]);
      s["exact_match"] = double(right) / double(n);
    } else {
      std::vector<std::vector<std::string>> r;
      for (auto& x : refs) r.push_back({x});
      s["bleu4"] = corpus_bleu(hyps, r).score;
      s["rouge_l"] = corpus_rouge_l(hyps, r);
    }
  }
  set_training(was);
  return out;
}

CoresetRows VLDecoder::coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) {
  const bool was = set_training(false);
  const int64_t n = indices.size(0), batches = (n + batch_size - 1) / batch_size;
  const int64_t D = decoder_->norm->weight.size(0), V = vocab_->size();
  std::vector<torch::Tensor> feats(static_cast<size_t>(batches)), grads(static_cast<size_t>(batches));
  parallel_jobs(batches, [&](int64_t k) {  // one thread per batch: the same rows on any number of threads
    torch::NoGradGuard no_grad;
    const auto ids = indices.narrow(0, k * batch_size, std::min(batch_size, n - k * batch_size));
    const auto tb = teacher_batch(data.payloads(ids), "coreset rows");
    auto tokens = encoder_->forward_features(encoder_->normalize(data.images(ids)));
    auto h = decoder_->states(tb.input.to(device_), tokens, {});
    auto labels = tb.labels.to(device_);
    auto mask = labels.ge(0).to(torch::kFloat32).unsqueeze(-1);  // [B, L, 1]
    auto count = mask.sum(1);                                     // [B, 1]
    auto p = torch::softmax(decoder_->logits(h).to(torch::kFloat32), -1);
    auto onehot = torch::one_hot(labels.clamp_min(0), V).to(torch::kFloat32);
    feats[size_t(k)] = ((h.to(torch::kFloat32) * mask).sum(1) / count).to(torch::kCPU);
    grads[size_t(k)] = (((p - onehot) * mask).sum(1) / count).to(torch::kCPU);
  });
  set_training(was);
  if (n == 0) return {torch::zeros({0, D}), torch::zeros({0, V})};
  return {torch::cat(feats), torch::cat(grads)};
}

std::unique_ptr<ExplainedModel> VLDecoder::explained(const SampleBatch& batch, ExplainTarget target) {
  auto tb = teacher_batch(batch.payload, "attribution batch");
  if (target == ExplainTarget::Predicted) {
    std::vector<std::vector<int64_t>> prefixes;
    for (int64_t i = 0; i < batch.payload.size(); ++i) prefixes.push_back(split_vl_payload(batch.payload.sample(i), "attribution batch").prefix);
    const auto gen = generate_eval(batch.images, prefixes, 1, settings_.max_length);  // no dropout: the same in either mode
    std::vector<int32_t> values;
    std::vector<int64_t> lengths;
    for (size_t i = 0; i < prefixes.size(); ++i) {
      std::vector<int64_t> ids = prefixes[i];
      ids.push_back(Vocabulary::kSep);
      ids.insert(ids.end(), gen[i].ids.begin(), gen[i].ids.end());
      if (ids.back() != Vocabulary::kEos) ids.push_back(Vocabulary::kEos);
      for (int64_t id : ids) values.push_back(int32_t(id));
      lengths.push_back(int64_t(ids.size()));
    }
    Payload p{torch::tensor(values, torch::kInt32), torch::tensor(lengths, torch::kInt64)};
    tb = teacher_batch(p, "attribution batch");
  }
  return std::make_unique<VLExplained>(encoder_, decoder_, tb, device_);
}

torch::Tensor VLDecoder::sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) {
  return extract_features(encoder_, data, indices, batch_size);
}

torch::Tensor VLDecoder::replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) {
  return extract_replay_features(encoder_, buffer, fill, rescale, batch_size);
}

std::map<std::string, torch::Tensor> VLDecoder::state_tensors() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : encoder_parameters()) out[name] = t;
  for (const auto& [name, t] : prefixed_parameters(*decoder_, "decoder.")) out[name] = t;
  return out;
}

void VLDecoder::load_state(const nlohmann::json&, const std::map<std::string, torch::Tensor>& tensors) {
  copy_named_tensors(state_tensors(), tensors, "vl-decoder checkpoint");
}

void VLDecoder::save_weights(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) const {
  std::vector<SafetensorsTensor> tensors;
  for (const auto& [name, t] : state_tensors()) tensors.push_back({name, t.detach().to(torch::kCPU, torch::kFloat32).contiguous(), ""});
  auto meta = vit_metadata(cfg_);
  meta.erase("cts.num_classes");
  const std::string vocab = vocab_->to_json().dump();
  meta["cts.learner"] = "vl-decoder";
  meta["cts.text_task"] = text_task_;
  meta["cts.vocabulary"] = vocab;
  meta["cts.decoder"] = nlohmann::json{{"dim", decoder_->norm->weight.size(0)}, {"depth", int64_t(decoder_->blocks->size())},
                                       {"heads", settings_.decoder_heads}, {"positions", decoder_->max_positions()}}
                            .dump();
  for (const auto& [k, v] : metadata) meta[k] = v;
  save_safetensors(path, tensors, meta);
  write_file_atomic(path.parent_path() / "vocabulary.json", vocab_->to_json().dump(2) + "\n");
}

}  // namespace cts
