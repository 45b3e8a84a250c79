// libFuzzer: TarReader never crashes or loops on any bytes, hands out exactly
// each entry's size, and ParseArchivePath accepts only valid names.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "build_tree.h"
#include "tar_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte chooses how many bytes each read hands out, as a socket
  // would: every split of the stream must read the same.
  const size_t chunk = 1 + data[0] % 64 * 97;
  size_t pos = 1;
  artifact::TarReader reader([&](char* buf, size_t n) -> artifact::Result<size_t> {
    const size_t step = std::min({n, chunk, size - pos});
    std::memcpy(buf, data + pos, step);
    pos += step;
    return step;
  });
  for (int entries = 0; entries < 10000; ++entries) {
    auto next = reader.Next();
    if (!next || !next.value()) return 0;
    const artifact::TarEntry& entry = *next.value();
    if (entry.directory && entry.size != 0) std::abort();
    uint64_t got = 0;
    char buf[512];
    while (true) {
      auto n = reader.ReadData(buf, sizeof buf);
      if (!n) break;
      if (n.value() == 0) {
        if (got != entry.size) std::abort();
        break;
      }
      got += n.value();
      if (got > entry.size) std::abort();
    }
    auto names = artifact::ParseArchivePath(entry.path);
    if (!names) continue;
    for (const auto& name : names.value()) {
      if (!artifact::IsValidEntry(name)) std::abort();
    }
  }
  return 0;
}
