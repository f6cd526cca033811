// Data loaders on files written here in each real format (idx raw/gzip, CIFAR-10/100
// binary, ImageFolder with PNG and JPEG), their corrupt variants, Fashion-MNIST itself,
// patch layout and the class-incremental split.
#include <torch/torch.h>
#include <zlib.h>

#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"
#include "cts/data/cifar.hpp"
#include "cts/data/dataset.hpp"
#include "cts/data/idx.hpp"
#include "cts/data/image_codec.hpp"
#include "cts/data/image_folder.hpp"
#include "cts/data/patches.hpp"
#include "cts/data/registry.hpp"
#include "cts/data/task_split.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;
using test::be32;
using test::idx_file;
using test::input_error;

void write_gz(const std::filesystem::path& p, const std::string& content) {
  gzFile f = gzopen(p.c_str(), "wb");
  gzwrite(f, content.data(), unsigned(content.size()));
  gzclose(f);
}

// data.train_subset: parts a and b of every class are disjoint, cover the class, have
// round(fraction n_c) and the rest, and depend on the split seed only.
TEST(TrainSubset, HalvesAreDisjointAndCoverEveryClass) {
  // Class 0: 10 samples, class 1: 7, class 2: 4, interleaved.
  std::vector<int64_t> l;
  for (int i = 0; i < 10; ++i) l.push_back(0);
  for (int i = 0; i < 7; ++i) l.push_back(1);
  for (int i = 0; i < 4; ++i) l.push_back(2);
  auto perm = torch::randperm(int64_t(l.size()), make_generator(3, "shuffle"), torch::kInt64);
  auto labels = torch::tensor(l, torch::kInt64).index_select(0, perm);
  for (double fraction : {0.5, 0.3}) {
    auto a = train_subset_indices(labels, 3, "a", fraction, 11);
    auto b = train_subset_indices(labels, 3, "b", fraction, 11);
    std::vector<int> seen(l.size(), 0);
    for (int64_t i = 0; i < a.size(0); ++i) seen[size_t(a[i].item<int64_t>())] += 1;
    for (int64_t i = 0; i < b.size(0); ++i) seen[size_t(b[i].item<int64_t>())] += 10;
    for (size_t i = 0; i < l.size(); ++i) EXPECT_TRUE(seen[i] == 1 || seen[i] == 10) << i << ": " << seen[i];  // exactly one part
    const std::vector<int64_t> sizes = {10, 7, 4};
    for (int64_t c = 0; c < 3; ++c) {
      const int64_t na = (labels.index_select(0, a) == c).sum().item<int64_t>(), nb = (labels.index_select(0, b) == c).sum().item<int64_t>();
      EXPECT_EQ(na, std::llround(fraction * double(sizes[size_t(c)]))) << c;
      EXPECT_EQ(na + nb, sizes[size_t(c)]) << c;
    }
    EXPECT_TRUE((a.narrow(0, 1, a.size(0) - 1) > a.narrow(0, 0, a.size(0) - 1)).all().item<bool>());  // ascending
  }
  // The split seed alone decides: the same seed the same part, another seed another part.
  EXPECT_TRUE(torch::equal(train_subset_indices(labels, 3, "a", 0.5, 11), train_subset_indices(labels, 3, "a", 0.5, 11)));
  EXPECT_FALSE(torch::equal(train_subset_indices(labels, 3, "a", 0.5, 11), train_subset_indices(labels, 3, "a", 0.5, 12)));
  // A part that would be empty, an unknown part, a fraction outside (0, 1): input errors.
  EXPECT_THROW(train_subset_indices(torch::tensor({0, 0, 1}, torch::kInt64), 2, "a", 0.5, 0), InputError);
  EXPECT_THROW(train_subset_indices(labels, 3, "c", 0.5, 0), InputError);
  EXPECT_THROW(train_subset_indices(labels, 3, "a", 1.0, 0), InputError);
}

TEST(Idx, ReadsRawAndGzipFiles) {
  TempDir dir;
  std::vector<uint8_t> pixels(3 * 2 * 2);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t(i * 10);
  test::write_text(dir / "raw-idx", idx_file({3, 2, 2}, pixels));
  write_gz(dir / "gz-idx.gz", idx_file({3, 2, 2}, pixels));
  for (const auto& name : {"raw-idx", "gz-idx.gz"}) {
    auto t = read_idx(dir / name);
    ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 2, 2}));
    EXPECT_EQ(t[1][0][1].item<int>(), 50);  // element 5
    EXPECT_EQ(t[2][1][1].item<int>(), 110);
  }
}

TEST(Idx, LoadsADatasetPairAndChecksIt) {
  TempDir dir;
  std::vector<uint8_t> images(4 * 28 * 28, 7), labels{0, 3, 9, 3};
  write_gz(dir / "train-images-idx3-ubyte.gz", idx_file({4, 28, 28}, images));
  test::write_text(dir / "train-labels-idx1-ubyte", idx_file({4}, labels));  // raw next to gz
  auto d = load_idx_dataset(dir.path(), "train", "fashion-mnist", std::vector<std::string>(10, "c"));
  EXPECT_EQ(d->size(), 4);
  EXPECT_EQ(d->shape(), (ImageShape{1, 28, 28}));
  EXPECT_TRUE(torch::equal(d->labels(), torch::tensor({0, 3, 9, 3}, torch::kInt64)));

  test::write_text(dir / "train-labels-idx1-ubyte", idx_file({3}, {0, 1, 2}));
  EXPECT_NE(input_error([&] { load_idx_dataset(dir.path(), "train", "x", std::vector<std::string>(10, "c")); }).find("has 3 labels but"),
            std::string::npos);
  test::write_text(dir / "train-labels-idx1-ubyte", idx_file({4}, {0, 1, 12, 2}));
  EXPECT_NE(input_error([&] { load_idx_dataset(dir.path(), "train", "x", std::vector<std::string>(10, "c")); }).find("label 12 out of range"),
            std::string::npos);
  EXPECT_NE(input_error([&] { load_idx_dataset(dir.path(), "t10k", "x", std::vector<std::string>(10, "c")); }).find("t10k-images-idx3-ubyte"),
            std::string::npos);
}

TEST(Idx, RejectsCorruptFiles) {
  TempDir dir;
  const auto p = dir / "bad";
  test::write_text(p, std::string("\x01\x02\x08\x01", 4) + be32(1) + "x");
  EXPECT_NE(input_error([&] { read_idx(p); }).find("wrong magic"), std::string::npos);
  test::write_text(p, std::string("\x00\x00\x0D\x01", 4) + be32(1) + "xxxx");
  EXPECT_NE(input_error([&] { read_idx(p); }).find("not supported"), std::string::npos);
  test::write_text(p, idx_file({10}, {1, 2, 3}));
  EXPECT_NE(input_error([&] { read_idx(p); }).find("truncated: header (dimensions 10) declares 10 data bytes after its 8-byte header, the file holds 3"), std::string::npos);
  test::write_text(p, idx_file({2}, {1, 2, 3}));
  EXPECT_NE(input_error([&] { read_idx(p); }).find("trailing data"), std::string::npos);
  // A lying header must not allocate its claimed size.
  test::write_text(p, idx_file({60000, 60000, 60000}, {1}));
  EXPECT_NE(input_error([&] { read_idx(p); }).find("not a plausible idx file"), std::string::npos);
  // A gzip stream cut short.
  write_gz(dir / "ok.gz", idx_file({1000}, std::vector<uint8_t>(1000, 5)));
  std::string gz = test::read_text(dir / "ok.gz");
  test::write_text(dir / "cut.gz", gz.substr(0, gz.size() / 2));
  EXPECT_NE(input_error([&] { read_idx(dir / "cut.gz"); }), "<accepted>");
  EXPECT_NE(input_error([&] { read_idx(dir / "missing"); }).find("not found"), std::string::npos);
}

TEST(FashionMnist, RealDatasetFromDebianPackage) {
  const std::filesystem::path root = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(root / "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  DataConfig dc;
  auto s = open_dataset(dc, 4, 0);
  EXPECT_EQ(s.train->size(), 60000);
  EXPECT_EQ(s.test->size(), 10000);
  EXPECT_EQ(s.train->shape(), (ImageShape{1, 28, 28}));
  // Fashion-MNIST is balanced: 6000 train and 1000 test images per class.
  EXPECT_TRUE(torch::equal(torch::bincount(s.train->labels()), torch::full({10}, 6000, torch::kInt64)));
  EXPECT_TRUE(torch::equal(torch::bincount(s.test->labels()), torch::full({10}, 1000, torch::kInt64)));
  EXPECT_EQ(s.train->class_names()[9], "Ankle boot");
  dc.image_size = 32;
  dc.train_per_class = 50;
  auto r = open_dataset(dc, 4, 0);
  EXPECT_EQ(r.train->size(), 500);
  EXPECT_EQ(r.train->shape(), (ImageShape{1, 32, 32}));
}

std::string cifar_record(int label_bytes, const std::vector<uint8_t>& labels, uint8_t r, uint8_t g, uint8_t b) {
  std::string s(labels.begin(), labels.end());
  s += std::string(1024, char(r)) + std::string(1024, char(g)) + std::string(1024, char(b));
  (void)label_bytes;
  return s;
}

TEST(Cifar, ReadsCifar10AndCifar100Layouts) {
  TempDir dir;
  const auto c10 = dir / "cifar-10-batches-bin";
  for (int i = 1; i <= 5; ++i) test::write_text(c10 / fmt::format("data_batch_{}.bin", i), cifar_record(1, {uint8_t(i)}, 10, 20, 30));
  test::write_text(c10 / "test_batch.bin", cifar_record(1, {9}, 1, 2, 3) + cifar_record(1, {0}, 4, 5, 6));
  test::write_text(c10 / "batches.meta.txt", "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n");
  auto train = load_cifar10(dir.path(), true);  // root is the parent folder
  EXPECT_EQ(train->size(), 5);
  EXPECT_TRUE(torch::equal(train->labels(), torch::tensor({1, 2, 3, 4, 5}, torch::kInt64)));
  auto img = train->images(torch::tensor({0}, torch::kInt64));
  EXPECT_EQ(img[0][0][5][5].item<int>(), 10);  // red plane first
  EXPECT_EQ(img[0][2][31][31].item<int>(), 30);
  EXPECT_EQ(train->class_names()[9], "truck");
  auto test = load_cifar10(c10, false);  // or the folder itself
  EXPECT_EQ(test->size(), 2);
  EXPECT_EQ(test->labels()[0].item<int64_t>(), 9);

  const auto c100 = dir / "cifar-100-binary";
  test::write_text(c100 / "train.bin", cifar_record(2, {3, 77}, 0, 0, 0) + cifar_record(2, {19, 99}, 0, 0, 0));
  test::write_text(c100 / "test.bin", cifar_record(2, {1, 5}, 0, 0, 0));
  auto t100 = load_cifar100(dir.path(), true);
  EXPECT_TRUE(torch::equal(t100->labels(), torch::tensor({77, 99}, torch::kInt64)));  // fine labels
  EXPECT_EQ(t100->num_classes(), 100);
}

TEST(Cifar, RejectsCorruptFiles) {
  TempDir dir;
  test::write_text(dir / "test_batch.bin", cifar_record(1, {1}, 0, 0, 0) + "xyz");
  EXPECT_NE(input_error([&] { load_cifar10(dir.path(), false); }).find("not a whole number of 3073-byte records"), std::string::npos);
  test::write_text(dir / "test_batch.bin", cifar_record(1, {1}, 0, 0, 0) + cifar_record(1, {42}, 0, 0, 0));
  const auto msg = input_error([&] { load_cifar10(dir.path(), false); });
  EXPECT_NE(msg.find("record 1 (offset 3073) has label 42"), std::string::npos) << msg;
  EXPECT_NE(input_error([&] { load_cifar10(dir / "nothing", true); }).find("CIFAR files not found"), std::string::npos);
}

// A PNG built by hand (chunks, zlib, crc32): an encoder independent of libpng.
std::string handmade_png_gray(int w, int h, const std::vector<uint8_t>& pixels) {
  auto chunk = [](const std::string& type, const std::string& data) {
    std::string c = be32(uint32_t(data.size())) + type + data;
    uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(c.data() + 4), uInt(c.size() - 4));
    return c + be32(crc);
  };
  std::string raw;
  for (int y = 0; y < h; ++y) {
    raw.push_back(0);  // filter: none
    raw.append(reinterpret_cast<const char*>(pixels.data() + y * w), size_t(w));
  }
  uLongf n = compressBound(uLong(raw.size()));
  std::string z(n, '\0');
  compress(reinterpret_cast<Bytef*>(z.data()), &n, reinterpret_cast<const Bytef*>(raw.data()), uLong(raw.size()));
  z.resize(n);
  std::string ihdr = be32(uint32_t(w)) + be32(uint32_t(h)) + std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit gray
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", z) + chunk("IEND", "");
}

TEST(ImageCodec, DecodesHandmadePngAndRoundTripsJpegPng) {
  std::vector<uint8_t> px(6 * 4);
  for (size_t i = 0; i < px.size(); ++i) px[i] = uint8_t(i * 9);
  auto img = decode_image(handmade_png_gray(6, 4, px), "mem.png", 1);
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{1, 4, 6}));
  EXPECT_EQ(img[0][2][3].item<int>(), (2 * 6 + 3) * 9);
  auto rgb = decode_image(handmade_png_gray(6, 4, px), "mem.png", 3);
  EXPECT_EQ(rgb[2][2][3].item<int>(), (2 * 6 + 3) * 9);  // gray -> RGB replicates

  auto color = torch::randint(0, 256, {3, 16, 24}, torch::kInt64).to(torch::kUInt8);
  EXPECT_TRUE(torch::equal(decode_image(encode_png(color), "x", 3), color));
  auto smooth = torch::full({3, 16, 16}, 120, torch::kUInt8);
  smooth[0].fill_(200);
  auto back = decode_image(encode_jpeg(smooth, 100), "x.jpg", 3);
  EXPECT_LE((back.to(torch::kInt32) - smooth.to(torch::kInt32)).abs().max().item<int>(), 3);

  EXPECT_NE(input_error([&] { decode_image("GIF89a....", "a.gif"); }).find("not a JPEG or PNG"), std::string::npos);
  std::string png = encode_png(color);
  EXPECT_NE(input_error([&] { decode_image(png.substr(0, png.size() / 2), "half.png"); }).find("half.png"), std::string::npos);
  std::string jpg = encode_jpeg(smooth);
  EXPECT_NE(input_error([&] { decode_image(jpg.substr(0, 20), "cut.jpg"); }).find("cut.jpg"), std::string::npos);
}

TEST(ImageCodec, ResizeCenterCropGeometry) {
  // 40x80 (H x W): short side 40 -> 32/0.8 = 40 (no resize), crop 32x32 from the centre.
  auto img = torch::zeros({1, 40, 80}, torch::kUInt8);
  img.narrow(2, 24, 32).narrow(1, 4, 32).fill_(255);  // exactly the centre crop is white
  auto out = resize_center_crop(img, 32, 0.8);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{1, 32, 32}));
  EXPECT_EQ(out.min().item<int>(), 255);
  // Downscaling a constant image keeps the constant.
  auto flat = torch::full({3, 300, 500}, 77, torch::kUInt8);
  auto small = resize_center_crop(flat, 24, 0.875);
  EXPECT_EQ(small.sizes(), (std::vector<int64_t>{3, 24, 24}));
  EXPECT_EQ(small.min().item<int>(), 77);
  EXPECT_EQ(small.max().item<int>(), 77);
}

TEST(ImageFolder, LoadsPngAndJpegWithClassList) {
  TempDir dir;
  auto red = torch::zeros({3, 40, 40}, torch::kUInt8);
  red[0].fill_(250);
  auto blue = torch::zeros({3, 30, 50}, torch::kUInt8);
  blue[2].fill_(250);
  for (const auto& split : {"train", "val"}) {
    test::write_text(dir / split / "n01" / "a.png", encode_png(red));
    test::write_text(dir / split / "n01" / "b.JPEG", encode_jpeg(red, 100));
    test::write_text(dir / split / "n02" / "c.jpg", encode_jpeg(blue, 100));
    test::write_text(dir / split / "n03" / "d.png", encode_png(blue));
    test::write_text(dir / split / "n03" / "notes.txt", "not an image");
  }
  ImageFolderDataset all(dir.path(), "train", "", 16, 0.875, 2);
  EXPECT_EQ(all.num_classes(), 3);
  EXPECT_EQ(all.size(), 4);
  test::write_text(dir / "classes.txt", "# ImageNet-100 style list\nn03 third class\nn01 first\n");
  ImageFolderDataset sub(dir.path(), "train", dir / "classes.txt", 16, 0.875, 2);
  EXPECT_EQ(sub.num_classes(), 2);
  EXPECT_EQ(sub.class_names()[0], "third class");
  EXPECT_TRUE(torch::equal(sub.labels(), torch::tensor({0, 1, 1}, torch::kInt64)));
  auto imgs = sub.images(torch::tensor({0, 1, 2}, torch::kInt64));
  ASSERT_EQ(imgs.sizes(), (std::vector<int64_t>{3, 3, 16, 16}));
  EXPECT_GE(imgs[0][2].min().item<int>(), 245);  // n03/d.png is blue
  EXPECT_GE(imgs[1][0].min().item<int>(), 240);  // n01/a.png is red
  EXPECT_LE(imgs[2][2].max().item<int>(), 10);   // n01/b.JPEG red: no blue

  test::write_text(dir / "bad.txt", "n01\nn09\n");
  EXPECT_NE(input_error([&] { ImageFolderDataset(dir.path(), "train", dir / "bad.txt", 16, 0.875, 1); }).find("class 'n09' (entry 2) has no folder"),
            std::string::npos);
  test::write_text(dir / "dup.txt", "n01\nn01\n");
  EXPECT_NE(input_error([&] { read_class_list(dir / "dup.txt"); }).find("line 2: class 'n01' is listed twice"), std::string::npos);
  test::write_text(dir / "train" / "n02" / "broken.png", "\x89PNG\r\n\x1a\n garbage");
  ImageFolderDataset with_bad(dir.path(), "train", "", 16, 0.875, 2);
  const auto err = input_error([&] { with_bad.images(torch::arange(with_bad.size(), torch::kInt64)); });
  EXPECT_NE(err.find("broken.png"), std::string::npos) << err;
  EXPECT_NE(input_error([&] { ImageFolderDataset(dir.path(), "test", "", 16, 0.875, 1); }).find("split not found"), std::string::npos);
}

TEST(Patches, PatchifyMatchesConvOrderAndInverts) {
  auto img = torch::arange(2 * 3 * 8 * 12, torch::kFloat32).reshape({2, 3, 8, 12});
  auto p = patchify(img, 4);  // grid 2 x 3
  ASSERT_EQ(p.sizes(), (std::vector<int64_t>{2, 6, 3, 4, 4}));
  // Patch 4 = row 1, column 1: pixels [4:8, 4:8].
  EXPECT_TRUE(torch::equal(p[1][4], img[1].narrow(1, 4, 4).narrow(2, 4, 4)));
  EXPECT_TRUE(torch::equal(unpatchify(p, 2, 3), img));
  auto mask = positions_to_mask(torch::tensor({{0, 5, -1}, {2, -1, -1}}, torch::kInt64), 6);
  EXPECT_TRUE(torch::equal(mask, torch::tensor({{true, false, false, false, false, true}, {false, false, true, false, false, false}})));
  EXPECT_EQ(tokens_kept(0.1, 49), 5);
  EXPECT_EQ(tokens_kept(0.001, 49), 1);
  EXPECT_EQ(tokens_kept(1.0, 49), 49);
}

TEST(TaskSplit, OrdersAndErrors) {
  auto s = make_task_split(10, 5, ClassOrder{}, 3);
  auto sorted = s.class_order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(s.class_order, make_task_split(10, 5, ClassOrder{}, 3).class_order);  // seeded
  EXPECT_NE(s.class_order, make_task_split(10, 5, ClassOrder{}, 4).class_order);
  EXPECT_EQ(s.classes_per_task, 2);
  auto n = make_task_split(10, 2, ClassOrder{"natural", {}}, 0);
  EXPECT_EQ(n.task_classes[1], (std::vector<int64_t>{5, 6, 7, 8, 9}));
  auto l = make_task_split(10, 2, ClassOrder{"list", {9, 8, 1, 2}}, 0);
  EXPECT_EQ(l.class_to_index[8].item<int64_t>(), 1);
  EXPECT_EQ(l.class_to_index[0].item<int64_t>(), -1);
  EXPECT_TRUE(torch::equal(l.map_labels(torch::tensor({2, 9}, torch::kInt64)), torch::tensor({3, 0}, torch::kInt64)));
  EXPECT_NE(input_error([&] { make_task_split(10, 3, ClassOrder{}, 0); }).find("a divisor of 10"), std::string::npos);
  EXPECT_NE(input_error([&] { make_task_split(10, 1, ClassOrder{"list", {1, 1}}, 0); }).find("appears twice"), std::string::npos);
  EXPECT_NE(input_error([&] { make_task_split(10, 1, ClassOrder{"list", {10}}, 0); }).find("out of range"), std::string::npos);
  TensorDataset ds("t", torch::zeros({4, 1, 2, 2}, torch::kUInt8), torch::tensor({9, 1, 8, 9}, torch::kInt64), 10);
  EXPECT_TRUE(torch::equal(l.task_indices(ds, 0), torch::tensor({0, 2, 3}, torch::kInt64)));
}

}  // namespace
}  // namespace cts
