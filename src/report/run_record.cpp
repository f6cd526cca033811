// RunRecord serialisation, metrics.json and summary.md.
#include "cts/report/run_record.hpp"

#include <fmt/format.h>

#include <cmath>
#include <sstream>

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

nlohmann::json RunRecord::to_json() const {
  nlohmann::json j;
  j["num_tasks"] = num_tasks;
  j["tasks_done"] = tasks_done;
  j["accuracy"] = matrix_json(accuracy);
  j["task_il_accuracy"] = matrix_json(task_il_accuracy);
  j["init_task_il"] = init_task_il;
  j["memory"] = {{"bytes", memory.bytes}, {"tokens", memory.tokens}, {"samples", memory.samples}, {"dataset_bytes", memory.dataset_bytes},
                 {"dataset_tokens", memory.dataset_tokens}, {"dataset_samples", memory.dataset_samples}};
  auto t = nlohmann::json::array();
  for (const auto& x : timing)
    t.push_back({{"train_seconds", x.train_seconds}, {"eval_seconds", x.eval_seconds}, {"selection_seconds", x.selection_seconds},
                 {"steps", x.steps}, {"samples", x.samples}});
  j["timing"] = t;
  j["total_seconds"] = total_seconds;
  j["task_classes"] = task_classes;
  j["device"] = device;
  return j;
}

RunRecord RunRecord::from_json(const nlohmann::json& j) {
  RunRecord r;
  r.num_tasks = j.at("num_tasks").get<int64_t>();
  r.tasks_done = j.at("tasks_done").get<int64_t>();
  r.accuracy = matrix_from_json(j.at("accuracy"));
  r.task_il_accuracy = matrix_from_json(j.at("task_il_accuracy"));
  for (const auto& v : j.at("init_task_il")) r.init_task_il.push_back(v.is_null() ? NAN : v.get<double>());
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
  r.total_seconds = j.at("total_seconds");
  r.task_classes = j.at("task_classes").get<std::vector<std::vector<std::string>>>();
  r.device = j.value("device", "");
  return r;
}

ContinualMetrics RunRecord::metrics() const {
  const size_t n = static_cast<size_t>(tasks_done);
  if (n == 0) return {};
  std::vector<double> b(init_task_il.begin(), init_task_il.begin() + static_cast<std::ptrdiff_t>(std::min(n, init_task_il.size())));
  // FWT uses R_task_il[j-1][j] for j < n; build an n x n block of the task-IL matrix.
  return compute_metrics(leading_block(accuracy, n), leading_block(task_il_accuracy, n), b);
}

nlohmann::json metrics_json(const RunRecord& r, const MemoryFractions& fr) {
  const auto m = r.metrics();
  nlohmann::json j;
  j["accuracy_matrix"] = matrix_json(r.accuracy);
  j["task_il_accuracy_matrix"] = matrix_json(r.task_il_accuracy);
  j["average_accuracy"] = m.average_accuracy;
  j["final_average_accuracy"] = r.tasks_done ? nlohmann::json(m.final_average_accuracy) : nlohmann::json(nullptr);
  j["average_incremental_accuracy"] = r.tasks_done ? nlohmann::json(m.average_incremental_accuracy) : nlohmann::json(nullptr);
  j["forgetting"] = optional_json(m.forgetting);
  j["bwt"] = optional_json(m.bwt);
  j["fwt"] = optional_json(m.fwt);
  // Task-IL summaries too, from the same formulas.
  Matrix til;
  for (int64_t i = 0; i < r.tasks_done; ++i) til.push_back(r.task_il_accuracy[static_cast<size_t>(i)]);
  if (r.tasks_done) {
    Matrix block;
    for (int64_t i = 0; i < r.tasks_done; ++i)
      block.emplace_back(til[static_cast<size_t>(i)].begin(), til[static_cast<size_t>(i)].begin() + r.tasks_done);
    const auto mt = compute_metrics(block);
    j["task_il"] = {{"average_accuracy", mt.average_accuracy}, {"final_average_accuracy", mt.final_average_accuracy},
                    {"forgetting", optional_json(mt.forgetting)}, {"bwt", optional_json(mt.bwt)}};
  }
  j["init_task_il_accuracy"] = nlohmann::json::array();
  for (double v : r.init_task_il) j["init_task_il_accuracy"].push_back(number_or_null(v));
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
  timing["selection_seconds"] = sel;
  timing["train_samples_per_second"] = train > 0 ? double(samples) / train : 0.0;
  timing["per_task"] = per_task;
  timing["device"] = r.device;
  j["timing"] = timing;
  return j;
}

std::string summary_markdown(const RunRecord& r, const Config& c, const MemoryFractions& fr) {
  const auto m = r.metrics();
  std::ostringstream o;
  o << "# " << c.name << "\n\n";
  o << fmt::format("{} on {} ({} tasks{}), model {}, strategy **{}**", c.name, c.data.name, r.num_tasks,
                   r.tasks_done < r.num_tasks ? fmt::format(", {} done", r.tasks_done) : "", c.model.preset, c.memory.strategy);
  if (fr.uses_memory && c.memory.strategy != "cumulative") {
    const std::string size = fr.budget_bytes ? fmt::format("byte budget {}", human_bytes(*fr.budget_bytes))
                                             : fmt::format("s = {:.4g}, k = {:.4g}", fr.sample_fraction, fr.token_fraction);
    if (fr.joint) {
      o << fmt::format(" (joint selection, tokens {}, {}, fill {})", c.memory.tokens, size, c.memory.fill);
    } else {
      o << fmt::format(" (coreset {}, tokens {}, {}, fill {})", c.memory.coreset, c.memory.tokens, size, c.memory.fill);
    }
  }
  o << ", seed " << c.seed << ".\n\n";
  o << "| metric | value |\n|---|---|\n";
  o << "| final average accuracy (class-IL) | " << (r.tasks_done ? pct(m.final_average_accuracy) : "–") << " % |\n";
  o << "| average incremental accuracy | " << (r.tasks_done ? pct(m.average_incremental_accuracy) : "–") << " % |\n";
  o << "| forgetting | " << (m.forgetting ? fmt::format("{:.2f}", 100.0 * *m.forgetting) : "–") << " |\n";
  o << "| BWT | " << pct_opt(m.bwt) << " |\n";
  o << "| FWT (task-IL) | " << pct_opt(m.fwt) << " |\n";
  o << fmt::format("| memory | {} samples, {} tokens, {} ({:.3f} % of the tokens, {:.3f} % of the bytes of {} training samples) |\n",
                   r.memory.samples, r.memory.tokens, human_bytes(r.memory.bytes), 100.0 * r.memory.fraction(),
                   100.0 * r.memory.bytes_fraction(), r.memory.dataset_samples);
  o << fmt::format("| wall time | {:.1f} s on {} |\n\n", r.total_seconds, r.device);
  o << "Accuracy matrix (class-IL, %): row i = after training task i, column j = test set of task j.\n\n";
  o << "| after \\ on |";
  for (int64_t j = 0; j < r.num_tasks; ++j) o << " task " << j << " |";
  o << " average |\n|---|";
  for (int64_t j = 0; j <= r.num_tasks; ++j) o << "---|";
  o << "\n";
  for (int64_t i = 0; i < r.tasks_done; ++i) {
    o << "| task " << i << " |";
    for (int64_t j = 0; j < r.num_tasks; ++j) o << " " << pct(r.accuracy[size_t(i)][size_t(j)]) << " |";
    o << " " << pct(m.average_accuracy[size_t(i)]) << " |\n";
  }
  o << "\nTasks (classes in arrival order):\n\n";
  for (size_t t = 0; t < r.task_classes.size(); ++t) o << "- task " << t << ": " << fmt::format("{}", fmt::join(r.task_classes[t], ", ")) << "\n";
  o << "\nTiming per task (seconds): ";
  for (size_t t = 0; t < r.timing.size(); ++t) {
    const auto& x = r.timing[t];
    o << fmt::format("{}task {}: train {:.1f}, eval {:.1f}, selection {:.1f}", t ? "; " : "", t, x.train_seconds, x.eval_seconds, x.selection_seconds);
  }
  o << ".\n";
  return o.str();
}

}  // namespace cts
