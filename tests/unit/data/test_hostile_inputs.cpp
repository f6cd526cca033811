// Hostile input for the data parsers (idx, CIFAR, JPEG, PNG, class lists). Truncated, oversized-claimed-size, wrong-magic and inconsistent files must give
// an InputError naming the file and the offset or field, with what was expected and what was
// found; a header's claimed size is checked against the file before anything is allocated.
// Then a deterministic mutation sweep (every truncation length, seeded byte flips) over a
// valid file: the parser may accept or raise InputError, nothing else (fuzz/ goes further).
#include <torch/torch.h>

#include "cts/core/error.hpp"
#include "cts/data/cifar.hpp"
#include "cts/data/idx.hpp"
#include "cts/data/image_codec.hpp"
#include "cts/data/image_folder.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::expect_error;
using test::MemFile;
using test::sweep;
using test::TempDir;
namespace fs = std::filesystem;

using test::be32;
using test::idx_bytes;
using test::input_error;

// ---------------------------------------------------------------- idx
TEST(HostileInput, Idx) {
  TempDir dir;
  const auto p = dir / "images-idx3-ubyte";
  const std::string f = p.string();
  auto read = [&](const std::string& bytes) {
    test::write_text(p, bytes);
    return [&] { read_idx(p); };
  };
  expect_error("empty", read(""), {f, "truncated: 0 bytes", "expected at least the 4-byte idx magic"});
  expect_error("wrong magic", read(std::string("\x01\x02\x08\x01", 4) + "junkjunk"), {f, "offset 0", "expected 00 00", "found 01 02"});
  expect_error("unsupported type", read(std::string("\x00\x00\x0D\x01", 4) + be32(1) + "xxxx"), {f, "0x0d at offset 2", "expected 0x08"});
  expect_error("no dimensions", read(std::string("\x00\x00\x08\x00", 4)), {f, "0 dimensions at offset 3", "expected 1 to 4"});
  expect_error("too many dimensions", read(std::string("\x00\x00\x08\x07", 4)), {f, "7 dimensions at offset 3"});
  expect_error("truncated header", read(std::string("\x00\x00\x08\x03", 4) + be32(2) + "\x00\x00"),
               {f, "dimension 1 at offset 8 is missing", "3 dimensions declared"});
  expect_error("zero dimension", read(idx_bytes({2, 0, 2}, "")), {f, "dimension 1 at offset 8 is 0", "expected 1 to 2^31"});
  expect_error("dimension above 2^31", read(idx_bytes({3, 0xFFFFFFFFu}, "")), {f, "dimension 1 at offset 8 is 4294967295"});
  // Claimed sizes: above the plausibility cap, and within it but far beyond the file. The
  // raw file is measured before the data is allocated; gzip is read in bounded chunks.
  expect_error("claims 216 TB", read(idx_bytes({60000, 60000, 60000}, "abc")), {f, "not a plausible idx file"});
  expect_error("claims 1 GB, raw", read(idx_bytes({1000, 1000, 1000}, "abc")),
               {f, "truncated", "dimensions 1000 x 1000 x 1000", "declares 1000000000 data bytes after its 16-byte header, the file holds 3"});
  expect_error("claims 1 GB, gzip", read(test::gzip(idx_bytes({1000, 1000, 1000}, "abc"))),
               {f, "truncated", "declares 1000000000 data bytes, the decompressed file holds 3"});
  expect_error("trailing data, raw", read(idx_bytes({2, 2}, "abcdef")), {f, "trailing data", "declares 4 data bytes", "holds 6"});
  expect_error("trailing data, gzip", read(test::gzip(idx_bytes({2, 2}, "abcdef"))), {f, "trailing data after the 4 bytes"});
  // A gzip stream with a corrupt deflate block.
  std::string gz = test::gzip(idx_bytes({64}, std::string(64, 'q')));
  gz[gz.size() / 2] = char(gz[gz.size() / 2] ^ 0x5A);
  EXPECT_NE(input_error(read(gz)).find(f), std::string::npos) << input_error(read(gz));
  EXPECT_NE(input_error(read(test::gzip(idx_bytes({64}, std::string(64, 'q'))).substr(0, 20))).find(f), std::string::npos);

  // Inconsistent image/label pairs.
  test::write_text(dir / "train-images-idx3-ubyte", idx_bytes({2, 4}, std::string(8, 'a')));
  test::write_text(dir / "train-labels-idx1-ubyte", idx_bytes({2}, std::string("\x01\x02", 2)));
  const std::vector<std::string> names(10, "c");
  expect_error("2-D images", [&] { load_idx_dataset(dir.path(), "train", "mnist", names); },
               {"train-images-idx3-ubyte", "expected 3 dimensions [N, H, W], found 2"});
  test::write_text(dir / "train-images-idx3-ubyte", idx_bytes({3, 2, 2}, std::string(12, 'a')));
  expect_error("count mismatch", [&] { load_idx_dataset(dir.path(), "train", "mnist", names); }, {"has 2 labels but", "has 3 images"});
}

// ---------------------------------------------------------------- CIFAR
TEST(HostileInput, Cifar) {
  TempDir dir;
  const auto p = dir / "test_batch.bin";
  auto load10 = [&](const std::string& bytes) {
    test::write_text(p, bytes);
    return [&] { read_cifar_files({p}, false, "cifar10", {}); };
  };
  auto load100 = [&](const std::string& bytes) {
    test::write_text(p, bytes);
    return [&] { read_cifar_files({p}, true, "cifar100", {}); };
  };
  const std::string pixels(3072, 'x');
  expect_error("empty", load10(""), {p.string(), "0 bytes is not a whole number of 3073-byte records"});
  expect_error("truncated record", load10("\x03" + pixels + "\x04" + pixels.substr(0, 100)),
               {p.string(), "3174 bytes", "3073-byte records (1 label byte(s) + 3072 pixels)"});
  expect_error("CIFAR-100 file read as CIFAR-10", load10(std::string("\x01\x02", 2) + pixels),
               {p.string(), "not a whole number of 3073-byte records"});
  expect_error("label out of range", load10("\x03" + pixels + "\x0A" + pixels), {p.string(), "record 1 (offset 3073) has label 10", "labels 0..9"});
  expect_error("fine label out of range", load100(std::string("\x01\x02", 2) + pixels + std::string("\x01\x64", 2) + pixels),
               {p.string(), "record 1 (offset 3074) has label 100", "labels 0..99"});
  expect_error("coarse label out of range", load100(std::string("\x14\x02", 2) + pixels), {p.string(), "record 0 (offset 0) has coarse label 20", "0..19"});
  expect_error("a folder instead of a file", [&] { read_cifar_files({dir.path()}, false, "cifar10", {}); }, {dir.path().string(), "is a directory"});
}

// ---------------------------------------------------------------- JPEG / PNG
// Offset of the first marker `m` (0xFF m) in a JPEG.
size_t jpeg_marker(const std::string& j, unsigned char m) {
  for (size_t i = 2; i + 1 < j.size(); ++i)
    if (static_cast<unsigned char>(j[i]) == 0xFF && static_cast<unsigned char>(j[i + 1]) == m) return i;
  return std::string::npos;
}

torch::Tensor test_image(int64_t c, int64_t h, int64_t w) {
  auto g = torch::arange(h * w, torch::kInt64).reshape({1, h, w});
  return ((g * 7 + torch::arange(c, torch::kInt64).reshape({c, 1, 1}) * 50) % 256).to(torch::kUInt8).contiguous();
}

TEST(HostileInput, Jpeg) {
  const std::string good = encode_jpeg(test_image(3, 32, 48), 90);
  ASSERT_EQ(decode_image(good, "good.jpg").sizes(), (std::vector<int64_t>{3, 32, 48}));
  expect_error("empty", [&] { decode_image("", "a.jpg"); }, {"a.jpg", "not a JPEG or PNG", "offset 0"});
  expect_error("wrong magic", [&] { decode_image(std::string("\xFF\xD8\x00", 3) + good.substr(3), "a.jpg"); }, {"a.jpg", "not a JPEG or PNG"});
  // Cut inside the header, and inside the entropy-coded data.
  expect_error("cut in the header", [&] { decode_image(good.substr(0, 40), "a.jpg"); }, {"a.jpg", "JPEG"});
  const size_t sos = jpeg_marker(good, 0xDA);
  ASSERT_NE(sos, std::string::npos);
  expect_error("cut in the data", [&] { decode_image(good.substr(0, sos + 40), "a.jpg"); }, {"a.jpg", "truncated JPEG", "48x32 image"});
  // SOF claims 60000 x 60000: rejected from the file size before a 10 GB buffer exists.
  const size_t sof = jpeg_marker(good, 0xC0);
  ASSERT_NE(sof, std::string::npos);
  std::string big = good;
  big[sof + 5] = char(0xEA), big[sof + 6] = char(0x60), big[sof + 7] = char(0xEA), big[sof + 8] = char(0x60);
  expect_error("oversized claim", [&] { decode_image(big, "a.jpg"); },
               {"a.jpg", "declares 60000x60000 pixels", fmt::format("a {}-byte JPEG holds 1..{} pixels", big.size(), big.size() * 512)});
  // Inconsistent: the SOF names 7 components.
  std::string comps = good;
  comps[sof + 9] = 7;
  expect_error("7 components", [&] { decode_image(comps, "a.jpg"); }, {"a.jpg", "JPEG"});
  // A Huffman table that does not exist (the SOS refers to table 3 for every component).
  std::string huff = good;
  for (int c = 0; c < 3; ++c) huff[sos + 6 + 2 * size_t(c)] = char(0x33);
  expect_error("missing Huffman table", [&] { decode_image(huff, "a.jpg"); }, {"a.jpg", "corrupt JPEG"});
}

std::string png_chunk(const std::string& type, const std::string& data) {
  std::string c = be32(uint32_t(data.size())) + type + data;
  const uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(c.data() + 4), uInt(c.size() - 4));
  return c + be32(crc);
}

std::string png_file(uint32_t w, uint32_t h, const std::string& idat_raw, int bit_depth = 8, int color = 0) {
  uLongf n = compressBound(uLong(idat_raw.size()));
  std::string z(n, '\0');
  compress(reinterpret_cast<Bytef*>(z.data()), &n, reinterpret_cast<const Bytef*>(idat_raw.data()), uLong(idat_raw.size()));
  z.resize(n);
  const std::string ihdr = be32(w) + be32(h) + std::string{char(bit_depth), char(color), 0, 0, 0};
  return std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", ihdr) + png_chunk("IDAT", z) + png_chunk("IEND", "");
}

TEST(HostileInput, Png) {
  std::string rows;
  for (int y = 0; y < 4; ++y) rows += std::string(1, '\0') + std::string(6, char(y * 40));
  const std::string good = png_file(6, 4, rows);
  ASSERT_EQ(decode_image(good, "good.png", 1).sizes(), (std::vector<int64_t>{1, 4, 6}));
  expect_error("wrong magic", [&] { decode_image("\x89PNX" + good.substr(4), "a.png"); }, {"a.png", "not a JPEG or PNG", "offset 0"});
  expect_error("cut in IHDR", [&] { decode_image(good.substr(0, 20), "a.png"); }, {"a.png", "PNG"});
  expect_error("cut in IDAT", [&] { decode_image(good.substr(0, good.size() - 20), "a.png"); }, {"a.png", "PNG"});
  std::string crc = good;
  crc[29] = char(crc[29] ^ 1);  // IHDR CRC
  expect_error("IHDR CRC", [&] { decode_image(crc, "a.png"); }, {"a.png", "not a readable PNG", "CRC"});
  // IHDR claims 60000 x 60000 with a valid CRC: rejected from the file size.
  const std::string big = png_file(60000, 60000, rows);
  expect_error("oversized claim", [&] { decode_image(big, "a.png"); },
               {"a.png", "IHDR at offset 16", "declares 60000x60000 pixels", fmt::format("a {}-byte PNG holds", big.size())});
  // Inconsistent: IHDR says 6 x 40, IDAT holds 4 rows.
  expect_error("too little image data", [&] { decode_image(png_file(6, 40, rows), "a.png"); }, {"a.png", "corrupt PNG"});
  expect_error("bad bit depth", [&] { decode_image(png_file(6, 4, rows, 7), "a.png"); }, {"a.png", "PNG"});
  expect_error("bad filter byte", [&] {
    std::string bad = rows;
    bad[0] = 9;
    decode_image(png_file(6, 4, bad), "a.png");
  }, {"a.png", "corrupt PNG"});
}

// ---------------------------------------------------------------- class lists
TEST(HostileInput, ClassList) {
  TempDir dir;
  const auto p = dir / "classes.txt";
  auto load = [&](const std::string& text) {
    test::write_text(p, text);
    return [&] { read_class_list(p); };
  };
  const std::string f = p.string();
  expect_error("empty", load(""), {f, "no classes listed"});
  expect_error("only comments", load("# nothing\n\n   \n"), {f, "no classes listed"});
  expect_error("binary file", load(std::string("n0144\x00\x01\x02", 8)), {f, "line 1 column 6: control byte 0x00", "expected text"});
  expect_error("escape sequence", load("n01440764 tench\nn01443537 \x1b[31mgoldfish\n"), {f, "line 2 column 11: control byte 0x1b"});
  expect_error("duplicate", load("a\nb\na x\n"), {f, "line 3: class 'a' is listed twice"});
  expect_error("path traversal", load("../../etc\n"), {f, "line 1: '../../etc' is not a class folder name"});
  expect_error("dot-dot", load("..\n"), {f, "line 1: '..' is not a class folder name"});
  expect_error("long line", load(std::string(5000, 'n') + "\n"), {f, "line 1: 5000 characters; expected at most 4096"});
  expect_error("missing file", [&] { read_class_list(dir / "none.txt"); }, {"class list not found", (dir / "none.txt").string()});
  // A byte order mark and CRLF line ends are fine.
  test::write_text(p, "\xEF\xBB\xBFn01440764 tench\r\nn01443537\r\n");
  auto ok = read_class_list(p);
  ASSERT_EQ(ok.size(), 2u);
  EXPECT_EQ(ok[0].folder, "n01440764");
  EXPECT_EQ(ok[0].readable_name, "tench");
  EXPECT_EQ(ok[1].folder, "n01443537");
  // Inconsistent with the folder tree: a listed class without a folder.
  fs::create_directories(dir / "train" / "n01440764");
  expect_error("class without a folder", [&] { ImageFolderDataset(dir.path(), "train", p, 32, 0.875, 1); },
               {f, "class 'n01443537' (entry 2) has no folder", (dir / "train" / "n01443537").string()});
}

// ---------------------------------------------------------------- mutation sweep
TEST(HostileInput, DataFormatsMutationSweep) {
  MemFile file;
  auto via_file = [&](const std::function<void(const fs::path&)>& f) { return [&, f](const std::string& bytes) { f(file.set(bytes)); }; };
  std::string rows;
  for (int y = 0; y < 8; ++y) rows += std::string(1, char(y % 5)) + std::string(8, char(y * 30));
  sweep("idx", test::idx_bytes({3, 4, 4}, std::string(48, 'k')), via_file([](const fs::path& p) { read_idx(p); }));
  sweep("idx.gz", test::gzip(test::idx_bytes({3, 4, 4}, std::string(48, 'k'))), via_file([](const fs::path& p) { read_idx(p); }));
  sweep("cifar100", std::string("\x02\x05", 2) + std::string(3072, 'c'), via_file([](const fs::path& p) { read_cifar_files({p}, true, "c", {}); }));
  sweep("jpeg", encode_jpeg(test_image(3, 16, 16), 80), [](const std::string& s) { decode_image(s, "x.jpg"); });
  sweep("png", png_file(8, 8, rows), [](const std::string& s) { decode_image(s, "x.png", 3); });
  sweep("class list", "# ImageNet-100\nn01440764 tench\nn01443537 goldfish\n", via_file([](const fs::path& p) { read_class_list(p); }));
}

}  // namespace
}  // namespace cts
