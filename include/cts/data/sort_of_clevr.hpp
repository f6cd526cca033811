// Sort-of-CLEVR (Santoro et al. 2017, "A simple neural network module for relational
// reasoning"): coloured shapes on a plain white canvas, with questions and captions generated
// from the scene. Seeded and reproducible: scene i of a split is drawn from
// derive_seed(seed, "sort_of_clevr", {split, i}), so any subset regenerates identically.
//
// A scene: `objects` objects of distinct colours (red, green, blue, orange, gray, yellow, ...),
// each a shape from `shapes` (square, circle; also triangle, cross, diamond), side
// `object_size`, centres drawn uniformly with no two objects' boxes closer than 2 px (or, with
// `cell`, at the centres of distinct grid cells drawn uniformly). With
// `featured_shape` set, at least one object has that shape (captioning tasks split by the
// object kind the scenes feature, as the paper splits COCO by object class).
// Questions, one per colour and family (answers are single words):
//   shape       "what is the shape of the red object?"                       -> square | circle | ...
//   horizontal  "is the red object on the left or on the right?"             -> left | right   (centre x < S/2)
//   vertical    "is the red object at the top or at the bottom?"             -> top | bottom   (centre y < S/2)
//   closest     "what is the shape of the object closest to the red object?" -> shape (Euclidean, centres)
//   furthest    "what is the shape of the object furthest from the red object?"
//   count       "how many other objects have the same shape as the red object?" -> 0 | 1 | ...
// The first three are non-relational, the last three relational. Caption: the objects in
// reading order (by row of thirds, then x): "a red circle at the top left, a blue square in
// the middle, ... ." (position words: top/middle/bottom × left/centre/right).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace cts {

struct SortOfClevrOptions {
  int64_t image_size = 64;
  int64_t object_size = 10;
  int64_t objects = 6;
  std::vector<std::string> colors{"red", "green", "blue", "orange", "gray", "yellow"};
  std::vector<std::string> shapes{"square", "circle"};
  std::string featured_shape;  // empty: none
  // > 0: objects sit at the centres of distinct cells of a grid of `cell` px (with cell = the
  // model's patch size, each object is one token); 0: centres anywhere (the original).
  int64_t cell = 0;
  uint64_t seed = 0;
};

// The colours and shapes the generator knows.
std::vector<std::string> sort_of_clevr_colors();
std::vector<std::string> sort_of_clevr_shapes();
std::vector<std::string> sort_of_clevr_families();

struct SceneObject {
  std::string color, shape;
  int64_t x = 0, y = 0;  // centre, pixels
};

struct SceneQuestion {
  std::string family, question, answer;
};

struct Scene {
  std::vector<SceneObject> objects;
};

// InputError for impossible options (unknown colour or shape, more objects than colours,
// objects that cannot fit).
void validate(const SortOfClevrOptions& options);
// Scene `index` of split `split` (0 train, 1 test).
Scene generate_scene(const SortOfClevrOptions& options, int64_t split, int64_t index);
// uint8 [3, S, S]: white canvas, objects in their colours.
torch::Tensor render_scene(const Scene& scene, const SortOfClevrOptions& options);
// Every question of the scene: for each object (colour) the six families in the order above.
std::vector<SceneQuestion> scene_questions(const Scene& scene, const SortOfClevrOptions& options);
std::string scene_caption(const Scene& scene, const SortOfClevrOptions& options);

}  // namespace cts
