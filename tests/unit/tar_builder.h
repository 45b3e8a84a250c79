// Tar archives built byte by byte for the tests of the tree upload: ustar,
// GNU and pax headers as tar(1) writes them, and the malformed ones it never
// writes.
#pragma once

#include <cstdio>
#include <cstring>
#include <string>

namespace artifact::testing {

enum class TarMagic { kPosix, kGnu, kNone };

// `h` with its checksum field set (off by one with `bad`).
inline std::string TarChecksummed(std::string h, bool bad = false) {
  unsigned sum = 0;
  h.replace(148, 8, std::string(8, ' '));
  for (unsigned char c : h) sum += c;
  if (bad) ++sum;
  std::snprintf(&h[148], 8, "%06o", sum);
  return h;
}

// One 512-byte header: `name` (and `prefix`) cut to their fields, `size` in
// octal, the right checksum unless `bad_checksum`.
inline std::string TarHeader(const std::string& name, size_t size, char type = '0', TarMagic magic = TarMagic::kPosix,
                             const std::string& prefix = "", bool bad_checksum = false) {
  std::string h(512, '\0');
  h.replace(0, std::min<size_t>(name.size(), 100), name.substr(0, 100));
  std::snprintf(&h[100], 8, "%07o", 0644u);
  std::snprintf(&h[124], 12, "%011zo", size);
  h[156] = type;
  if (magic == TarMagic::kPosix) h.replace(257, 8, std::string("ustar\0" "00", 8));
  if (magic == TarMagic::kGnu) h.replace(257, 8, std::string("ustar  \0", 8));
  h.replace(345, std::min<size_t>(prefix.size(), 155), prefix.substr(0, 155));
  return TarChecksummed(h, bad_checksum);
}

// `data` padded with zeros to a whole number of blocks.
inline std::string TarData(const std::string& data) { return data + std::string((512 - data.size() % 512) % 512, '\0'); }

inline std::string TarFile(const std::string& name, const std::string& content, TarMagic magic = TarMagic::kPosix) {
  return TarHeader(name, content.size(), '0', magic) + TarData(content);
}
inline std::string TarDir(const std::string& name) { return TarHeader(name, 0, '5'); }
// A pax extended header carrying `path` for the entry after it.
inline std::string TarPaxPath(const std::string& path) {
  std::string record = " path=" + path + "\n";
  size_t length = record.size() + 1;
  while (std::to_string(length).size() + record.size() != length) ++length;
  record = std::to_string(length) + record;
  return TarHeader("PaxHeaders/x", record.size(), 'x') + TarData(record);
}
// A GNU long name ('L') for the entry after it.
inline std::string TarLongName(const std::string& name) {
  return TarHeader("././@LongLink", name.size() + 1, 'L', TarMagic::kGnu) + TarData(name + '\0');
}
// The end of an archive: two zero blocks.
inline std::string TarEnd() { return std::string(1024, '\0'); }

}  // namespace artifact::testing
