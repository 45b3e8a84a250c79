// libFuzzer: Scope::Parse never crashes, and what it accepts is well formed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "scope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int depth = 1 + data[0] % 8;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  auto scope = artifact::Scope::Parse(text, depth);
  if (!scope) return 0;
  // Accepted: exactly `depth` valid segments that join back to the input.
  if (static_cast<int>(scope->segments().size()) != depth) std::abort();
  std::string joined;
  for (const auto& seg : scope->segments()) {
    if (!artifact::IsValidSegment(seg)) std::abort();
    joined += (joined.empty() ? "" : "/") + seg;
  }
  if (joined != text) std::abort();
  if (!scope->IsUnder(text)) std::abort();
  return 0;
}
