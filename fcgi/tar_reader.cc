#include "tar_reader.h"

#include <algorithm>
#include <cstring>

#include "split.h"

namespace artifact {
namespace {

constexpr size_t kBlock = 512;
// A GNU long name or a pax header larger than this is refused: names below
// a build are at most 32 entries of 255 bytes (build_tree.h).
constexpr size_t kMaxLongName = 16 * 1024;
constexpr size_t kMaxPaxHeader = 64 * 1024;

// The ustar header's fields (POSIX.1-2008 pax, "ustar Interchange Format").
struct Field {
  size_t offset;
  size_t length;
};
constexpr Field kName{0, 100};
constexpr Field kSize{124, 12};
constexpr Field kChecksum{148, 8};
constexpr Field kTypeflag{156, 1};
constexpr Field kMagic{257, 8};
constexpr Field kPrefix{345, 155};

Error Malformed(const std::string& why) { return Error{ErrorCode::kBadRequest, "not a valid tar archive: " + why}; }

// A field up to its first NUL.
std::string Text(const char* block, Field f) {
  const char* begin = block + f.offset;
  return std::string(begin, strnlen(begin, f.length));
}

// An octal number field: optional leading spaces, digits, then NULs or
// spaces. GNU's base-256 form (files of 8 GiB and more) is refused.
std::optional<uint64_t> Octal(const char* block, Field f) {
  size_t i = 0;
  const char* p = block + f.offset;
  while (i < f.length && p[i] == ' ') ++i;
  uint64_t value = 0;
  size_t digits = 0;
  for (; i < f.length && p[i] >= '0' && p[i] <= '7'; ++i, ++digits) {
    value = value * 8 + static_cast<uint64_t>(p[i] - '0');
  }
  if (digits == 0 || digits > 11) return std::nullopt;  // 11 octal digits: below 8 GiB
  for (; i < f.length; ++i) {
    if (p[i] != '\0' && p[i] != ' ') return std::nullopt;
  }
  return value;
}

bool AllZero(const char* block) {
  return std::all_of(block, block + kBlock, [](char c) { return c == '\0'; });
}

// The header's checksum: its bytes summed as unsigned, the checksum field
// counted as spaces.
bool ChecksumMatches(const char* block) {
  auto stored = Octal(block, kChecksum);
  if (!stored) return false;
  uint64_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    const bool in_field = i >= kChecksum.offset && i < kChecksum.offset + kChecksum.length;
    sum += in_field ? static_cast<uint64_t>(' ') : static_cast<unsigned char>(block[i]);
  }
  return sum == *stored;
}

uint64_t PaddingOf(uint64_t size) { return (kBlock - size % kBlock) % kBlock; }

// The `path` record of a pax extended header ("LENGTH key=value\n" records);
// nullopt when it has none. Malformed records are refused.
Result<std::optional<std::string>> PaxPath(const std::string& data) {
  std::optional<std::string> path;
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t space = data.find(' ', pos);
    if (space == std::string::npos) return Malformed("a pax record without a length");
    auto length = ParseDigits(data.substr(pos, space - pos), 6);
    if (!length || static_cast<size_t>(*length) <= space - pos + 1 ||
        static_cast<size_t>(*length) > data.size() - pos) {
      return Malformed("a pax record's length is wrong");
    }
    const std::string record = data.substr(space + 1, pos + static_cast<size_t>(*length) - space - 1);
    pos += static_cast<size_t>(*length);
    if (record.empty() || record.back() != '\n') return Malformed("a pax record does not end its line");
    const size_t eq = record.find('=');
    if (eq == std::string::npos) return Malformed("a pax record without '='");
    if (record.compare(0, eq, "path") == 0) path = record.substr(eq + 1, record.size() - eq - 2);
  }
  return path;
}

}  // namespace

Status TarReader::ReadExact(char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    auto r = read_(buf + got, n - got);
    if (!r) return r.error();
    if (r.value() == 0) return Malformed("the stream ends inside an entry");
    got += r.value();
  }
  return Ok{};
}

Status TarReader::Skip(uint64_t n) {
  char buf[8192];
  while (n > 0) {
    const size_t step = static_cast<size_t>(std::min<uint64_t>(n, sizeof buf));
    if (auto st = ReadExact(buf, step); !st) return st;
    n -= step;
  }
  return Ok{};
}

Result<std::string> TarReader::ReadMeta(uint64_t size, size_t max) {
  if (size > max) return Malformed("an extended header of " + std::to_string(size) + " bytes");
  std::string data(static_cast<size_t>(size), '\0');
  if (auto st = ReadExact(data.data(), data.size()); !st) return st.error();
  if (auto st = Skip(PaddingOf(size)); !st) return st.error();
  return data;
}

Result<size_t> TarReader::ReadData(char* buf, size_t n) {
  if (left_ == 0) return size_t{0};
  const size_t step = static_cast<size_t>(std::min<uint64_t>(left_, n));
  if (auto st = ReadExact(buf, step); !st) return st.error();
  left_ -= step;
  return step;
}

Result<std::optional<TarEntry>> TarReader::Next() {
  if (auto st = Skip(left_ + padding_); !st) return st.error();
  left_ = padding_ = 0;
  std::optional<std::string> long_name;  // from a pax or GNU header before this one
  char block[kBlock];
  while (true) {
    // The end of the stream at a header boundary ends the archive too (some
    // writers omit the two zero blocks).
    size_t got = 0;
    while (got < kBlock) {
      auto r = read_(block + got, kBlock - got);
      if (!r) return r.error();
      if (r.value() == 0) break;
      got += r.value();
    }
    if (got == 0 && !long_name) return std::optional<TarEntry>();
    if (got < kBlock) return Malformed("the stream ends inside a header");
    if (AllZero(block)) {
      if (long_name) return Malformed("an extended header without its entry");
      return std::optional<TarEntry>();
    }
    if (!ChecksumMatches(block)) return Malformed("a header's checksum is wrong");
    const std::string magic(block + kMagic.offset, kMagic.length);
    const bool posix = magic.compare(0, 6, std::string("ustar\0", 6)) == 0;
    const bool gnu = magic == std::string("ustar  \0", 8);
    if (!posix && !gnu) return Malformed("not a ustar header (write it with tar --format=ustar or posix)");
    auto size = Octal(block, kSize);
    if (!size) return Malformed("an entry's size is not an octal number below 8 GiB");
    const char type = block[kTypeflag.offset];
    if (type == 'x' || type == 'L') {
      auto data = ReadMeta(*size, type == 'x' ? kMaxPaxHeader : kMaxLongName);
      if (!data) return data.error();
      if (type == 'L') {
        std::string name = data.value();
        name.resize(strnlen(name.data(), name.size()));
        long_name = name;
      } else {
        auto path = PaxPath(data.value());
        if (!path) return path.error();
        if (path.value()) long_name = *path.value();
      }
      continue;
    }
    if (type == 'g') {  // pax global header: nothing in it applies here
      if (auto st = Skip(*size + PaddingOf(*size)); !st) return st.error();
      continue;
    }
    TarEntry entry;
    if (long_name) {
      entry.path = *long_name;
    } else {
      const std::string prefix = posix ? Text(block, kPrefix) : std::string();
      entry.path = (prefix.empty() ? "" : prefix + "/") + Text(block, kName);
    }
    if (type == '0' || type == '\0') {
      entry.size = *size;
      left_ = *size;
      padding_ = PaddingOf(*size);
    } else if (type == '5') {
      entry.directory = true;
      if (*size != 0) padding_ = *size + PaddingOf(*size);  // never written; skipped
    } else {
      const char* what = type == '1' ? "a hard link" : type == '2' ? "a symlink" : "not a file or a directory";
      return Error{ErrorCode::kBadRequest, entry.path + " is " + what + ": a tree upload holds files and directories only"};
    }
    return std::optional<TarEntry>(std::move(entry));
  }
}

}  // namespace artifact
