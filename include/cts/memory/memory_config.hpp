// The `memory.*` section of a run configuration, its choices as enums (parsed once, when the
// config is read), the fractions s, k, r it resolves to, and the options of the sample and
// token selectors built from it (the one place their settings are copied from the config).
// Keys, defaults and help texts are declared once in src/config/config.cpp.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cts/attribution/token_selector.hpp"
#include "cts/coreset/sample_selector.hpp"
#include "cts/models/vit.hpp"

namespace cts {

enum class MemoryStrategy { None, Cumulative, Coreset, CoreTokens, CoreTokenset };
enum class SelectionMode { TwoStage, Joint };
// grow: each task adds its own memory (fractions of its data, or its share of budget_bytes)
// and nothing is removed. fixed: the memory holds its whole size from the first task on, split
// evenly over the classes seen; when new classes arrive each old class keeps the first of its
// samples in the coreset method's order (iCaRL, DyTox, PyCIL's "fixed memory").
enum class SizePolicy { Grow, Fixed };
enum class ExplainTarget { Label, Predicted };

// Accepted names, in enum order (also the config's accepted values).
const std::vector<std::string>& memory_strategy_names();  // none, cumulative, coreset, core-tokens, core-tokenset
const std::vector<std::string>& selection_mode_names();   // two-stage, joint
const std::vector<std::string>& explain_target_names();   // label, predicted
const std::vector<std::string>& size_policy_names();      // grow, fixed
const char* name_of(MemoryStrategy v);
const char* name_of(SelectionMode v);
const char* name_of(ExplainTarget v);
const char* name_of(SizePolicy v);

// True for the strategies that keep only some tokens of a stored sample.
inline bool keeps_partial_samples(MemoryStrategy s) { return s == MemoryStrategy::CoreTokens || s == MemoryStrategy::CoreTokenset; }
// True for the strategies that select samples into a token buffer.
inline bool selects_memory(MemoryStrategy s) { return s == MemoryStrategy::Coreset || keeps_partial_samples(s); }

struct MemoryConfig {
  MemoryStrategy strategy = MemoryStrategy::CoreTokenset;
  double retention = 0.01;
  std::optional<double> sample_fraction;
  std::optional<double> token_fraction;
  std::optional<double> budget_bytes;  // total buffer bytes after the last task, instead of fractions
  SelectionMode selection = SelectionMode::TwoStage;
  SizePolicy size_policy = SizePolicy::Grow;
  int64_t samples = 0;  // size_policy fixed: samples in memory at every moment (0: from budget_bytes)
  std::string coreset = "random";
  std::string tokens = "random";
  FillMode fill = FillMode::ZeroEmbedding;
  ExplainTarget target = ExplainTarget::Label;
  bool use_weights = false;
  // The selectors' defaults are declared once, in their option structs.
  std::string coreset_gradient = SampleSelectorOptions{}.gradient;          // logits | logits-embedding (craig, gradmatch)
  double gradmatch_lambda = SampleSelectorOptions{}.gradmatch_lambda;       // ridge λ of GradMatch's weight solve
  double gradmatch_tolerance = SampleSelectorOptions{}.gradmatch_tolerance;  // GradMatch stops when ||residual|| / ||target|| < this
  double coreset_memory_mb = double(SampleSelectorOptions{}.craig_matrix_bytes) / (1024.0 * 1024.0);  // largest N×N matrix CRAIG may hold
  double budget_holdout = 0.1;              // budget_bytes: held-out fraction of each class for the split search
  int64_t selection_batch_size = 64;
  int64_t feature_batch_size = 512;
  double atman_factor = TokenSelectorOptions{}.atman_factor;                 // AtMan suppression factor f
  double atman_kappa = TokenSelectorOptions{}.atman_kappa;                   // AtMan cosine threshold for similar tokens
  bool atman_similarity_rank = TokenSelectorOptions{}.atman_similarity_rank;  // rank by similarity to the most relevant token
  int64_t atman_chunk = TokenSelectorOptions{}.atman_chunk;                  // perturbed copies per forward batch
};

// Memory fractions after resolving retention / sample_fraction / token_fraction.
struct MemoryFractions {
  double sample_fraction = 0.0;  // s: fraction of each class's samples kept
  double token_fraction = 0.0;   // k: fraction of each kept sample's tokens
  double retention = 0.0;        // s * k
  bool uses_memory = false;
  // memory.budget_bytes: the buffer's total bytes after the last task. The split between
  // samples and tokens is chosen per task at selection time (memory/budget.hpp); the
  // fractions above are then only the starting guess (plan_byte_budget sets it once the data
  // is known).
  std::optional<int64_t> budget_bytes;
  bool joint = false;  // memory.selection = joint
  // memory.size_policy = fixed: the memory's size at every moment, in samples or in bytes
  // (budget_bytes above stays empty then: it is the grow policy's final total).
  std::optional<int64_t> fixed_samples, fixed_bytes;
};
// InputError for impossible combinations (named keys and what would be accepted).
MemoryFractions resolve_memory_fractions(const MemoryConfig& memory);

// The selectors' options from the memory section (and the run seed for the token methods).
SampleSelectorOptions sample_selector_options(const MemoryConfig& memory);
TokenSelectorOptions token_selector_options(const MemoryConfig& memory, uint64_t seed);

}  // namespace cts
