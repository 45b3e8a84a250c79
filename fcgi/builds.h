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
//
// Sealed means sealed. nginx checks a write's token when its headers arrive
// and renames the finished body into place much later, with no second
// check, so removing the token cannot stop an upload already in flight.
// Freezing does: every directory of the build loses its write bits (0555,
// walked top-down, each chmod before its listing, so nothing can appear
// behind the walk). nginx's final rename (or unlink, or mkdir) then fails
// with EACCES and leaves nothing. That holds for nginx's workers whether they
// run as the app's user or only share its group, on every node of a shared
// volume, as long as the app owns the build's directories (it makes them
// all: nginx creates none, see build_tree.h) and nginx's workers are not
// root. A frozen build is one whose directory has no write bit; the app's
// own directory operations check that under the build's lock (Lock), so the
// app cannot undo a seal even when it runs as root.
//
// The seal's files, SHA256SUMS and the record `.build.json`, are written into
// the frozen build root while it is renamed away to a hidden name, so no
// upload can land there while its write bit is briefly back (downloads of
// the build answer 404 for those milliseconds). A crash in between leaves
// the hidden name; the next Lock() of the build renames it back.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "clock.h"
#include "disk.h"
#include "result.h"
#include "seal.h"

namespace artifact {

inline constexpr const char* kCreatedFile = ".created";
inline constexpr const char* kLatestFile = ".latest";
// The public per-build record, written at seal (BuildRecord).
inline constexpr const char* kRecordFile = ".build.json";

// How a build ended (DESIGN.md "Build states"): its master's verdict, or
// `expired` when its token ran out (or an operator sealed it).
enum class BuildResult { kSuccess, kFailure, kExpired };
const char* BuildResultName(BuildResult r);
// "success", "failure", "expired"; nullopt for anything else.
std::optional<BuildResult> ParseBuildResult(const std::string& text);

// A build's place in the build order.
struct BuildKey {
  int64_t created_ns = -1;  // -1: no stamp
  std::string name;         // the build segment

  // True when `a` comes before (is older than) `b`.
  friend bool operator<(const BuildKey& a, const BuildKey& b);
};

// What a seal records about a build: no secret, public.
struct BuildRecord {
  std::string scope;
  std::string state;  // "sealed", or "failed" when hashing or writing failed
  BuildResult result = BuildResult::kFailure;
  std::string issued_by;  // the master, "-" for an operator's seal
  std::string username;   // the token, "-" when none
  int64_t created = 0;    // unix time of the build's first issue (0: unknown)
  int64_t sealed_at = 0;  // unix time
  SealReport report;
  // Whether `latest` may name it: a success with files and no mismatch.
  bool LatestEligible() const;
  std::string ToJson() const;
  // The record ToJson wrote; nullopt when `json` is not one (a record from a
  // future version may carry more keys: they are ignored).
  static std::optional<BuildRecord> FromJson(const std::string& json);
};

// One visible entry of a directory in the artifact tree: a regular file or
// a real directory (hidden names, symlinks and anything else are left out).
struct DirEntry {
  std::string name;
  bool directory = false;
  int64_t size = -1;   // bytes of a file; -1 for a directory (see browser.h)
  int64_t mtime = 0;   // unix time
  bool frozen = false;  // a directory without write bits (a sealed build)
};

// What the app recorded about one build, read without hashing anything: the
// build browser's row (browser.h says how it becomes a state).
struct BuildSummary {
  std::string name;  // the build segment
  BuildKey key;
  bool frozen = false;
  // Frozen without a record: true while a seal holds the build's lock (it is
  // being hashed), false when the seal failed (or died).
  bool busy = false;
  std::optional<BuildRecord> record;
  std::string record_json;  // the record as the seal wrote it; empty without one
};

// A frozen build's size, counted by the freeze walk.
struct TreeCount {
  int64_t files = 0;
  int64_t bytes = 0;
};

// One build of a builder as retention sees it.
struct BuildEntry {
  std::string name;      // the build segment
  BuildKey key;          // its place in the build order
  int64_t time = 0;      // when it was sealed (else created), as the app recorded it, for days=
  bool protect = false;  // live token, KEEP pin, or its builder's latest
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
  // setgid) and stamps a new build with its place in the build order and
  // the master that opened it. An existing build keeps its stamp: reopening
  // does not make it newer. Under the build's lock: a published build (one
  // holding files) is 409 unless `reopen`; a sealed one is thawed.
  Status Open(const std::string& scope, bool reopen = false, const std::string& master = "");
  // The master that opened the build ("" when unknown).
  std::string OpenedBy(const std::string& scope) const;

  // The scope's place in the build order.
  BuildKey KeyOf(const std::string& scope) const;

  // The build's lock: every change of a build's directories by the app
  // (tree operations, freeze, seal, thaw, removal) holds it. A lock file
  // beside the build (`.<build>.lock` in its builder), as the build itself
  // may be frozen. `wait` false: kConflict at once when someone holds it.
  Result<FileLock> Lock(const std::string& scope, bool wait = true) const;
  // True when the build's directory has no write bit (see above). Ask under
  // the build's lock.
  Result<bool> IsFrozen(const std::string& scope) const;
  // Makes every directory of the build 0555, top-down; counts its files and
  // bytes on the way. Under the build's lock. A directory that is not the
  // app's (EPERM) fails it, and the build is then not sealed.
  // `ticket` names this freeze (`.<build>.frozen` beside the build): a seal
  // queued for it seals only while the ticket is still there, so a seal
  // overtaken by a reopen (Thaw removes the ticket) and a newer freeze
  // does nothing.
  Result<TreeCount> Freeze(const std::string& scope, const std::string& ticket);
  // Hashes the frozen build and writes SHA256SUMS and the record (see above),
  // when `ticket` is still the build's (kConflict otherwise). `record` gets
  // the report and the seal time. A build sealed as not eligible stops being
  // latest. Under the build's lock.
  Status Seal(const std::string& scope, const std::string& ticket, BuildRecord* record);
  // The record a seal wrote; kNotFound when the build was never sealed.
  Result<std::string> RecordJson(const std::string& scope) const;
  // The build's SHA256SUMS (at most `max_bytes`); kNotFound when none.
  Result<std::string> ManifestText(const std::string& scope, size_t max_bytes) const;

  // The visible entries of the directory `rel` ("" for the root; segments
  // separated by '/', already validated), reached from the artifacts root
  // one openat(O_NOFOLLOW) at a time: kNotFound when it is missing, not a
  // directory or reached through a symlink. Unsorted.
  Result<std::vector<DirEntry>> ReadDirectory(const std::string& rel) const;
  // What the app recorded about the build `scope` (stamp, record, freeze),
  // read from a few small files: no hashing, no walk. `frozen` is what the
  // caller's listing saw (DirEntry::frozen).
  BuildSummary Summarize(const std::string& scope, bool frozen) const;
  // Undoes Freeze for a reopen: directories 0775 again, the record removed
  // (SHA256SUMS stays until the next seal replaces it), and `latest` moved
  // to the newest other eligible build if it named this one. Under the lock.
  Status Thaw(const std::string& scope);

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
  // Deletes a build (never following a symlink out of the tree), frozen or
  // not. Under the build's lock.
  Status Remove(const std::string& scope);

 private:
  // A hidden name in the build's builder directory: prefix + build + suffix
  // (the lock, the freeze's ticket, the seal's hidden rename).
  std::string Beside(const std::string& scope, const std::string& prefix, const std::string& suffix) const;
  std::string LockPath(const std::string& scope) const;
  std::string TicketPath(const std::string& scope) const;
  bool HoldsTicket(const std::string& scope, const std::string& ticket) const;
  // When `latest` names `scope`, points it at the newest other build whose
  // record makes it eligible (or removes it).
  Status ForgetLatest(const std::string& scope);
  std::string HiddenPath(const std::string& scope) const;
  // Writes `files` (name, content) into the frozen build root (see above).
  Status WriteIntoFrozen(const std::string& scope, const std::vector<std::pair<std::string, std::string>>& files);
  std::string artifacts_dir_;
  const Clock& clock_;
  Disk& disk_;
};

}  // namespace artifact
