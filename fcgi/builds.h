// The artifacts volume and its one owner. Everything the app does below
// artifacts_dir goes through Builds: creating a build's directories at issue,
// telling whether a build is published, sealing it, `latest`, and what
// retention lists and removes. (nginx writes the uploads; the token store
// owns tokens_dir alone.)
//
// Build order. A build is newer than another when its directory was created
// later by the app, that is when its first token was issued later: Open()
// stamps a new build with the time in nanoseconds (a hidden file `.created`,
// which nginx never serves and no token can write). Nothing a client
// controls decides the order: not names, not `Date:` headers, not mtimes. A
// build without a stamp (made before stamps existed, or by hand) is older
// than every stamped one; among those, and between stamps equal to the
// nanosecond, names decide: numbers (all digits) by value, before other names
// by byte order. That is one total order, used by `latest` and retention.
//
// `latest`: each builder directory (a scope without its last segment) may
// hold a hidden file `.latest` naming its newest build that sealed as a
// success. It only ever moves to a newer build: the read, the comparison and
// the rename happen under the builder's lock (`.latest.lock`, an open file
// description lock, disk.h), so two seals racing cannot move it backwards.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "clock.h"
#include "disk.h"
#include "result.h"
#include "seal.h"

namespace artifact {

inline constexpr const char* kCreatedFile = ".created";
inline constexpr const char* kLatestFile = ".latest";

// A build's place in the build order.
struct BuildKey {
  int64_t created_ns = -1;  // -1: no stamp
  std::string name;         // the build segment

  // True when `a` comes before (is older than) `b`.
  friend bool operator<(const BuildKey& a, const BuildKey& b);
};

// One build of a builder as retention sees it.
struct BuildEntry {
  std::string name;      // the build segment
  BuildKey key;          // its place in the build order
  int64_t time = 0;      // when it was published (seal time, else directory mtime), for days=
  bool protect = false;  // live token or KEEP pin
};

class Builds {
 public:
  // `artifacts_dir` must exist. The clock and disk must outlive this.
  Builds(std::string artifacts_dir, const Clock& clock, Disk& disk = Disk::Default());

  const std::string& dir() const { return artifacts_dir_; }
  std::string PathOf(const std::string& scope) const { return artifacts_dir_ + "/" + scope; }

  // True when the scope's directory holds anything visible: a published build.
  // The health check: creates and removes a directory in the artifacts
  // tree the way Open does.
  Status CheckWritable() const;

  Result<bool> IsPublished(const std::string& scope) const;

  // Creates the scope's directories (group-writable for nginx's workers,
  // setgid) and stamps a new build with its place in the build order. An
  // existing build keeps its stamp: reopening does not make it newer.
  Status Open(const std::string& scope);

  // The scope's place in the build order.
  BuildKey KeyOf(const std::string& scope) const;

  // SHA256SUMS for the scope (seal.h), and its size before sealing.
  Result<SealReport> Seal(const std::string& scope) const { return SealDirectory(PathOf(scope)); }
  Result<int64_t> Bytes(const std::string& scope) const { return TreeBytes(PathOf(scope)); }

  // Makes the scope its builder's `latest` unless the current one is newer.
  Status UpdateLatest(const std::string& scope);
  // The build `latest` stands for below `builder` (a path of scope_depth - 1
  // segments); 404 when none was sealed yet.
  Result<std::string> ResolveLatest(const std::string& builder) const;

  // The builders: directories `depth - 1` levels down.
  std::vector<std::string> Builders(int depth) const;
  // A builder's builds; `has_token(scope)` says which have a live token.
  std::vector<BuildEntry> List(const std::string& builder,
                               const std::function<bool(const std::string& scope)>& has_token) const;
  // Deletes a build (never following a symlink out of the tree).
  Status Remove(const std::string& scope);

 private:
  std::string artifacts_dir_;
  const Clock& clock_;
  Disk& disk_;
};

}  // namespace artifact
