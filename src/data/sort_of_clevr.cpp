// Sort-of-CLEVR generator: scenes, rendering, questions and captions (formulas and question
// forms in data/sort_of_clevr.hpp).
#include "cts/data/sort_of_clevr.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"

namespace cts {
namespace {

const std::map<std::string, std::array<uint8_t, 3>>& palette() {
  static const std::map<std::string, std::array<uint8_t, 3>> p{{"red", {255, 0, 0}},     {"green", {0, 200, 0}},   {"blue", {0, 0, 255}},
                                                               {"orange", {255, 156, 0}}, {"gray", {128, 128, 128}}, {"yellow", {230, 230, 0}},
                                                               {"purple", {150, 0, 200}}, {"cyan", {0, 200, 200}}};
  return p;
}

// Whether pixel centre (dx, dy) from the object's centre lies inside `shape` of half size h.
bool inside(const std::string& shape, double dx, double dy, double h) {
  const double ax = std::abs(dx), ay = std::abs(dy);
  if (shape == "square") return ax <= h && ay <= h;
  if (shape == "circle") return dx * dx + dy * dy <= h * h;
  if (shape == "diamond") return ax + ay <= h;
  if (shape == "cross") return ax <= h && ay <= h && (ax <= h / 3.0 || ay <= h / 3.0);
  // triangle, apex up: rows from -h (apex) to +h (base), half width growing to h.
  return dy >= -h && dy <= h && ax <= (dy + h) / 2.0;
}

std::string where(const SceneObject& o, int64_t size) {
  const char* rows[] = {"top", "middle", "bottom"};
  const char* cols[] = {"left", "centre", "right"};
  const int64_t r = std::min<int64_t>(2, o.y * 3 / size), c = std::min<int64_t>(2, o.x * 3 / size);
  if (r == 1 && c == 1) return "in the middle";
  if (r == 1) return fmt::format("in the middle {}", cols[c]);
  return fmt::format("at the {} {}", rows[r], cols[c]);
}

double dist2(const SceneObject& a, const SceneObject& b) {
  const double dx = double(a.x - b.x), dy = double(a.y - b.y);
  return dx * dx + dy * dy;
}

}  // namespace

std::vector<std::string> sort_of_clevr_colors() { return {"red", "green", "blue", "orange", "gray", "yellow", "purple", "cyan"}; }
std::vector<std::string> sort_of_clevr_shapes() { return {"square", "circle", "triangle", "cross", "diamond"}; }
std::vector<std::string> sort_of_clevr_families() { return {"shape", "horizontal", "vertical", "closest", "furthest", "count"}; }

void validate(const SortOfClevrOptions& o) {
  const auto colors = sort_of_clevr_colors(), shapes = sort_of_clevr_shapes();
  for (const auto& c : o.colors)
    if (std::find(colors.begin(), colors.end(), c) == colors.end())
      throw_input("sort-of-clevr: colour '{}' is not known; accepted: {}", c, fmt::join(colors, ", "));
  for (const auto& s : o.shapes)
    if (std::find(shapes.begin(), shapes.end(), s) == shapes.end())
      throw_input("sort-of-clevr: shape '{}' is not known; accepted: {}", s, fmt::join(shapes, ", "));
  if (o.shapes.empty()) throw_input("sort-of-clevr: no shapes");
  if (!o.featured_shape.empty() && std::find(shapes.begin(), shapes.end(), o.featured_shape) == shapes.end())
    throw_input("sort-of-clevr: featured shape '{}' is not known; accepted: {}", o.featured_shape, fmt::join(shapes, ", "));
  if (o.objects < 2 || o.objects > int64_t(o.colors.size()))
    throw_input("sort-of-clevr: {} objects with {} colours; accepted: 2 .. the number of colours (each object has its own colour)", o.objects,
                o.colors.size());
  if (o.object_size < 3) throw_input("sort-of-clevr: object size {} px; accepted: >= 3", o.object_size);
  if (o.cell > 0) {
    if (o.cell < o.object_size || o.image_size % o.cell != 0)
      throw_input("sort-of-clevr: cells of {} px for objects of {} px on a {} px canvas; accepted: object_size <= cell, cell divides image_size", o.cell,
                  o.object_size, o.image_size);
    if (o.objects > (o.image_size / o.cell) * (o.image_size / o.cell))
      throw_input("sort-of-clevr: {} objects do not fit {} cells", o.objects, (o.image_size / o.cell) * (o.image_size / o.cell));
    return;
  }
  // A loose capacity check: the objects' boxes (plus the 2 px gap) must cover at most a third of the canvas.
  const double box = double(o.object_size + 2);
  if (double(o.objects) * box * box > double(o.image_size * o.image_size) / 3.0)
    throw_input("sort-of-clevr: {} objects of {} px do not fit a {} px canvas with room to place them; use a larger image_size or fewer objects",
                o.objects, o.object_size, o.image_size);
}

Scene generate_scene(const SortOfClevrOptions& o, int64_t split, int64_t index) {
  std::mt19937_64 rng(derive_seed(o.seed, "sort_of_clevr", {split, index}));
  auto uniform = [&](int64_t n) { return int64_t(rng() % uint64_t(n)); };
  Scene s;
  std::vector<size_t> colors(o.colors.size());
  for (size_t i = 0; i < colors.size(); ++i) colors[i] = i;
  for (size_t i = colors.size(); i > 1; --i) std::swap(colors[i - 1], colors[size_t(uniform(int64_t(i)))]);  // Fisher-Yates
  const int64_t h = o.object_size / 2, lo = h, span = o.image_size - 2 * h;
  const int64_t featured = o.featured_shape.empty() ? -1 : uniform(o.objects);
  const int64_t cells_per_row = o.cell > 0 ? o.image_size / o.cell : 0;
  std::vector<int64_t> cells(size_t(cells_per_row * cells_per_row));
  for (size_t i = 0; i < cells.size(); ++i) cells[i] = int64_t(i);
  for (int64_t k = 0; k < o.objects; ++k) {
    SceneObject obj;
    obj.color = o.colors[colors[size_t(k)]];
    obj.shape = k == featured ? o.featured_shape : o.shapes[size_t(uniform(int64_t(o.shapes.size())))];
    if (o.cell > 0) {  // a free cell, drawn without replacement
      const int64_t left = int64_t(cells.size()) - k;
      std::swap(cells[size_t(k)], cells[size_t(k + uniform(left))]);
      obj.x = (cells[size_t(k)] % cells_per_row) * o.cell + o.cell / 2;
      obj.y = (cells[size_t(k)] / cells_per_row) * o.cell + o.cell / 2;
      s.objects.push_back(obj);
      continue;
    }
    for (int attempt = 0;; ++attempt) {
      if (attempt == 10000) throw_run("sort-of-clevr: could not place {} objects of {} px on {} px (scene {})", o.objects, o.object_size, o.image_size, index);
      obj.x = lo + uniform(span);
      obj.y = lo + uniform(span);
      bool clear = true;
      for (const auto& other : s.objects)
        clear = clear && (std::abs(other.x - obj.x) >= o.object_size + 2 || std::abs(other.y - obj.y) >= o.object_size + 2);
      if (clear) break;
    }
    s.objects.push_back(obj);
  }
  return s;
}

torch::Tensor render_scene(const Scene& scene, const SortOfClevrOptions& o) {
  const int64_t S = o.image_size;
  auto img = torch::full({3, S, S}, 255, torch::kUInt8);
  auto a = img.accessor<uint8_t, 3>();
  const double h = double(o.object_size) / 2.0;
  for (const auto& obj : scene.objects) {
    const auto rgb = palette().at(obj.color);
    for (int64_t y = std::max<int64_t>(0, obj.y - o.object_size); y < std::min(S, obj.y + o.object_size); ++y)
      for (int64_t x = std::max<int64_t>(0, obj.x - o.object_size); x < std::min(S, obj.x + o.object_size); ++x) {
        if (!inside(obj.shape, double(x) + 0.5 - double(obj.x), double(y) + 0.5 - double(obj.y), h)) continue;
        for (int c = 0; c < 3; ++c) a[c][y][x] = rgb[size_t(c)];
      }
  }
  return img;
}

std::vector<SceneQuestion> scene_questions(const Scene& scene, const SortOfClevrOptions& o) {
  std::vector<SceneQuestion> out;
  const auto& objs = scene.objects;
  for (size_t i = 0; i < objs.size(); ++i) {
    const auto& q = objs[i];
    size_t closest = i, furthest = i;
    int64_t same = 0;
    for (size_t j = 0; j < objs.size(); ++j) {
      if (j == i) continue;
      if (closest == i || dist2(q, objs[j]) < dist2(q, objs[closest])) closest = j;
      if (furthest == i || dist2(q, objs[j]) > dist2(q, objs[furthest])) furthest = j;
      same += objs[j].shape == q.shape;
    }
    const std::string c = q.color;
    out.push_back({"shape", fmt::format("what is the shape of the {} object?", c), q.shape});
    out.push_back({"horizontal", fmt::format("is the {} object on the left or on the right?", c), q.x * 2 < o.image_size ? "left" : "right"});
    out.push_back({"vertical", fmt::format("is the {} object at the top or at the bottom?", c), q.y * 2 < o.image_size ? "top" : "bottom"});
    out.push_back({"closest", fmt::format("what is the shape of the object closest to the {} object?", c), objs[closest].shape});
    out.push_back({"furthest", fmt::format("what is the shape of the object furthest from the {} object?", c), objs[furthest].shape});
    out.push_back({"count", fmt::format("how many other objects have the same shape as the {} object?", c), std::to_string(same)});
  }
  return out;
}

std::string scene_caption(const Scene& scene, const SortOfClevrOptions& o) {
  auto objs = scene.objects;
  std::stable_sort(objs.begin(), objs.end(), [&](const SceneObject& a, const SceneObject& b) {
    const int64_t ra = std::min<int64_t>(2, a.y * 3 / o.image_size), rb = std::min<int64_t>(2, b.y * 3 / o.image_size);
    return ra != rb ? ra < rb : a.x < b.x;
  });
  std::string s;
  for (size_t i = 0; i < objs.size(); ++i) s += fmt::format("{}a {} {} {}", i ? ", " : "", objs[i].color, objs[i].shape, where(objs[i], o.image_size));
  return s + ".";
}

}  // namespace cts
