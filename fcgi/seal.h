// Sealing a build: at its end, SHA256SUMS in each scope directory lists every
// file the build uploaded, in the format `sha256sum -c` reads. A client may
// state a file's digest beforehand as a sidecar `name.sha256` (first word:
// the hex digest); sealing verifies it and reports mismatches.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "result.h"

namespace artifact {

inline constexpr const char* kManifestName = "SHA256SUMS";

struct SealReport {
  int64_t files = 0;   // listed in SHA256SUMS
  int64_t bytes = 0;   // their total size
  std::vector<std::string> mismatches;  // files whose .sha256 sidecar disagrees
};

struct Manifest {
  SealReport report;
  std::string text;  // the SHA256SUMS content; empty for an empty build
};

// Hashes every regular file below `dir` (symlinks and hidden entries are
// never followed or listed, nor a SHA256SUMS at the top) and returns the
// manifest; writing it is the caller's (Builds::Seal). An empty build has an
// empty manifest (files == 0).
Result<Manifest> HashTree(const std::string& dir);

}  // namespace artifact
