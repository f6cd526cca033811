// MAE-style self-supervised pretraining (model.learner: mae; He et al. 2022, "Masked
// Autoencoders Are Scalable Vision Learners"). The ViT encoder sees only the kept patches of
// each image (the loop's token dropping: train.token_drop is the mask ratio, e.g. 0.75), a
// light transformer decoder rebuilds every patch from the encoded ones and a shared mask
// token, and the loss is the squared error on the dropped patches only. No labels are read.
//   z       = Enc(x_kept)                          [B, 1 + K, D]: CLS + kept tokens, final norm
//   u       = W_e z + b_e                          [B, 1 + K, D_d]
//   g_t     = u at kept position t, else m (the mask token); g = [u_cls; g_1..T] + p_dec
//   y       = W_y LN(Dec(g))_{1..T} + b_y          [B, T, C·p²]  (Dec: mae.decoder_depth blocks)
//   x̂_t     = patch t of the normalised image, pixels in (c, row, col) order;
//             with mae.norm_pix_loss: (x̂_t − μ_t) / sqrt(σ²_t + 1e-6) over the patch's pixels
//   L       = mean_b [ (1/|M_b|) Σ_{t ∈ M_b} mean_c (y_{b,t,c} − x̂_{b,t,c})² ],  M_b = dropped patches of b
// Evaluation (metric masked_r2): R² = 1 − Σ (y − x̂)² / Σ (x̂ − mean x̂)² over the dropped
// patches of a task's test images, each image with a fixed mask of the same ratio drawn from
// per-sample keys of the run seed. save_weights writes the encoder alone, timm-named without
// a head, for model.weights of the vit-classifier (its head starts fresh).
// Pretraining only: memory.strategy must be none (nothing to replay, no classes to select
// for), and train.token_drop must be an explicit ratio in (0, 1).
#pragma once
#include <torch/torch.h>

#include <utility>

#include "cts/learners/learner.hpp"
#include "cts/models/vit.hpp"

namespace cts {

// x̂: normalised images [B, C, H, W] -> per-patch targets [B, T, C·p²] (token t = row·grid + col).
torch::Tensor mae_targets(const torch::Tensor& images, int64_t patch, bool norm_pix);
// L above, per sample [B]: pred / target [B, T, P], dropped [B, T] bool (true = reconstructed).
torch::Tensor mae_sample_losses(const torch::Tensor& pred, const torch::Tensor& target, const torch::Tensor& dropped);

class MaskedAutoencoder : public Learner {
 public:
  explicit MaskedAutoencoder(const LearnerContext& context);

  std::string kind() const override { return "mae"; }
  int64_t patch_size() const override { return cfg_.patch_size; }
  std::vector<std::string> loss_terms() const override { return {"reconstruction"}; }
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
  bool has_encoder() const override { return false; }  // no class scores to attribute
  CoresetRows coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override;
  std::unique_ptr<ExplainedModel> explained(const SampleBatch& batch, ExplainTarget target) override;
  torch::Tensor sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) override;
  torch::Tensor replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) override;

  // y for uint8 images [B, C, H, W] with kept positions [B, K] (-1 padding): [B, T, C·p²], and
  // the dropped mask [B, T].
  std::pair<torch::Tensor, torch::Tensor> reconstruct(const torch::Tensor& images_u8, const torch::Tensor& positions);

 private:
  std::vector<std::pair<std::string, torch::Tensor>> encoder_parameters() const;  // timm names, no head
  std::vector<std::pair<std::string, torch::Tensor>> decoder_parameters() const;

  torch::Device device_;
  const TaskSplit& split_;
  ViTConfig cfg_;
  MaeSettings settings_;
  uint64_t seed_;
  double mask_ratio_;
  std::vector<std::string> notes_;
  VisionTransformer encoder_{nullptr};
  torch::nn::Linear dec_embed_{nullptr}, dec_pred_{nullptr};
  torch::Tensor mask_token_, dec_pos_;
  torch::nn::ModuleList dec_blocks_{nullptr};
  torch::nn::LayerNorm dec_norm_{nullptr};
  torch::nn::Module decoder_;  // owns the decoder's modules and parameters
  bool training_ = true;
};

}  // namespace cts
