// RunRecord serialisation, metrics.json and summary.md.
#include "cts/report/run_record.hpp"

#include <fmt/format.h>

#include <cmath>
#include <sstream>

#include "cts/core/error.hpp"
#include "cts/eval/evaluate.hpp"

namespace cts {
namespace {

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
nlohmann::json optional_json(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

nlohmann::json matrix_json(const Matrix& m) {
  auto out = nlohmann::json::array();
  for (const auto& row : m) {
    auto r = nlohmann::json::array();
    for (double v : row) r.push_back(number_or_null(v));
    out.push_back(r);
  }
  return out;
}

Matrix matrix_from_json(const nlohmann::json& j) {
  Matrix m;
  for (const auto& row : j) {
    std::vector<double> r;
    for (const auto& v : row) r.push_back(v.is_null() ? NAN : v.get<double>());
    m.push_back(r);
  }
  return m;
}

Matrix leading_block(const Matrix& m, size_t n) {
  Matrix out;
  for (size_t i = 0; i < n && i < m.size(); ++i) out.emplace_back(m[i].begin(), m[i].begin() + static_cast<std::ptrdiff_t>(n));
  return out;
}

std::string pct(double v) { return std::isfinite(v) ? fmt::format("{:.2f}", 100.0 * v) : "–"; }
std::string pct_opt(const std::optional<double>& v) { return v ? fmt::format("{:+.2f}", 100.0 * *v) : "–"; }

std::string human_bytes(int64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(b);
  int u = 0;
  while (v >= 1024.0 && u < 4) v /= 1024.0, ++u;
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.2f} {}", v, units[u]);
}

}  // namespace

void RunRecord::start(const std::vector<MetricSpec>& specs, int64_t tasks) {
  if (specs.empty()) throw_run("a learner must report at least one metric");
  metric_specs = specs;
  num_tasks = tasks;
  scores.clear();
  init_scores.clear();
  for (const auto& m : specs) scores[m.name].assign(size_t(tasks), std::vector<double>(size_t(tasks), NAN));
}

void RunRecord::set_row(int64_t task, const std::vector<TaskScores>& row) {
  for (auto& [name, matrix] : scores) {
    for (size_t j = 0; j < row.size() && j < matrix[size_t(task)].size(); ++j) {
      auto it = row[j].find(name);
      matrix[size_t(task)][j] = it == row[j].end() ? NAN : it->second;
    }
  }
}

const Matrix& RunRecord::matrix(const std::string& name) const {
  auto it = scores.find(name);
  if (it == scores.end()) {
    std::vector<std::string> names;
    for (const auto& m : metric_specs) names.push_back(m.name);
    throw_input("metric '{}' is not recorded by this run; it has: {}", name, fmt::join(names, ", "));
  }
  return it->second;
}

const MetricSpec& RunRecord::primary() const {
  if (metric_specs.empty()) throw_run("the run record has no metrics");
  return metric_specs.front();
}

nlohmann::json RunRecord::to_json() const {
  nlohmann::json j;
  j["num_tasks"] = num_tasks;
  j["tasks_done"] = tasks_done;
  auto specs = nlohmann::json::array();
  for (const auto& m : metric_specs)
    specs.push_back({{"name", m.name}, {"title", m.title}, {"summary_key", m.summary_key}, {"fwt_from", m.fwt_from}, {"percent", m.percent}});
  j["metric_specs"] = specs;
  j["scores"] = nlohmann::json::object();
  for (const auto& [name, m] : scores) j["scores"][name] = matrix_json(m);
  j["init_scores"] = nlohmann::json::object();
  for (const auto& [name, v] : init_scores) {
    auto arr = nlohmann::json::array();
    for (double x : v) arr.push_back(number_or_null(x));
    j["init_scores"][name] = arr;
  }
  j["memory"] = {{"bytes", memory.bytes}, {"tokens", memory.tokens}, {"samples", memory.samples}, {"dataset_bytes", memory.dataset_bytes},
                 {"dataset_tokens", memory.dataset_tokens}, {"dataset_samples", memory.dataset_samples}};
  auto t = nlohmann::json::array();
  for (const auto& x : timing)
    t.push_back({{"train_seconds", x.train_seconds}, {"eval_seconds", x.eval_seconds}, {"selection_seconds", x.selection_seconds},
                 {"steps", x.steps}, {"samples", x.samples}});
  j["timing"] = t;
  j["initial_eval_seconds"] = initial_eval_seconds;
  j["initial_eval_alongside_training"] = initial_eval_alongside_training;
  j["total_seconds"] = total_seconds;
  j["task_classes"] = task_classes;
  j["parameters"] = parameters;
  j["device"] = device;
  if (!weights.empty()) j["weights"] = weights;
  return j;
}

RunRecord RunRecord::from_json(const nlohmann::json& j) {
  RunRecord r;
  r.num_tasks = j.at("num_tasks").get<int64_t>();
  r.tasks_done = j.at("tasks_done").get<int64_t>();
  auto vector_from_json = [](const nlohmann::json& a) {
    std::vector<double> v;
    for (const auto& x : a) v.push_back(x.is_null() ? NAN : x.get<double>());
    return v;
  };
  if (j.contains("scores")) {
    for (const auto& m : j.at("metric_specs")) {
      r.metric_specs.push_back({m.at("name").get<std::string>(), m.at("title").get<std::string>(), m.at("summary_key").get<std::string>(),
                                m.at("fwt_from").get<std::string>(), m.at("percent").get<bool>()});
    }
    for (const auto& [name, m] : j.at("scores").items()) r.scores[name] = matrix_from_json(m);
    for (const auto& [name, v] : j.at("init_scores").items()) r.init_scores[name] = vector_from_json(v);
  } else {  // before named metrics: a classifier's two matrices
    r.metric_specs = classification_metrics();
    r.scores["accuracy"] = matrix_from_json(j.at("accuracy"));
    r.scores["task_il_accuracy"] = matrix_from_json(j.at("task_il_accuracy"));
    r.init_scores["task_il_accuracy"] = vector_from_json(j.at("init_task_il"));
  }
  const auto& m = j.at("memory");
  r.memory.bytes = m.at("bytes");
  r.memory.tokens = m.at("tokens");
  r.memory.samples = m.at("samples");
  r.memory.dataset_bytes = m.at("dataset_bytes");
  r.memory.dataset_tokens = m.at("dataset_tokens");
  r.memory.dataset_samples = m.at("dataset_samples");
  for (const auto& x : j.at("timing")) {
    TaskTiming t;
    t.train_seconds = x.at("train_seconds");
    t.eval_seconds = x.at("eval_seconds");
    t.selection_seconds = x.at("selection_seconds");
    t.steps = x.at("steps");
    t.samples = x.at("samples");
    r.timing.push_back(t);
  }
  r.initial_eval_seconds = j.value("initial_eval_seconds", 0.0);
  r.initial_eval_alongside_training = j.value("initial_eval_alongside_training", false);
  r.total_seconds = j.at("total_seconds");
  r.task_classes = j.at("task_classes").get<std::vector<std::vector<std::string>>>();
  r.device = j.value("device", "");
  if (j.contains("parameters")) r.parameters = j.at("parameters").get<std::vector<int64_t>>();
  if (j.contains("weights") && j.at("weights").is_object()) r.weights = j.at("weights");
  return r;
}

ContinualMetrics RunRecord::metrics() const { return metrics(primary()); }

ContinualMetrics RunRecord::metrics(const MetricSpec& spec) const {
  const size_t n = static_cast<size_t>(tasks_done);
  if (n == 0) return {};
  if (spec.fwt_from.empty()) return compute_metrics(leading_block(matrix(spec.name), n));
  // FWT uses R_fwt[j-1][j] for j < n and the initial scores b_j of the same metric.
  std::vector<double> b;
  if (auto it = init_scores.find(spec.fwt_from); it != init_scores.end())
    b.assign(it->second.begin(), it->second.begin() + static_cast<std::ptrdiff_t>(std::min(n, it->second.size())));
  return compute_metrics(leading_block(matrix(spec.name), n), leading_block(matrix(spec.fwt_from), n), b);
}

nlohmann::json metrics_json(const RunRecord& r, const MemoryFractions& fr) {
  const auto m = r.metrics();
  nlohmann::json j;
  for (const auto& spec : r.metric_specs) j[spec.name + "_matrix"] = matrix_json(r.matrix(spec.name));
  // What the top-level averages are of (the learner's primary metric, e.g. class-IL accuracy,
  // VQA exact match, BLEU-4), for tables that read them.
  if (!r.metric_specs.empty()) j["primary_metric"] = {{"name", r.metric_specs.front().name}, {"title", r.metric_specs.front().title}};
  j["average_accuracy"] = m.average_accuracy;
  j["final_average_accuracy"] = r.tasks_done ? nlohmann::json(m.final_average_accuracy) : nlohmann::json(nullptr);
  j["average_incremental_accuracy"] = r.tasks_done ? nlohmann::json(m.average_incremental_accuracy) : nlohmann::json(nullptr);
  j["forgetting"] = optional_json(m.forgetting);
  j["bwt"] = optional_json(m.bwt);
  j["fwt"] = optional_json(m.fwt);
  // The other metrics' summaries, from the same formulas.
  for (const auto& spec : r.metric_specs) {
    if (spec.summary_key.empty() || !r.tasks_done) continue;
    MetricSpec plain = spec;
    plain.fwt_from.clear();
    const auto mt = r.metrics(plain);
    j[spec.summary_key] = {{"average_accuracy", mt.average_accuracy}, {"final_average_accuracy", mt.final_average_accuracy},
                           {"forgetting", optional_json(mt.forgetting)}, {"bwt", optional_json(mt.bwt)}};
  }
  for (const auto& [name, v] : r.init_scores) {
    auto arr = nlohmann::json::array();
    for (double x : v) arr.push_back(number_or_null(x));
    j["init_" + name] = arr;
  }
  j["tasks_done"] = r.tasks_done;
  j["num_tasks"] = r.num_tasks;
  j["memory"] = {{"bytes", r.memory.bytes},
                 {"tokens", r.memory.tokens},
                 {"samples", r.memory.samples},
                 {"dataset_bytes", r.memory.dataset_bytes},
                 {"dataset_tokens", r.memory.dataset_tokens},
                 {"dataset_samples", r.memory.dataset_samples},
                 {"fraction", r.memory.fraction()},
                 {"bytes_fraction", r.memory.bytes_fraction()},
                 {"configured_retention", fr.retention},
                 {"sample_fraction", fr.sample_fraction},
                 {"token_fraction", fr.token_fraction},
                 {"budget_bytes", fr.budget_bytes ? nlohmann::json(*fr.budget_bytes) : nlohmann::json(nullptr)}};
  if (!r.parameters.empty()) j["parameters_per_task"] = r.parameters;
  if (!r.weights.empty()) j["weights"] = r.weights;
  if (fr.fixed_samples) j["memory"]["fixed_samples"] = *fr.fixed_samples;
  if (fr.fixed_bytes) j["memory"]["fixed_bytes"] = *fr.fixed_bytes;
  nlohmann::json timing;
  double train = 0, eval = 0, sel = 0;
  int64_t samples = 0;
  auto per_task = nlohmann::json::array();
  for (const auto& t : r.timing) {
    train += t.train_seconds, eval += t.eval_seconds, sel += t.selection_seconds, samples += t.samples;
    per_task.push_back({{"train_seconds", t.train_seconds}, {"eval_seconds", t.eval_seconds}, {"selection_seconds", t.selection_seconds},
                        {"steps", t.steps}, {"samples_per_second", t.train_seconds > 0 ? double(t.samples) / t.train_seconds : 0.0}});
  }
  timing["total_seconds"] = r.total_seconds;
  timing["train_seconds"] = train;
  timing["eval_seconds"] = eval;
  timing["initial_eval_seconds"] = r.initial_eval_seconds;
  timing["initial_eval_alongside_training"] = r.initial_eval_alongside_training;
  timing["selection_seconds"] = sel;
  timing["train_samples_per_second"] = train > 0 ? double(samples) / train : 0.0;
  timing["per_task"] = per_task;
  timing["device"] = r.device;
  j["timing"] = timing;
  return j;
}

std::string summary_markdown(const RunRecord& r, const Config& c, const MemoryFractions& fr) {
  const auto m = r.metrics();
  const MetricSpec& primary = r.primary();
  // A value in a table cell (percent metrics x 100), and with its unit.
  auto cell = [](const MetricSpec& spec, double v) { return spec.percent ? pct(v) : (std::isfinite(v) ? fmt::format("{:.4f}", v) : "–"); };
  auto value = [&](const MetricSpec& spec, double v) { return cell(spec, v) + (spec.percent && std::isfinite(v) ? " %" : ""); };
  std::ostringstream o;
  o << "# " << c.name << "\n\n";
  o << fmt::format("{} on {} ({} tasks{}), model {} ({}), strategy **{}**", c.name, c.data.name, r.num_tasks,
                   r.tasks_done < r.num_tasks ? fmt::format(", {} done", r.tasks_done) : "", c.model.preset, c.model.learner,
                   name_of(c.memory.strategy));
  if (fr.uses_memory && c.memory.strategy != MemoryStrategy::Cumulative) {
    const std::string size = fr.fixed_samples ? fmt::format("fixed memory of {} samples, k = {:.4g}", *fr.fixed_samples, fr.token_fraction)
                             : fr.fixed_bytes ? fmt::format("fixed memory of {}, k = {:.4g}", human_bytes(*fr.fixed_bytes), fr.token_fraction)
                             : fr.budget_bytes ? fmt::format("byte budget {}", human_bytes(*fr.budget_bytes))
                                               : fmt::format("s = {:.4g}, k = {:.4g}", fr.sample_fraction, fr.token_fraction);
    if (fr.joint) {
      o << fmt::format(" (joint selection, tokens {}, {}, fill {})", c.memory.tokens, size, fill_mode_name(c.memory.fill));
    } else {
      o << fmt::format(" (coreset {}, tokens {}, {}, fill {})", c.memory.coreset, c.memory.tokens, size, fill_mode_name(c.memory.fill));
    }
  }
  o << ", seed " << c.seed << ".\n\n";
  o << "| metric | value |\n|---|---|\n";
  o << "| final average " << primary.title << " | " << (r.tasks_done ? value(primary, m.final_average_accuracy) : "–") << " |\n";
  for (const auto& spec : r.metric_specs) {
    if (&spec == &primary || !r.tasks_done) continue;
    MetricSpec plain = spec;
    plain.fwt_from.clear();
    o << "| final average " << spec.title << " | " << value(spec, r.metrics(plain).final_average_accuracy) << " |\n";
  }
  o << "| average incremental " << primary.title << " | " << (r.tasks_done ? value(primary, m.average_incremental_accuracy) : "–") << " |\n";
  o << "| forgetting | " << (m.forgetting ? fmt::format("{:.2f}", (primary.percent ? 100.0 : 1.0) * *m.forgetting) : "–") << " |\n";
  o << "| BWT | " << (primary.percent ? pct_opt(m.bwt) : (m.bwt ? fmt::format("{:+.4f}", *m.bwt) : "–")) << " |\n";
  if (!primary.fwt_from.empty()) {
    const MetricSpec* from = nullptr;
    for (const auto& spec : r.metric_specs)
      if (spec.name == primary.fwt_from) from = &spec;
    o << "| FWT (" << (from ? from->title : primary.fwt_from) << ") | " << pct_opt(m.fwt) << " |\n";
  }
  o << fmt::format("| memory | {} samples, {} tokens, {} ({:.3f} % of the tokens, {:.3f} % of the bytes of {} training samples) |\n",
                   r.memory.samples, r.memory.tokens, human_bytes(r.memory.bytes), 100.0 * r.memory.fraction(),
                   100.0 * r.memory.bytes_fraction(), r.memory.dataset_samples);
  if (!r.parameters.empty()) {
    o << fmt::format("| parameters | {} after task 0", r.parameters.front());
    if (r.parameters.size() > 1) o << fmt::format(", {} after task {} ({:+} in all)", r.parameters.back(), r.parameters.size() - 1, r.parameters.back() - r.parameters.front());
    o << " |\n";
  }
  if (!r.weights.empty()) {
    o << fmt::format("| weights | `{}` (fnv1a64 {}", r.weights.value("file", ""), r.weights.value("fnv1a64", ""));
    if (r.weights.contains("config")) o << fmt::format("; written by run config {}", r.weights["config"].get<std::string>());
    if (r.weights.contains("data")) o << fmt::format(" on {}", r.weights["data"].get<std::string>());
    if (r.weights.contains("train_subset")) o << fmt::format(", training part {}", r.weights["train_subset"].get<std::string>());
    o << ") |\n";
  }
  o << fmt::format("| wall time | {:.1f} s on {} |\n\n", r.total_seconds, r.device);
  for (const auto& spec : r.metric_specs) {
    const auto& R = r.matrix(spec.name);
    MetricSpec plain = spec;
    plain.fwt_from.clear();
    const auto ms = r.metrics(plain);
    std::string title = spec.title;
    if (!title.empty()) title[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(title[0])));
    o << title << (spec.percent ? " (%)" : "") << ": row i = after training task i, column j = test set of task j.\n\n";
    o << "| after \\ on |";
    for (int64_t j = 0; j < r.num_tasks; ++j) o << " task " << j << " |";
    o << " average |\n|---|";
    for (int64_t j = 0; j <= r.num_tasks; ++j) o << "---|";
    o << "\n";
    for (int64_t i = 0; i < r.tasks_done; ++i) {
      o << "| task " << i << " |";
      for (int64_t j = 0; j < r.num_tasks; ++j) {
        const double v = R[size_t(i)][size_t(j)];
        o << " " << cell(spec, v) << " |";
      }
      o << " " << cell(spec, ms.average_accuracy[size_t(i)]) << " |\n";
    }
    o << "\n";
  }
  o << "Tasks (classes in arrival order):\n\n";
  for (size_t t = 0; t < r.task_classes.size(); ++t) o << "- task " << t << ": " << fmt::format("{}", fmt::join(r.task_classes[t], ", ")) << "\n";
  o << fmt::format("\nTiming (seconds): initial evaluation {:.1f}{}; ", r.initial_eval_seconds,
                   r.initial_eval_alongside_training ? " (alongside task 0's training)" : "");
  for (size_t t = 0; t < r.timing.size(); ++t) {
    const auto& x = r.timing[t];
    o << fmt::format("{}task {}: train {:.1f}, eval {:.1f}, selection {:.1f}", t ? "; " : "", t, x.train_seconds, x.eval_seconds, x.selection_seconds);
  }
  o << ".\n";
  return o.str();
}

}  // namespace cts
