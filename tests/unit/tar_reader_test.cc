#include "tar_reader.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <vector>

#include "unit/tar_builder.h"

using artifact::ErrorCode;
using artifact::Result;
using artifact::TarEntry;
using artifact::TarReader;
using namespace artifact::testing;

namespace {

// A reader over `bytes` that hands out at most `chunk` bytes per call, as a
// socket does.
artifact::ReadFunction Source(const std::string& bytes, size_t chunk = 100000) {
  auto pos = std::make_shared<size_t>(0);
  return [bytes, chunk, pos](char* buf, size_t n) -> Result<size_t> {
    const size_t step = std::min({n, chunk, bytes.size() - *pos});
    std::memcpy(buf, bytes.data() + *pos, step);
    *pos += step;
    return step;
  };
}

struct Read {
  std::vector<TarEntry> entries;
  std::vector<std::string> data;
  std::string error;  // empty when the archive was read to its end
  ErrorCode code = ErrorCode::kInternal;
};

// Every entry and its data, `read_data` false: the data is skipped by Next().
Read ReadAll(const std::string& bytes, size_t chunk = 100000, bool read_data = true) {
  TarReader reader(Source(bytes, chunk));
  Read out;
  while (true) {
    auto next = reader.Next();
    if (!next) {
      out.error = next.error().message;
      out.code = next.error().code;
      return out;
    }
    if (!next.value()) return out;
    out.entries.push_back(*next.value());
    std::string data;
    char buf[7];
    while (read_data) {
      auto n = reader.ReadData(buf, sizeof buf);
      if (!n) {
        out.error = n.error().message;
        out.code = n.error().code;
        return out;
      }
      if (n.value() == 0) break;
      data.append(buf, n.value());
    }
    out.data.push_back(data);
  }
}

}  // namespace

TEST_CASE("a tar stream is read entry by entry, in any chunks", "[tar]") {
  const std::string content(1000, 'c');
  const std::string archive = TarDir("./") + TarDir("./logs/") + TarFile("./logs/build.log", content) +
                              TarFile("./empty", "") + TarHeader("name.txt", 3, '0', TarMagic::kPosix, "deep/er") +
                              TarData("abc") + TarFile("gnu.txt", "g", TarMagic::kGnu) + TarEnd();
  for (size_t chunk : {size_t{1}, size_t{511}, size_t{100000}}) {
    INFO(chunk);
    Read r = ReadAll(archive, chunk);
    REQUIRE(r.error.empty());
    REQUIRE(r.entries.size() == 6);
    CHECK(r.entries[0].directory);
    CHECK(r.entries[1].path == "./logs/");
    CHECK(r.entries[2].path == "./logs/build.log");
    CHECK_FALSE(r.entries[2].directory);
    CHECK(r.entries[2].size == 1000);
    CHECK(r.data[2] == content);
    CHECK(r.data[3].empty());
    CHECK(r.entries[4].path == "deep/er/name.txt");  // ustar's prefix field
    CHECK(r.data[4] == "abc");
    CHECK(r.entries[5].path == "gnu.txt");
    CHECK(r.data[5] == "g");
  }
  // Data left unread is skipped.
  Read skipped = ReadAll(archive, 100000, /*read_data=*/false);
  REQUIRE(skipped.error.empty());
  CHECK(skipped.entries.size() == 6);
}

TEST_CASE("long names come from a pax path record or a GNU long name", "[tar]") {
  const std::string long_name = "./" + std::string(200, 'a') + "/" + std::string(150, 'b');
  Read r = ReadAll(TarPaxPath(long_name) + TarFile("short", "1") + TarLongName(long_name + "2") +
                   TarFile("short2", "2", TarMagic::kGnu) + TarFile("plain", "3") + TarEnd());
  REQUIRE(r.error.empty());
  REQUIRE(r.entries.size() == 3);
  CHECK(r.entries[0].path == long_name);
  CHECK(r.entries[1].path == long_name + "2");
  CHECK(r.entries[2].path == "plain");  // a long name applies to one entry only
  CHECK(r.data == std::vector<std::string>{"1", "2", "3"});
}

TEST_CASE("an archive may end at its zero blocks or at the end of the stream", "[tar]") {
  CHECK(ReadAll("").entries.empty());
  CHECK(ReadAll("").error.empty());
  Read r = ReadAll(TarFile("a", "x"));
  CHECK(r.error.empty());
  CHECK(r.entries.size() == 1);
  // What follows the zero blocks is not read as entries.
  Read after = ReadAll(TarFile("a", "x") + TarEnd() + TarFile("b", "y"));
  CHECK(after.entries.size() == 1);
}

TEST_CASE("anything but files and directories, and malformed archives, are refused", "[tar]") {
  struct Case {
    std::string archive;
    const char* words;
  };
  std::string base256 = TarHeader("big", 0);
  base256[124] = static_cast<char>(0x80);  // GNU's base-256 size
  base256 = TarChecksummed(base256);
  std::string unterminated_pax = TarHeader("PaxHeaders/x", 12, 'x') + TarData("12 path=abc") + TarFile("f", "1");
  const std::vector<Case> cases = {
      {TarHeader("link", 0, '2') + TarEnd(), "link is a symlink"},
      {TarHeader("hard", 0, '1') + TarEnd(), "hard is a hard link"},
      {TarHeader("dev", 0, '3') + TarEnd(), "dev is not a file or a directory"},
      {TarHeader("fifo", 0, '6') + TarEnd(), "not a file or a directory"},
      {TarHeader("f", 1, '0', TarMagic::kPosix, "", /*bad_checksum=*/true) + TarData("x"), "checksum"},
      {TarHeader("f", 1, '0', TarMagic::kNone) + TarData("x"), "not a ustar header"},
      {base256, "size"},
      {TarHeader("f", 1000) + std::string(600, 'x'), "ends inside an entry"},
      {TarFile("f", "x").substr(0, 300), "ends inside a header"},
      {TarPaxPath("x") + TarEnd(), "without its entry"},
      {unterminated_pax, "does not end its line"},
      {TarHeader("PaxHeaders/x", 100000, 'x') + TarEnd(), "extended header of 100000 bytes"},
  };
  for (const auto& c : cases) {
    INFO(c.words);
    Read r = ReadAll(c.archive);
    CHECK(r.code == ErrorCode::kBadRequest);
    CHECK(r.error.find(c.words) != std::string::npos);
  }
}
