// Scopes: the directory of one build, exactly `depth` segments such as
// dpkg/myproj/linux-amd64/42. The segment grammar here and the regex that
// `artifact-token nginx-map` prints come from the same constants, so nginx
// and the app cannot disagree about what a scope is.
#pragma once

#include <string>
#include <vector>

#include "result.h"

namespace artifact {

// A segment: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}. Never "." or "..", never
// hidden, no '/', ':', '%', whitespace, control bytes or non-ASCII.
inline constexpr int kMaxSegmentLength = 128;
inline constexpr int kMinScopeDepth = 1;
inline constexpr int kMaxScopeDepth = 8;
inline constexpr const char* kSegmentRegex = "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}";

// A path component below a scope (file or sub-directory a token uploads).
// Wider than a scope segment so Debian versions ("1.0+dfsg~1") fit, but still
// no hidden names, no '/', ':', '%', whitespace, control bytes or non-ASCII.
inline constexpr const char* kEntryRegex = "[A-Za-z0-9_+][A-Za-z0-9._+~-]{0,254}";

// The first segment "token" is where nginx routes the API; no scope may use it.
inline constexpr const char* kReservedFirstSegment = "token";
// The last segment "latest" stands for a builder's newest sealed build.
inline constexpr const char* kLatestSegment = "latest";

bool IsValidSegment(const std::string& s);

class Scope {
 public:
  // Parses "a/b/c/d" (no leading or trailing '/'). Errors name the problem.
  static Result<Scope> Parse(const std::string& text, int depth);

  const std::string& str() const { return text_; }
  const std::vector<std::string>& segments() const { return segments_; }

  // True when this scope lies under `prefix` (a masters file `allow=` entry),
  // compared by whole segments: "dpkg/myproj" and "dpkg/myproj/" both match
  // dpkg/myproj/x/1 but never dpkg/myproj2/x/1; ".../4" never matches ".../42".
  bool IsUnder(const std::string& prefix) const;

  bool operator==(const Scope& o) const { return text_ == o.text_; }
  bool operator<(const Scope& o) const { return text_ < o.text_; }

 private:
  std::string text_;
  std::vector<std::string> segments_;
};

// The nginx `map` blocks for `depth`, `tokens_dir` and `artifacts_dir` (see
// nginx/artifact-repository.conf.in for how their variables are used).
std::string NginxMapSnippet(int depth, const std::string& tokens_dir, const std::string& artifacts_dir);

}  // namespace artifact
