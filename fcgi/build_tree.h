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

#include "result.h"

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

// Parses "/<scope>/<entry>/.../<entry>[/]" for `depth`; at least one entry,
// at most kMaxEntriesBelowBuild.
// 400 for anything else (the scope grammar, an invalid or hidden entry, "..").
Result<BuildPath> ParseBuildPath(const std::string& uri, int depth);

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

}  // namespace artifact
