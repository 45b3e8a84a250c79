// Directory operations inside one build's directory that nginx's WebDAV
// module cannot do safely: making the missing directories of a PUT, and
// deleting a directory with everything in it. nginx's own versions follow
// symlinks (create_full_put_path mkdir()s through them; a recursive DELETE
// stat()s every entry and walks into a linked directory). These walk the
// tree by descriptor, each step openat(O_NOFOLLOW | O_DIRECTORY) relative to
// the last, so a symlink anywhere, planted before or during the call, stops
// the operation instead of redirecting it.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "posix_file.h"
#include "result.h"
#include "tar_reader.h"

namespace artifact {

// Directories below a build: group-writable for nginx's workers. The setgid
// bit that keeps the group is inherited from the build directory, never asked
// for: systemd's RestrictSUIDSGID= refuses a mkdir or chmod that asks for it.
inline constexpr mode_t kBuildDirMode = 0775;

// How deep a path below a build may go (directories and the file): the
// seal walks every directory of a build, one descriptor per level, and a
// token holder must not be able to make that walk fail (issue 14: 1,100
// levels exhausted the descriptors and left the deepest ones writable).
inline constexpr size_t kMaxEntriesBelowBuild = 32;

// A name below a build: [A-Za-z0-9_+][A-Za-z0-9._+~-]{0,254} (kEntryRegex).
bool IsValidEntry(const std::string& name);

// A path in the artifact tree as nginx normalised it, split into the build
// (its scope) and the entries below it.
struct BuildPath {
  std::string scope;                 // e.g. dpkg/myproj/linux-amd64/42
  std::vector<std::string> entries;  // e.g. {"logs", "build.log"}
};

// Parses "/<scope>/<entry>/.../<entry>[/]" for `depth`; at least one entry
// (none with `build_root`: "/<scope>[/]" too), at most kMaxEntriesBelowBuild.
// 400 for anything else (the scope grammar, an invalid or hidden entry, "..").
Result<BuildPath> ParseBuildPath(const std::string& uri, int depth, bool build_root = false);

// Both operations ask `still_live` before each change (each mkdir, unlink and
// rmdir): when the build's token is revoked meanwhile, the build is being
// sealed, and the operation stops there with 409 instead of changing it.
using StillLive = std::function<bool()>;

// Makes every missing directory of `dirs` below the existing build directory
// `scope` of `artifacts_dir`, each with the permission bits `mode` (widened by
// fchmod only when the umask narrowed them, keeping an inherited setgid bit;
// the parent is fsynced after each). 409 when a component exists and is not a real directory (a file or a
// symlink), 404 when the build directory is missing or is itself reached
// through a symlink.
Status MakeBuildDirs(const std::string& artifacts_dir, const std::string& scope,
                     const std::vector<std::string>& dirs, mode_t mode, const StillLive& still_live);

// MKCOL (RFC 4918 9.3): makes the one directory `entries` names, whose
// parent must exist (409 otherwise); 405 when the name exists. nginx's own
// MKCOL would make a directory owned by nginx's user, which the seal could
// not freeze (builds.h): every directory of a build is the app's.
Status MakeCollection(const std::string& artifacts_dir, const std::string& scope,
                      const std::vector<std::string>& entries, mode_t mode, const StillLive& still_live);

// Deletes the directory `dir` below the build directory `scope`, with
// everything in it; a symlink inside is unlinked, never followed. 404 when it
// does not exist, 409 when it (or a directory on the way) is not a real
// directory. Stops at the first failure: what was deleted stays deleted.
Status RemoveBuildDir(const std::string& artifacts_dir, const std::string& scope,
                      const std::vector<std::string>& dir, const StillLive& still_live);

// The tree upload: a tar archive POSTed to a directory URL of a build (the
// build itself or one below it) is unpacked by the app in two steps, so that
// a revoke racing it either freezes what it wrote or leaves nothing:
//   Stage   unpacks the whole archive into a hidden directory beside the
//           build (in its builder directory, `.<build>.upload-<random>`),
//           laid out as the build is: outside the build, so a freeze
//           meanwhile does not see it, and on the same filesystem, so it
//           moves into the build by rename. Slow (the bytes), and needs no
//           lock.
//   Commit  under the build's lock, with the build not frozen and its token
//           live (the caller's checks, as for the other operations here):
//           first checks that nothing in the build is in the way (a file or
//           symlink where the archive has a directory, a directory where it
//           has a file: 409, nothing changed), then merges the staged tree
//           into the build by rename: a file or directory the build does not
//           have yet moves in whole (one rename for a new directory and all
//           below it), a file replaces the build's, a directory both have is
//           merged the same way. Quick: a freeze waits for it.
// Each file appears at its URL complete, as with PUT. Only a change of the
// build by someone else between the check and the renames (nginx's PUTs and
// DELETEs take no lock) can stop Commit half-way: what was renamed stays.
// Both steps hold two descriptors per level of the tree at most, and no list
// of the archive's names. Destruction removes the staging directory with
// what is left in it.
struct UploadCount {
  int64_t files = 0;
  int64_t directories = 0;  // the archive's directory entries
  int64_t bytes = 0;
};

// An archive's name for an entry as names below the target: a leading "./"
// (tar -C dir .) and a trailing "/" dropped; every other name must be valid
// (IsValidEntry). Empty for "." and "./" (the target itself). 400 otherwise:
// an absolute name, "..", an empty or hidden name.
Result<std::vector<std::string>> ParseArchivePath(const std::string& path);

class StagedTree {
 public:
  // At most this many entries in one archive, the directories made for them
  // counted: what an archive can make the app create is bounded.
  static constexpr int64_t kMaxEntries = 100000;

  // Reads `archive` to its end into the staging directory of `scope`'s build
  // below `artifacts_dir`. `target`: the names of the directory the archive
  // is unpacked into (empty: the build itself). 400 for a malformed archive
  // or a refused name (see ParseArchivePath; too deep; a path that is both
  // a file and a directory), 403 for the seal's names at the build's root
  // (kManifestName), 507 when the disk is full; nothing stays staged then.
  // A later entry of a name replaces an earlier one, as tar extracts.
  static Result<StagedTree> Stage(const std::string& artifacts_dir, const std::string& scope,
                                  const std::vector<std::string>& target, TarReader& archive);

  // Merges the staged tree into the build (see above). Call once, holding
  // the build's lock, after checking it is not frozen and its token is live.
  Status Commit();

  // A staging directory's name: "." + build + this + 16 hex digits.
  static constexpr const char* kStagingInfix = ".upload-";
  // Removes the staging directories that a crash left beside the builds of
  // `builder` ("" at scope_depth 1: the artifacts root) and that nothing
  // changed for `max_age` seconds before `now`; `removed` gets their paths.
  // (A live one changes as its files are made; one file of the archive can
  // take long to write, so `max_age` is generous: `prune` uses an hour.)
  static Status RemoveStale(const std::string& artifacts_dir, const std::string& builder, int64_t now,
                            int64_t max_age, std::vector<std::string>* removed);

  const UploadCount& count() const { return count_; }

  StagedTree(StagedTree&& other) noexcept;
  StagedTree& operator=(StagedTree&&) = delete;
  StagedTree(const StagedTree&) = delete;
  StagedTree& operator=(const StagedTree&) = delete;
  ~StagedTree();

 private:
  StagedTree() = default;
  std::string artifacts_dir_;
  std::string scope_;
  Fd builder_;                // the build's builder directory
  std::string staging_name_;  // in builder_; empty once removed
  Fd staging_;                // laid out as the build
  UploadCount count_;
};

}  // namespace artifact
