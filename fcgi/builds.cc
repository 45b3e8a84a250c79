#include "builds.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <tuple>

#include "posix_file.h"
#include "split.h"

namespace artifact {
namespace {

// nginx's workers (the group) write into build directories. The setgid bit
// that keeps the group comes from the artifacts root (tmpfiles: 2775), never
// from this mode: see MakeDirs.
constexpr mode_t kArtifactDirMode = 0775;

std::string Parent(const std::string& path) { return path.substr(0, path.rfind('/')); }

std::vector<std::string> Subdirectories(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    struct stat st{};
    if (::lstat((dir + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) out.push_back(name);
  }
  ::closedir(d);
  return out;
}

int64_t MtimeOf(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_mtim.tv_sec) : 0;
}

bool Exists(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string FirstLine(std::string text) {
  auto nl = text.find('\n');
  if (nl != std::string::npos) text.resize(nl);
  return text;
}

}  // namespace

bool operator<(const BuildKey& a, const BuildKey& b) {
  // Lexicographic on (stamp, numbers before other names, number, name): a
  // strict weak order, total on distinct names.
  const auto na = ParseDigits(a.name), nb = ParseDigits(b.name);
  const int ra = na ? 0 : 1, rb = nb ? 0 : 1;
  const int64_t va = na.value_or(0), vb = nb.value_or(0);
  return std::tie(a.created_ns, ra, va, a.name) < std::tie(b.created_ns, rb, vb, b.name);
}

Builds::Builds(std::string artifacts_dir, const Clock& clock, Disk& disk)
    : artifacts_dir_(std::move(artifacts_dir)), clock_(clock), disk_(disk) {}

Result<bool> Builds::IsPublished(const std::string& scope) const {
  const std::string dir = PathOf(scope);
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return false;
    return Explained(ErrnoError("opendir", dir, errno), "cannot read the build directory in the artifacts volume");
  }
  bool found = false;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') {  // the app's own hidden files are not a publication
      found = true;
      break;
    }
  }
  ::closedir(d);
  return found;
}

Status Builds::Open(const std::string& scope) {
  if (auto st = MakeDirs(artifacts_dir_, scope, kArtifactDirMode); !st) {
    return Explained(st.error(), "cannot create the build directory in the artifacts volume");
  }
  // O_EXCL: of two issuers of a new build one stamps it, and a reopened build
  // keeps its first stamp. The stamp is not fsynced: one lost in a crash
  // only makes the build order as an unstamped (old) one.
  const std::string path = PathOf(scope) + "/" + kCreatedFile;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    if (errno == EEXIST) return Ok{};
    return ErrnoError("create", path, errno);
  }
  const std::string text = std::to_string(clock_.NowNanos()) + "\n";
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) {
    ::unlink(path.c_str());
    return ErrnoError("write", path, n < 0 ? err : ENOSPC);
  }
  return Ok{};
}

Status Builds::CheckWritable() const {
  // A build directory, made as Open makes one, so a service that cannot
  // create builds (a read-only volume, a seccomp filter refusing the mode)
  // is not healthy. Hidden, so never served; per process, so concurrent
  // checks do not meet.
  const std::string probe = ".healthz-" + std::to_string(::getpid());
  if (auto st = MakeDirs(artifacts_dir_, probe, kArtifactDirMode); !st) {
    return Explained(st.error(), "cannot create a build directory in the artifacts volume");
  }
  if (::rmdir((artifacts_dir_ + "/" + probe).c_str()) != 0 && errno != ENOENT) {
    return Explained(ErrnoError("rmdir", artifacts_dir_ + "/" + probe, errno),
                     "cannot remove a directory from the artifacts volume");
  }
  return Ok{};
}

BuildKey Builds::KeyOf(const std::string& scope) const {
  BuildKey key;
  key.name = scope.substr(scope.rfind('/') + 1);
  auto text = disk_.Read(PathOf(scope) + "/" + kCreatedFile, 64);
  if (text) {
    if (auto ns = ParseDigits(FirstLine(text.value()))) key.created_ns = *ns;
  }
  return key;
}

Status Builds::UpdateLatest(const std::string& scope) {
  auto slash = scope.rfind('/');
  if (slash == std::string::npos) return Ok{};  // scope_depth 1: no builder level
  const std::string builder = scope.substr(0, slash);
  const std::string builder_dir = PathOf(builder);
  const std::string build = scope.substr(slash + 1);
  // Read, compare and replace under the builder's lock: a seal racing this
  // one waits, then compares against what this one wrote.
  auto lock = disk_.Lock(builder_dir + "/" + kLatestFile + ".lock", /*wait=*/true);
  if (!lock) return lock.error();
  auto current = ResolveLatest(builder);
  if (current && !(KeyOf(builder + "/" + current.value()) < KeyOf(scope))) return Ok{};
  if (!current && current.error().code != ErrorCode::kNotFound) return current.error();
  return ReplaceFile(disk_, builder_dir, kLatestFile, build + "\n", 0644);
}

Result<std::string> Builds::ResolveLatest(const std::string& builder) const {
  auto data = disk_.Read(PathOf(builder) + "/" + kLatestFile, 256);
  if (!data) {
    if (data.error().code == ErrorCode::kNotFound) return Error{ErrorCode::kNotFound, "no sealed build yet"};
    return data.error();
  }
  const std::string name = FirstLine(data.value());
  // Never trust the file blindly: it must name a real build directory.
  struct stat st{};
  if (name.empty() || name.find('/') != std::string::npos || name[0] == '.' ||
      ::lstat(PathOf(builder + "/" + name).c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Error{ErrorCode::kNotFound, "no sealed build yet"};
  }
  return name;
}

std::vector<std::string> Builds::Builders(int depth) const {
  std::vector<std::string> level = {""};
  for (int d = 1; d < depth; ++d) {
    std::vector<std::string> next;
    for (const auto& rel : level) {
      for (const auto& name : Subdirectories(rel.empty() ? artifacts_dir_ : PathOf(rel))) {
        next.push_back(rel.empty() ? name : rel + "/" + name);
      }
    }
    level = std::move(next);
  }
  if (depth < 2) return {};
  return level;
}

std::vector<BuildEntry> Builds::List(const std::string& builder,
                                     const std::function<bool(const std::string& scope)>& has_token) const {
  std::vector<BuildEntry> builds;
  for (const auto& name : Subdirectories(PathOf(builder))) {
    const std::string scope = builder + "/" + name;
    const std::string dir = PathOf(scope);
    BuildEntry b;
    b.name = name;
    b.key = KeyOf(scope);
    b.time = std::max(MtimeOf(dir), MtimeOf(dir + "/" + kManifestName));
    b.protect = Exists(dir + "/KEEP") || has_token(scope);
    builds.push_back(b);
  }
  return builds;
}

Status Builds::Remove(const std::string& scope) {
  std::error_code ec;
  // remove_all deletes symlinks themselves, never what they point to.
  std::filesystem::remove_all(PathOf(scope), ec);
  if (ec) return Error{ErrorCode::kUnavailable, "removing " + scope + ": " + ec.message()};
  return FsyncDir(Parent(PathOf(scope)));
}

}  // namespace artifact
