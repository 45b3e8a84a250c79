// libFuzzer: PasswordLine::Parse never crashes, and a parsed line formats
// back to one line that parses to the same token (no field can smuggle a
// second line or field into the file nginx reads).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "password_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto line = artifact::PasswordLine::Parse(text);
  if (!line) return 0;
  auto formatted = line->Format();
  if (!formatted) return 0;
  const std::string& out = formatted.value();
  if (out.find('\n') != out.size() - 1) std::abort();
  auto again = artifact::PasswordLine::Parse(out);
  if (!again || again->info.username != line->info.username || again->hash != line->hash ||
      again->info.expires != line->info.expires || again->info.scopes != line->info.scopes) {
    std::abort();
  }
  artifact::SshaVerify(text, line->hash);
  return 0;
}
