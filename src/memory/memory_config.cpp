// Memory section: enum names, the fractions s, k, r, and the selector options.
#include "cts/memory/memory_config.hpp"

#include <fmt/format.h>

#include <cmath>

#include "cts/core/error.hpp"

namespace cts {

const std::vector<std::string>& memory_strategy_names() {
  static const std::vector<std::string> names = {"none", "cumulative", "coreset", "core-tokens", "core-tokenset"};
  return names;
}
const std::vector<std::string>& selection_mode_names() {
  static const std::vector<std::string> names = {"two-stage", "joint"};
  return names;
}
const std::vector<std::string>& explain_target_names() {
  static const std::vector<std::string> names = {"label", "predicted"};
  return names;
}
const std::vector<std::string>& size_policy_names() {
  static const std::vector<std::string> names = {"grow", "fixed"};
  return names;
}
const char* name_of(SizePolicy v) { return size_policy_names().at(static_cast<size_t>(v)).c_str(); }
const char* name_of(MemoryStrategy v) { return memory_strategy_names().at(static_cast<size_t>(v)).c_str(); }
const char* name_of(SelectionMode v) { return selection_mode_names().at(static_cast<size_t>(v)).c_str(); }
const char* name_of(ExplainTarget v) { return explain_target_names().at(static_cast<size_t>(v)).c_str(); }

namespace {

// memory.size_policy = fixed: a memory of `samples` samples, or of `budget_bytes`, from the
// first task on; core-tokenset samples keep token_fraction (given, else sqrt(retention)) of
// their tokens.
MemoryFractions resolve_fixed(const MemoryConfig& m) {
  if (m.strategy != MemoryStrategy::Coreset && m.strategy != MemoryStrategy::CoreTokenset) {
    throw_input("memory.size_policy = fixed keeps a fixed number of samples: it needs memory.strategy = coreset or core-tokenset, got {}",
                name_of(m.strategy));
  }
  if (m.selection != SelectionMode::TwoStage) throw_input("memory.size_policy = fixed works with memory.selection = two-stage, got joint");
  if ((m.samples > 0) == m.budget_bytes.has_value()) {
    throw_input("memory.size_policy = fixed needs exactly one of memory.samples (> 0) and memory.budget_bytes; got {}",
                m.samples > 0 ? "both" : "neither");
  }
  if (m.sample_fraction) throw_input("memory.size_policy = fixed sizes the memory by memory.samples or memory.budget_bytes: set memory.sample_fraction to null");
  MemoryFractions f;
  f.uses_memory = true;
  if (m.samples > 0) f.fixed_samples = m.samples;
  else {
    if (*m.budget_bytes < 1.0 || *m.budget_bytes > 9.0e18) throw_input("memory.budget_bytes = {} is out of range; accepted: [1, 9e18] bytes", *m.budget_bytes);
    f.fixed_bytes = static_cast<int64_t>(std::floor(*m.budget_bytes));
  }
  if (m.strategy == MemoryStrategy::Coreset) {
    if (m.token_fraction && *m.token_fraction != 1.0) throw_input("memory.strategy = coreset keeps whole samples: memory.token_fraction must be null or 1 (use core-tokenset)");
    f.token_fraction = 1.0;
  } else {
    f.token_fraction = m.token_fraction ? *m.token_fraction : std::sqrt(m.retention);
  }
  f.sample_fraction = 1.0;  // per class: what the memory's size affords (selection computes it)
  f.retention = f.token_fraction;
  return f;
}

}  // namespace

MemoryFractions resolve_memory_fractions(const MemoryConfig& m) {
  if (m.size_policy == SizePolicy::Fixed) return resolve_fixed(m);
  if (m.samples > 0) throw_input("memory.samples = {} sizes a fixed memory: it needs memory.size_policy = fixed", m.samples);
  MemoryFractions f;
  const double r = m.retention;
  if (m.selection == SelectionMode::Joint && m.strategy != MemoryStrategy::CoreTokenset) {
    throw_input("memory.selection = joint selects (sample, token) pairs: it needs memory.strategy = core-tokenset, got {}", name_of(m.strategy));
  }
  if (m.budget_bytes) {
    if (!selects_memory(m.strategy)) {
      throw_input("memory.budget_bytes = {} needs a memory that selects (coreset, core-tokens or core-tokenset), got memory.strategy = {}",
                  *m.budget_bytes, name_of(m.strategy));
    }
    if (m.sample_fraction || m.token_fraction) {
      throw_input("memory.budget_bytes = {} and memory.{} both fix the memory size; give one of them (set the other to null)",
                  *m.budget_bytes, m.sample_fraction ? "sample_fraction" : "token_fraction");
    }
    if (*m.budget_bytes < 1.0 || *m.budget_bytes > 9.0e18) throw_input("memory.budget_bytes = {} is out of range; accepted: [1, 9e18] bytes", *m.budget_bytes);
    f.budget_bytes = static_cast<int64_t>(std::floor(*m.budget_bytes));
    f.joint = m.selection == SelectionMode::Joint;
    f.uses_memory = true;
    // Placeholders until the data is known (plan_byte_budget sets the starting guess).
    f.sample_fraction = m.strategy == MemoryStrategy::CoreTokens ? 1.0 : r;
    f.token_fraction = m.strategy == MemoryStrategy::Coreset ? 1.0 : (m.strategy == MemoryStrategy::CoreTokens ? r : std::sqrt(r));
    if (m.strategy == MemoryStrategy::CoreTokenset) f.sample_fraction = std::sqrt(r);
    f.retention = f.sample_fraction * f.token_fraction;
    return f;
  }
  f.joint = m.selection == SelectionMode::Joint;
  auto other = [&](double given, const char* given_key, const char* derived_key) {
    const double v = r / given;
    if (v > 1.0 + 1e-12) {
      throw_input("memory.retention = {} with memory.{} = {} needs memory.{} = {} > 1; lower retention or raise {}", r,
                  given_key, given, derived_key, v, given_key);
    }
    return std::min(v, 1.0);
  };
  switch (m.strategy) {
    case MemoryStrategy::None:
      return f;
    case MemoryStrategy::Cumulative:
      f.sample_fraction = f.token_fraction = 1.0;
      break;
    case MemoryStrategy::Coreset:
      if (m.token_fraction && *m.token_fraction != 1.0) throw_input("memory.strategy = coreset keeps whole samples: memory.token_fraction must be null or 1 (use core-tokenset)");
      f.token_fraction = 1.0;
      f.sample_fraction = m.sample_fraction ? *m.sample_fraction : r;
      break;
    case MemoryStrategy::CoreTokens:
      if (m.sample_fraction && *m.sample_fraction != 1.0) throw_input("memory.strategy = core-tokens keeps every sample: memory.sample_fraction must be null or 1 (use core-tokenset)");
      f.sample_fraction = 1.0;
      f.token_fraction = m.token_fraction ? *m.token_fraction : r;
      break;
    case MemoryStrategy::CoreTokenset:
      if (m.sample_fraction && m.token_fraction) {
        f.sample_fraction = *m.sample_fraction;
        f.token_fraction = *m.token_fraction;
      } else if (m.sample_fraction) {
        f.sample_fraction = *m.sample_fraction;
        f.token_fraction = other(*m.sample_fraction, "sample_fraction", "token_fraction");
      } else if (m.token_fraction) {
        f.token_fraction = *m.token_fraction;
        f.sample_fraction = other(*m.token_fraction, "token_fraction", "sample_fraction");
      } else {
        f.sample_fraction = f.token_fraction = std::sqrt(r);
      }
      break;
  }
  f.uses_memory = true;
  f.retention = f.sample_fraction * f.token_fraction;
  return f;
}

SampleSelectorOptions sample_selector_options(const MemoryConfig& m) {
  SampleSelectorOptions o;
  o.gradient = m.coreset_gradient;
  o.gradmatch_lambda = m.gradmatch_lambda;
  o.gradmatch_tolerance = m.gradmatch_tolerance;
  o.craig_matrix_bytes = static_cast<int64_t>(m.coreset_memory_mb * 1024.0 * 1024.0);
  return o;
}

TokenSelectorOptions token_selector_options(const MemoryConfig& m, uint64_t seed) {
  TokenSelectorOptions o;
  o.seed = seed;
  o.atman_factor = m.atman_factor;
  o.atman_kappa = m.atman_kappa;
  o.atman_similarity_rank = m.atman_similarity_rank;
  o.atman_chunk = m.atman_chunk;
  return o;
}

}  // namespace cts
