// Vision-language learner (model.learner: vl-decoder): the cts ViT encodes the image tokens
// (with the same partial-input fills as the classifier), a transformer text decoder reads
// them through cross-attention and generates the answer (VQA, conditioned on the question)
// or the caption (conditioned on a fixed prompt). Data: a vision-language dataset
// (data/vl_dataset.hpp: payload [prefix, <sep>, target, <eos>], a vocabulary).
//   z    = Enc(x)                          [B, N, D_e] final-norm tokens (CLS + patch tokens; drop fill: kept ones)
//   m    = W_m z + b_m                     [B, N, D]   the decoder's memory, keys masked where z is padding
//   s    = [<bos>, prefix, <sep>, y_1 .. y_{n-1}]      the target y = (y_1 .. y_n), y_n = <eos>
//   h⁰   = E[s] + P                        E: word embeddings [V, D], P: learned positions
//   per block l:  a = h + SelfAttn(LN₁ h)  (causal: position i attends to j <= i)
//                 c = a + CrossAttn(LN₂ a, m)
//                 h = c + MLP(LN₃ c)       (GELU, hidden 4D)
//   logits = LN(h) Eᵀ + b                  (output layer tied to the embedding)
//   NLL    = −(1/n) Σ_j log p(y_j | s_{<=P+1+j}, z) per sample; loss = batch mean (replay:
//            Σ w NLL / Σ w with memory.use_weights)
// Generation from [<bos>, prefix, <sep>]: greedy (vl.beam_size 1) or beam search of width k
// (hypotheses ranked by sequence log-likelihood, no length penalty; a finished hypothesis
// wins once no live one can beat it), at most vl.max_length tokens.
// Metrics per task: VQA `exact_match` (both sides normalised as the VQA evaluation);
// captioning `bleu4` (corpus BLEU-4, 13a tokens, exp smoothing: sacreBLEU) and `rouge_l`
// (mean ROUGE-L F). References are the test payloads' targets, decoded.
// Memory selection: coreset features = the mean over target positions of the decoder's
// final-norm states [D]; gradient rows = the mean over target positions of softmax(logits) −
// onehot(y_j) [V] (the output bias's gradient). Attribution explains the sequence
// log-likelihood Σ_j log p(y_j | ·) of the reference (ExplainTarget::Predicted: of the model's
// greedy output); AtMan's loss is the mean NLL; gradlrp's relevance of the encoder's output
// tokens is gradient × input of that score (the relevance entering the encoder through the
// cross-attention, first-order rule), then walks the encoder as for the classifier.
// rollout and chefer-generic carry the encoder's token-to-token relevance R^{ii} (joint
// attention / generic-rule relevance) through the decoder to the text, with the additive
// rules of Chefer et al. 2021b ("Generic attention-model explainability for bi-modal and
// encoder-decoder transformers"), Ā_b = mean_h (∇A_b ⊙ A_b)^+ (chefer-generic; gradients of the
// sequence log-likelihood) or mean_h A_b (rollout):
//   R^{ti} = 0 [L, N];  per decoder block b:  R^{ti} += Ā^{tt}_b R^{ti}   (causal self-attention)
//                                              R^{ti} += Ā^{ti}_b R̄^{ii}  (cross-attention)
//   R̄^{ii} = (R^{ii} − I) with rows scaled to sum 1, + I (chefer-generic; rollout's joint
//   attention already has rows summing to 1 and is used as it is);
//   relevance of patch t = Σ_{j scored} R^{ti}[j, 1 + t]   (j: the positions predicting the target).
// The paper's cross-attention rule also multiplies by the text side's own normalised
// relevance (R̄^{tt})ᵀ; here the text positions' mixing is carried by the self-attention rule
// alone (each position's row of R^{ti} collects what reached it), which keeps R^{ti} a sum of
// attention paths from a scored position down to the image tokens.
// Weights: model.safetensors = the encoder (timm names, no head) + decoder.* + the vocabulary
// in the metadata (cts.vocabulary); vocabulary.json next to it. model.weights loads a ViT
// encoder (e.g. the MAE or classifier weights; a head is ignored).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "cts/data/vocabulary.hpp"
#include "cts/learners/learner.hpp"
#include "cts/models/vit.hpp"

namespace cts {

// Teacher-forcing inputs of payloads: input [B, L] (s above, <pad> after the end) and labels
// [B, L] (y_j at the position that predicts it, −1 elsewhere). InputError naming `origin`
// for a payload without <sep>.
struct TeacherBatch {
  torch::Tensor input, labels;
};
TeacherBatch teacher_batch(const Payload& payload, const std::string& origin);

// Per-sample Σ_j log p(y_j) over the labelled positions, [B] float: logits [B, L, V], labels [B, L].
torch::Tensor sequence_log_likelihood(const torch::Tensor& logits, const torch::Tensor& labels);

// The decoder's attention probabilities, per block (attribution): self [B, H, L, L], cross
// [B, H, L, N]; in the autograd graph.
struct DecoderAttention {
  std::vector<torch::Tensor> self, cross;
};

struct DecoderBlockImpl : torch::nn::Module {
  DecoderBlockImpl(int64_t dim, int64_t heads, double ln_eps);
  // h [B, L, D], memory m [B, N, D], memory_valid [B, N] bool or undefined.
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& memory, const torch::Tensor& memory_valid, DecoderAttention* probe = nullptr);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  torch::nn::Linear self_qkv{nullptr}, self_proj{nullptr}, cross_q{nullptr}, cross_kv{nullptr}, cross_proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  int64_t heads;
};
TORCH_MODULE(DecoderBlock);

struct TextDecoderImpl : torch::nn::Module {
  TextDecoderImpl(int64_t vocab, int64_t max_positions, int64_t encoder_dim, int64_t dim, int64_t depth, int64_t heads, double ln_eps, uint64_t seed);
  // ids [B, L] int64, image tokens z [B, N, D_e] (+ valid [B, N]) -> final-norm states [B, L, D].
  torch::Tensor states(const torch::Tensor& ids, const torch::Tensor& image_tokens, const torch::Tensor& image_valid, DecoderAttention* probe = nullptr);
  torch::Tensor logits(const torch::Tensor& states);  // [B, L, V]
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& image_tokens, const torch::Tensor& image_valid,
                        DecoderAttention* probe = nullptr) {
    return logits(states(ids, image_tokens, image_valid, probe));
  }
  int64_t max_positions() const { return pos.size(1); }

  torch::nn::Embedding embed{nullptr};
  torch::Tensor pos, out_bias;
  torch::nn::Linear memory_proj{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(TextDecoder);

// A generated sequence: ids after <sep> (ending with <eos> unless the length limit cut it),
// and its log-likelihood under the model.
struct Generation {
  std::vector<int64_t> ids;
  double log_likelihood = 0.0;
};

class VLDecoder : public Learner {
 public:
  explicit VLDecoder(const LearnerContext& context);

  std::string kind() const override { return "vl-decoder"; }
  int64_t patch_size() const override { return cfg_.patch_size; }
  std::vector<std::string> loss_terms() const override { return {"new", "replay"}; }
  std::vector<MetricSpec> metrics() const override;
  std::vector<std::pair<std::string, torch::Tensor>> trainable_parameters() override;
  int64_t parameter_count() const override;
  std::vector<std::string> weight_notes() const override { return notes_; }

  void begin_task(int64_t) override {}
  StepLoss step_loss(int64_t task, const Batch& new_data, const Batch* replay) override;
  std::vector<TaskScores> evaluate(const Dataset& test, int64_t tasks_trained, const std::vector<int64_t>& tasks, int64_t batch_size) override;

  std::map<std::string, torch::Tensor> state_tensors() const override;
  nlohmann::json state_info() const override { return nlohmann::json::object(); }
  void load_state(const nlohmann::json& info, const std::map<std::string, torch::Tensor>& tensors) override;
  void save_weights(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) const override;

  bool set_training(bool training) override;
  int64_t num_tokens() const override { return cfg_.num_patches(); }
  CoresetRows coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override;
  std::unique_ptr<ExplainedModel> explained(const SampleBatch& batch, ExplainTarget target) override;
  torch::Tensor sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override;
  torch::Tensor replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) override;

  // Generation for uint8 images [B, C, H, W] and their prefixes (ids before <sep>), greedy
  // (beam_size 1) or beam search; eval mode, no gradients.
  std::vector<Generation> generate(const torch::Tensor& images_u8, const std::vector<std::vector<int64_t>>& prefixes, int64_t beam_size,
                                   int64_t max_length);
  // Σ log p(target | image, prefix) of full images, [B] (what generation ranks by).
  torch::Tensor log_likelihood(const torch::Tensor& images_u8, const Payload& payload);
  const Vocabulary& vocabulary() const { return *vocab_; }
  VisionTransformer& encoder() { return encoder_; }
  TextDecoder& decoder() { return decoder_; }

 private:
  std::pair<torch::Tensor, torch::Tensor> encode(const Batch& batch);  // image tokens and key validity
  std::vector<std::pair<std::string, torch::Tensor>> encoder_parameters() const;  // timm names, no head
  std::vector<Generation> greedy(const torch::Tensor& tokens, const std::vector<std::vector<int64_t>>& prefixes, int64_t max_length);
  Generation beam(const torch::Tensor& tokens, const std::vector<int64_t>& prefix, int64_t beam_size, int64_t max_length);
  // generate() for a model already in eval mode (parallel evaluation jobs never set the mode).
  std::vector<Generation> generate_eval(const torch::Tensor& images_u8, const std::vector<std::vector<int64_t>>& prefixes, int64_t beam_size,
                                        int64_t max_length);

  torch::Device device_;
  const TaskSplit& split_;
  std::shared_ptr<const Vocabulary> vocab_;
  std::string text_task_;  // vqa | caption
  ViTConfig cfg_;
  VLSettings settings_;
  std::vector<std::string> notes_;
  VisionTransformer encoder_{nullptr};
  TextDecoder decoder_{nullptr};
  bool training_ = true;
};

}  // namespace cts
