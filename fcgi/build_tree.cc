#include "build_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <cerrno>
#include <map>
#include <set>

#include "seal.h"

#include "posix_file.h"
#include "scope.h"
#include "split.h"

namespace artifact {
namespace {

constexpr size_t kMaxEntryLength = 255;

bool IsEntryStart(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '+';
}

// The errors of a walk step: a link or a file where a directory should be is
// a conflict with the tree, a missing one is not found, the rest is storage.
Error StepError(const std::string& what, const std::string& path, int err) {
  if (err == ELOOP || err == ENOTDIR || err == EMLINK) {
    return Error{ErrorCode::kConflict, path + " is not a real directory (a file or a symlink)"};
  }
  if (err == ENOENT) return Error{ErrorCode::kNotFound, path + " does not exist"};
  return ErrnoError(what, path, err);
}

// Opens the directory `name` in `dir` without following a symlink.
Result<Fd> OpenDirAt(int dir, const std::string& name, const std::string& path) {
  int fd = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return StepError("open", path, errno);
  return Fd(fd);
}

// The build directory, every step from the artifacts root without a symlink
// (the root itself is the administrator's and may be a mount point or link).
Result<Fd> OpenBuild(const std::string& artifacts_dir, const std::string& scope, std::string* path) {
  int root = ::open(artifacts_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return ErrnoError("open", artifacts_dir, errno);
  Fd fd(root);
  // Paths in messages are relative to the artifacts root: a 4xx answer says
  // which of the client's directories is wrong, not where the volume is.
  path->clear();
  for (const auto& seg : scope.empty() ? std::vector<std::string>() : SplitFields(scope, '/')) {
    *path += (path->empty() ? "" : "/") + seg;
    auto next = OpenDirAt(fd.get(), seg, *path);
    if (!next) {
      // Without its build directory there is no build to write into.
      if (next.error().code == ErrorCode::kConflict) {
        return Error{ErrorCode::kNotFound, *path + " is not a build directory"};
      }
      return next.error();
    }
    fd = std::move(next.value());
  }
  return fd;
}

const Error kRevoked{ErrorCode::kConflict, "the build's token was revoked meanwhile: the build is kept as it is"};

// Empties the directory open as `dir`: files and symlinks are unlinked,
// directories (opened without following a link) emptied and removed.
Status RemoveContents(int dir, const std::string& path, const StillLive& still_live) {
  auto entries = ListDirAt(dir, path);
  if (!entries) return entries.error();
  std::vector<std::string> names;
  for (const auto& e : entries.value()) names.push_back(e.name);
  for (const auto& name : names) {
    const std::string child = path + "/" + name;
    struct stat st{};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return ErrnoError("stat", child, errno);
    if (S_ISDIR(st.st_mode)) {
      // Swapped for a link since the fstatat: the open fails, nothing is followed.
      auto sub = OpenDirAt(dir, name, child);
      if (!sub) return sub.error();
      if (auto st2 = RemoveContents(sub.value().get(), child, still_live); !st2) return st2;
      if (!still_live()) return kRevoked;
      if (::unlinkat(dir, name.c_str(), AT_REMOVEDIR) != 0) return ErrnoError("rmdir", child, errno);
    } else {
      if (!still_live()) return kRevoked;
      if (::unlinkat(dir, name.c_str(), 0) != 0) return ErrnoError("unlink", child, errno);
    }
  }
  return Ok{};
}

}  // namespace

bool IsValidEntry(const std::string& name) {
  if (name.empty() || name.size() > kMaxEntryLength || !IsEntryStart(name[0])) return false;
  for (char c : name) {
    if (!IsEntryStart(c) && c != '.' && c != '~' && c != '-') return false;
  }
  return true;
}

Result<BuildPath> ParseBuildPath(const std::string& uri, int depth, bool build_root) {
  if (uri.empty() || uri[0] != '/') return Error{ErrorCode::kBadRequest, "not an absolute path"};
  std::string rest = uri.substr(1);
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  const std::vector<std::string> parts = SplitFields(rest, '/');
  if (parts.size() < static_cast<size_t>(depth) || (parts.size() == static_cast<size_t>(depth) && !build_root)) {
    return Error{ErrorCode::kBadRequest, "not below a build directory"};
  }
  std::string scope_text;
  for (size_t i = 0; i < static_cast<size_t>(depth); ++i) scope_text += (i == 0 ? "" : "/") + parts[i];
  auto scope = Scope::Parse(scope_text, depth);
  if (!scope) return scope.error();
  BuildPath out;
  out.scope = scope->str();
  if (parts.size() - static_cast<size_t>(depth) > kMaxEntriesBelowBuild) {
    return Error{ErrorCode::kBadRequest,
                 "at most " + std::to_string(kMaxEntriesBelowBuild) + " names deep below a build directory"};
  }
  for (size_t i = static_cast<size_t>(depth); i < parts.size(); ++i) {
    if (!IsValidEntry(parts[i])) {
      return Error{ErrorCode::kBadRequest, std::string("names below a build match ") + kEntryRegex};
    }
    out.entries.push_back(parts[i]);
  }
  return out;
}

namespace {

// mkdir `name` in the open directory `dir` (`path`) with the permission bits
// `mode`, widened by fchmod only when the umask narrowed them (see
// kBuildDirMode), keeping the setgid bit the kernel inherited; opens it
// without following a link. `made` says whether it was made now. `sync`:
// the parent is fsynced after a mkdir.
Result<Fd> MakeDirAt(int dir, const std::string& path, const std::string& name, mode_t mode, bool* made,
                     bool sync = true) {
  const std::string child = path + "/" + name;
  *made = ::mkdirat(dir, name.c_str(), mode) == 0;
  if (!*made && errno != EEXIST) return StepError("mkdir", child, errno);
  auto next = OpenDirAt(dir, name, child);
  if (!next) return next.error().code == ErrorCode::kNotFound ? StepError("open", child, ENOTDIR) : next.error();
  if (*made) {
    // Through the opened directory, never by name: a link swapped in
    // meanwhile is not followed.
    struct stat st{};
    if (::fstat(next.value().get(), &st) != 0) return ErrnoError("stat", child, errno);
    if ((st.st_mode & 0777) != (mode & 0777) &&
        ::fchmod(next.value().get(), (st.st_mode & S_ISGID) | (mode & 0777)) != 0) {
      return ErrnoError("chmod", child, errno);
    }
    if (sync && ::fsync(dir) != 0) return ErrnoError("fsync", path, errno);
  }
  return next;
}

}  // namespace

Status MakeBuildDirs(const std::string& artifacts_dir, const std::string& scope,
                     const std::vector<std::string>& dirs, mode_t mode, const StillLive& still_live) {
  std::string path;
  auto fd = OpenBuild(artifacts_dir, scope, &path);
  if (!fd) return fd.error();
  Fd dir = std::move(fd.value());
  for (const auto& name : dirs) {
    if (!IsValidEntry(name)) return Error{ErrorCode::kBadRequest, "invalid name"};
    if (!still_live()) return kRevoked;
    bool made = false;
    auto next = MakeDirAt(dir.get(), path, name, mode, &made);
    if (!next) return next.error();
    dir = std::move(next.value());
    path += "/" + name;
  }
  return Ok{};
}

Status MakeCollection(const std::string& artifacts_dir, const std::string& scope,
                      const std::vector<std::string>& entries, mode_t mode, const StillLive& still_live) {
  if (entries.empty()) return Error{ErrorCode::kMethodNotAllowed, "the build directory exists"};
  std::string path;
  auto fd = OpenBuild(artifacts_dir, scope, &path);
  if (!fd) return fd.error();
  Fd dir = std::move(fd.value());
  for (size_t i = 0; i + 1 < entries.size(); ++i) {
    if (!IsValidEntry(entries[i])) return Error{ErrorCode::kBadRequest, "invalid name"};
    path += "/" + entries[i];
    auto next = OpenDirAt(dir.get(), entries[i], path);
    if (!next) {
      return Error{ErrorCode::kConflict, path + " does not exist or is not a real directory: MKCOL it first"};
    }
    dir = std::move(next.value());
  }
  const std::string& name = entries.back();
  if (!IsValidEntry(name)) return Error{ErrorCode::kBadRequest, "invalid name"};
  if (!still_live()) return kRevoked;
  struct stat st{};
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return Error{ErrorCode::kMethodNotAllowed, path + "/" + name + " exists"};
  }
  bool made = false;
  auto next = MakeDirAt(dir.get(), path, name, mode, &made);
  if (!next) return next.error();
  if (!made) return Error{ErrorCode::kMethodNotAllowed, path + "/" + name + " exists"};
  return Ok{};
}

Status RemoveBuildDir(const std::string& artifacts_dir, const std::string& scope,
                      const std::vector<std::string>& dir_entries, const StillLive& still_live) {
  if (dir_entries.empty()) return Error{ErrorCode::kForbidden, "the build directory itself is never deleted"};
  std::string path;
  auto fd = OpenBuild(artifacts_dir, scope, &path);
  if (!fd) return fd.error();
  Fd parent = std::move(fd.value());
  for (size_t i = 0; i + 1 < dir_entries.size(); ++i) {
    if (!IsValidEntry(dir_entries[i])) return Error{ErrorCode::kBadRequest, "invalid name"};
    path += "/" + dir_entries[i];
    auto next = OpenDirAt(parent.get(), dir_entries[i], path);
    if (!next) return next.error();
    parent = std::move(next.value());
  }
  const std::string& name = dir_entries.back();
  if (!IsValidEntry(name)) return Error{ErrorCode::kBadRequest, "invalid name"};
  path += "/" + name;
  auto target = OpenDirAt(parent.get(), name, path);
  if (!target) return target.error();
  if (auto st = RemoveContents(target.value().get(), path, still_live); !st) return st;
  if (!still_live()) return kRevoked;
  if (::unlinkat(parent.get(), name.c_str(), AT_REMOVEDIR) != 0) return ErrnoError("rmdir", path, errno);
  if (::fsync(parent.get()) != 0) return ErrnoError("fsync", path, errno);
  return Ok{};
}

Result<std::vector<std::string>> ParseArchivePath(const std::string& path) {
  std::string rest = path;
  while (rest.rfind("./", 0) == 0) rest.erase(0, 2);
  if (rest == ".") rest.clear();
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  std::vector<std::string> entries;
  if (rest.empty()) return entries;
  for (const auto& name : SplitFields(rest, '/')) {
    if (!IsValidEntry(name)) {
      return Error{ErrorCode::kBadRequest,
                   "name not allowed in the archive: " + path + " (names below a build match " + kEntryRegex + ")"};
    }
    entries.push_back(name);
  }
  return entries;
}

namespace {

std::string Joined(const std::vector<std::string>& entries) {
  std::string out;
  for (const auto& e : entries) out += (out.empty() ? "" : "/") + e;
  return out;
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) return "";
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

// The open directories from a root down to one directory below it, reused
// from one path to the next: one descriptor per level at most, whatever the
// number of directories visited.
class DirChain {
 public:
  DirChain(Fd root, std::string root_path) : path_(std::move(root_path)) { fds_.push_back(std::move(root)); }

  // The directory `path` ('/'-joined names below the root, "" for the root),
  // each step opened without following a link, made when missing (mode
  // kBuildDirMode, no fsync).
  Result<int> Make(const std::string& path) {
    const std::vector<std::string> names = path.empty() ? std::vector<std::string>() : SplitFields(path, '/');
    size_t same = 0;
    while (same < names.size() && same < names_.size() && names[same] == names_[same]) ++same;
    names_.resize(same);
    fds_.resize(same + 1);
    for (size_t i = same; i < names.size(); ++i) {
      bool made = false;
      auto next = MakeDirAt(fds_.back().get(), Shown(), names[i], kBuildDirMode, &made, /*sync=*/false);
      if (!next) return next.error();
      made_ += made ? 1 : 0;
      fds_.push_back(std::move(next.value()));
      names_.push_back(names[i]);
    }
    return fds_.back().get();
  }
  std::string Shown() const {
    std::string out = path_;
    for (const auto& n : names_) out += "/" + n;
    return out;
  }
  int64_t made() const { return made_; }

 private:
  std::string path_;
  std::vector<std::string> names_;
  std::vector<Fd> fds_;  // fds_[0]: the root
  int64_t made_ = 0;
};

std::string Below(const std::string& dir, const std::string& name) {
  if (name.empty()) return dir;
  return dir.empty() ? name : dir + "/" + name;
}

// Writes the current entry of `archive` into the file `name` of `dir`,
// replacing one an earlier entry staged; `fresh`: there was none.
Status StageFile(int dir, const std::string& name, TarReader& archive, int64_t* bytes, bool* fresh) {
  *fresh = true;
  int fd = ::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    *fresh = false;
    fd = ::openat(dir, name.c_str(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) {
    if (errno == EISDIR) return Error{ErrorCode::kBadRequest, "the archive has a name both as a file and as a directory"};
    return ErrnoError("create", "a staged upload", errno);
  }
  Fd file(fd);
  // The mode nginx gives an upload (dav_access user:rw group:rw all:r),
  // whatever the umask.
  if (::fchmod(fd, 0664) != 0) return ErrnoError("chmod", "a staged upload", errno);
  char buf[65536];
  while (true) {
    auto n = archive.ReadData(buf, sizeof buf);
    if (!n) return n.error();
    if (n.value() == 0) return Ok{};
    for (size_t done = 0; done < n.value();) {
      const ssize_t w = ::write(fd, buf + done, n.value() - done);
      if (w < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("write", "a staged upload", errno);
      }
      done += static_cast<size_t>(w);
    }
    *bytes += static_cast<int64_t>(n.value());
  }
}

// rename(2) of `name` from `from` to `to` when `to` has no such name: never
// over something that appeared meanwhile (a PUT takes no lock).
int RenameNew(int from, int to, const std::string& name) {
  if (::renameat2(from, name.c_str(), to, name.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
  // A filesystem without RENAME_NOREPLACE: checked, then renamed.
  struct stat st{};
  if (::fstatat(to, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return EEXIST;
  return ::renameat(from, name.c_str(), to, name.c_str()) == 0 ? 0 : errno;
}

// Merges the staged directory `from` into the build's directory `to`
// (`shown` names it in messages), or with `check` only says whether it
// could: 409 for a file or symlink where the staged tree has a directory,
// or a directory where it has a file.
Status Merge(int from, int to, const std::string& shown, bool check) {
  auto entries = ListDirAt(from, "a staged upload");
  if (!entries) return entries.error();
  for (const auto& e : entries.value()) {
    const std::string path = shown + "/" + e.name;
    struct stat staged{};
    if (::fstatat(from, e.name.c_str(), &staged, AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoError("stat", "a staged upload", errno);
    }
    struct stat there{};
    const bool exists = ::fstatat(to, e.name.c_str(), &there, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) return ErrnoError("stat", path, errno);
    const bool staged_dir = S_ISDIR(staged.st_mode);
    if (exists && staged_dir != S_ISDIR(there.st_mode)) {
      return Error{ErrorCode::kConflict, staged_dir ? path + " is not a real directory (a file or a symlink)"
                                                    : path + " is a directory: a file cannot replace it"};
    }
    if (exists && staged_dir) {
      auto sub_from = OpenDirAt(from, e.name, "a staged upload");
      if (!sub_from) return sub_from.error();
      auto sub_to = OpenDirAt(to, e.name, path);
      if (!sub_to) return sub_to.error();
      if (auto st = Merge(sub_from.value().get(), sub_to.value().get(), path, check); !st) return st;
      continue;
    }
    if (check) continue;
    // A new name moves in whole (a directory with all below it); a file
    // replaces the build's file (or symlink: replaced, never followed).
    const int err = exists ? (::renameat(from, e.name.c_str(), to, e.name.c_str()) == 0 ? 0 : errno)
                           : RenameNew(from, to, e.name);
    if (err == EEXIST || err == ENOTEMPTY || err == EISDIR || err == ENOTDIR) {
      return Error{ErrorCode::kConflict, path + " changed while the upload was moved in"};
    }
    if (err != 0) return ErrnoError("rename", path, err);
  }
  return Ok{};
}

}  // namespace

StagedTree::StagedTree(StagedTree&& other) noexcept
    : artifacts_dir_(std::move(other.artifacts_dir_)),
      scope_(std::move(other.scope_)),
      builder_(std::move(other.builder_)),
      staging_name_(std::move(other.staging_name_)),
      staging_(std::move(other.staging_)),
      count_(other.count_) {
  other.staging_name_.clear();
}

StagedTree::~StagedTree() {
  if (staging_name_.empty() || builder_.get() < 0) return;
  if (staging_.get() >= 0) RemoveContents(staging_.get(), staging_name_, [] { return true; });
  ::unlinkat(builder_.get(), staging_name_.c_str(), AT_REMOVEDIR);
}

Result<StagedTree> StagedTree::Stage(const std::string& artifacts_dir, const std::string& scope,
                                     const std::vector<std::string>& target, TarReader& archive) {
  // The builder: the scope without its last segment ("" at scope_depth 1).
  const auto slash = scope.rfind('/');
  const std::string build = slash == std::string::npos ? scope : scope.substr(slash + 1);
  const std::string builder_path = slash == std::string::npos ? "" : scope.substr(0, slash);
  StagedTree tree;
  tree.artifacts_dir_ = artifacts_dir;
  tree.scope_ = scope;
  std::string shown;
  auto builder = OpenBuild(artifacts_dir, builder_path, &shown);
  if (!builder) return builder.error();
  tree.builder_ = std::move(builder.value());
  const std::string random = RandomHex(8);
  if (random.empty()) return Error{ErrorCode::kInternal, "no random bytes for a staging directory"};
  const std::string name = "." + build + kStagingInfix + random;
  if (::mkdirat(tree.builder_.get(), name.c_str(), 0700) != 0) return ErrnoError("mkdir", "the staging directory", errno);
  tree.staging_name_ = name;
  auto staging = OpenDirAt(tree.builder_.get(), name, "the staging directory");
  if (!staging) return staging.error();
  tree.staging_ = std::move(staging.value());

  const Error too_many{ErrorCode::kBadRequest, "more than " + std::to_string(kMaxEntries) +
                                                   " files and directories in one archive"};
  std::string shown_staging = "the staged upload";
  Fd root(::dup(tree.staging_.get()));
  if (root.get() < 0) return ErrnoError("dup", "the staging directory", errno);
  DirChain chain(std::move(root), shown_staging);
  const std::string target_path = Joined(target);
  if (auto made = chain.Make(target_path); !made) return made.error();
  const Error both{ErrorCode::kBadRequest, "the archive has a name both as a file and as a directory"};
  while (true) {
    auto next = archive.Next();
    if (!next) return next.error();
    if (!next.value()) break;
    const TarEntry& entry = *next.value();
    auto below = ParseArchivePath(entry.path);
    if (!below) return below.error();
    if (target.size() + below->size() > kMaxEntriesBelowBuild) {
      return Error{ErrorCode::kBadRequest, entry.path + ": at most " + std::to_string(kMaxEntriesBelowBuild) +
                                               " names deep below a build directory"};
    }
    const std::string first = target.empty() ? (below->empty() ? "" : below->front()) : target.front();
    if (first == kManifestName) {
      return Error{ErrorCode::kForbidden, std::string(kManifestName) +
                                              " at the build's root is written by the server when the build is "
                                              "sealed: a token cannot create or replace it"};
    }
    const std::string path = Below(target_path, Joined(below.value()));
    if (entry.directory) {
      if (!below->empty()) ++tree.count_.directories;
      auto dir = chain.Make(path);
      if (!dir) return dir.error().code == ErrorCode::kConflict ? both : dir.error();
      if (tree.count_.files + chain.made() > kMaxEntries) return too_many;
      continue;
    }
    if (below->empty()) return Error{ErrorCode::kBadRequest, "a file in the archive has no name"};
    const auto last = path.rfind('/');
    auto dir = chain.Make(last == std::string::npos ? "" : path.substr(0, last));
    if (!dir) return dir.error().code == ErrorCode::kConflict ? both : dir.error();
    bool fresh = true;
    const std::string file = last == std::string::npos ? path : path.substr(last + 1);
    if (auto st = StageFile(dir.value(), file, archive, &tree.count_.bytes, &fresh); !st) return st.error();
    if (fresh) ++tree.count_.files;
    if (tree.count_.files + chain.made() > kMaxEntries) return too_many;
  }
  return tree;
}

Status StagedTree::RemoveStale(const std::string& artifacts_dir, const std::string& builder, int64_t now,
                               int64_t max_age, std::vector<std::string>* removed) {
  std::string shown;
  auto dir = OpenBuild(artifacts_dir, builder, &shown);
  if (!dir) return dir.error();
  auto entries = ListDirAt(dir.value().get(), builder);
  if (!entries) return entries.error();
  for (const auto& e : entries.value()) {
    if (e.name.size() < 2 || e.name[0] != '.' || e.name.find(kStagingInfix) == std::string::npos) continue;
    struct stat st{};
    if (::fstatat(dir.value().get(), e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_mtime > now - max_age) {
      continue;
    }
    const std::string path = builder.empty() ? e.name : builder + "/" + e.name;
    auto staging = OpenDirAt(dir.value().get(), e.name, path);
    if (!staging) return staging.error();
    if (auto st2 = RemoveContents(staging.value().get(), path, [] { return true; }); !st2) return st2;
    if (::unlinkat(dir.value().get(), e.name.c_str(), AT_REMOVEDIR) != 0) return ErrnoError("rmdir", path, errno);
    removed->push_back(path);
  }
  return Ok{};
}

Status StagedTree::Commit() {
  std::string path;
  auto build = OpenBuild(artifacts_dir_, scope_, &path);
  if (!build) return build.error();
  // Checked first, then changed: a refusal changes nothing.
  if (auto st = Merge(staging_.get(), build.value().get(), path, /*check=*/true); !st) return st;
  return Merge(staging_.get(), build.value().get(), path, /*check=*/false);
}

}  // namespace artifact
