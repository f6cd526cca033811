// Settings of particular learners (config sections named after them, e.g. `dytox.*`). The
// config part (above the learners) holds one LearnerSettings; a learner reads its own member.
#pragma once
#include <cstdint>
#include <string>

namespace cts {

struct DyToxSettings {
  double divergence_weight = 0.1;  // λ of the divergence loss (the original's head_div)
  double kd_temperature = 1.0;     // τ of the distillation (the original's distillation_tau)
  int64_t finetune_epochs = 20;    // balanced finetuning after each task t >= 1 (the original's CIFAR setting)
  double finetune_lr = 1.25e-5;    // its constant learning rate: the original's 5e-5 x batch 128 / 512
  double mixup_alpha = 0.0;        // > 0: MixUp of new data with lambda ~ Beta(alpha, alpha) (DyTox+: 0.8)
  std::string task_token_init = "trunc-normal";  // a new task token: trunc-normal (the original code) or copy (of the previous token)
};

// The vit-classifier learner (`classifier.*`).
struct ClassifierSettings {
  // Class-IL bias correction after each task from the second on: none, or weight-aligning
  // (Zhao et al. 2020: the new classes' head rows are rescaled to the old rows' mean norm).
  std::string bias_correction = "none";
};

// The mae learner (`mae.*`): the decoder of MAE-style pretraining.
struct MaeSettings {
  int64_t decoder_dim = 0;    // width D_d; 0: half the encoder's width
  int64_t decoder_depth = 2;  // transformer blocks
  int64_t decoder_heads = 4;  // attention heads (divide D_d)
  bool norm_pix_loss = true;  // targets normalised per patch (MAE's default for better features)
};

// The vl-decoder learner (`vl.*`): its text decoder and how it generates.
struct VLSettings {
  int64_t decoder_dim = 0;    // width; 0: the encoder's
  int64_t decoder_depth = 2;  // decoder blocks (causal self-attention, cross-attention, MLP)
  int64_t decoder_heads = 4;  // attention heads (divide the width)
  int64_t max_length = 32;    // generated tokens at most, <eos> included
  int64_t beam_size = 1;      // 1: greedy decoding; k > 1: beam search of width k
};

struct LearnerSettings {
  ClassifierSettings classifier;
  DyToxSettings dytox;
  MaeSettings mae;
  VLSettings vl;
};

}  // namespace cts
