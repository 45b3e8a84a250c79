// Splitting the small texts of this program (password lines, metadata,
// scopes, retention rules): every field, empty ones included, so "a::b"
// has three fields and a caller's validation sees the empty one.
#pragma once

#include <string>
#include <vector>

namespace artifact {

inline std::vector<std::string> SplitFields(const std::string& text, char sep) {
  std::vector<std::string> fields;
  std::string::size_type start = 0;
  while (true) {
    auto pos = text.find(sep, start);
    fields.push_back(text.substr(start, pos == std::string::npos ? std::string::npos : pos - start));
    if (pos == std::string::npos) return fields;
    start = pos + 1;
  }
}

}  // namespace artifact
