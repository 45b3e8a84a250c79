// The small texts of this program (password lines, metadata, scopes,
// retention rules, numbers in files and flags): one way to split them and
// one way to read a number.
#pragma once

#include <cstdint>
#include <climits>
#include <optional>
#include <string>
#include <vector>

namespace artifact {

// A non-negative decimal of 1..`max_digits` digits that fits an int64_t,
// nothing else: no sign, no space, no "0x".
inline std::optional<int64_t> ParseDigits(const std::string& text, size_t max_digits = 19) {
  if (text.empty() || text.size() > max_digits) return std::nullopt;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const int digit = c - '0';
    if (value > (INT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// Every field, empty ones included, so "a::b" has three fields and a
// caller's validation sees the empty one.
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
