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

#include <Poco/JSON/Array.h>
#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeParser.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include "api.h"
#include "posix_file.h"
#include "split.h"

namespace artifact {
namespace {

// nginx's workers (the group) write into build directories. The setgid bit
// that keeps the group comes from the artifacts root (tmpfiles: 2775), never
// from this mode: see MakeDirs.
constexpr mode_t kArtifactDirMode = 0775;
// A frozen directory: nobody without CAP_DAC_OVERRIDE may add, replace or
// remove an entry, not even its owner (nginx's workers may run as the app's
// user). The owner may still chmod it back: Thaw and the seal's own files.
constexpr mode_t kFrozenDirMode = 0555;

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

// Sets every directory below (and including) the open directory `fd` to
// `mode`, each before it is listed, never following a symlink; counts the
// regular files and their bytes into `count` when given.
Status ChmodTree(int fd, const std::string& path, mode_t mode, TreeCount* count) {
  if (::fchmod(fd, mode) != 0) return ErrnoError("chmod", path, errno);
  auto entries = ListDirAt(fd, path);
  if (!entries) return entries.error();
  std::vector<std::string> dirs;
  for (const auto& [name, listed_type] : entries.value()) {
    unsigned char type = listed_type;
    struct stat st{};
    if (type == DT_UNKNOWN || (type == DT_REG && count != nullptr)) {
      if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
      type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
    }
    if (type == DT_DIR) {
      dirs.push_back(name);
    } else if (type == DT_REG && count != nullptr && name[0] != '.') {
      ++count->files;
      count->bytes += static_cast<int64_t>(st.st_size);
    }
  }
  for (const auto& name : dirs) {
    Fd child(::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (child.get() < 0) {
      if (errno == ENOENT) continue;
      return ErrnoError("open", path + "/" + name, errno);
    }
    if (auto st = ChmodTree(child.get(), path + "/" + name, mode, count); !st) return st;
  }
  return Ok{};
}

// ChmodTree from the build directory `path`, which must be a real directory.
Status ChmodBuild(const std::string& path, mode_t mode, TreeCount* count) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError("open", path, errno);
  return ChmodTree(fd.get(), path, mode, count);
}

// An RFC 3339 time as the app writes it (Rfc3339), as unix time.
std::optional<int64_t> ParseTime(const std::string& text) {
  if (text.empty()) return std::nullopt;
  try {
    int tzd = 0;
    auto at = Poco::DateTimeParser::parse(Poco::DateTimeFormat::ISO8601_FORMAT, text, tzd);
    return static_cast<int64_t>(at.timestamp().epochTime()) - tzd;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// Whether a record says its build may be latest.
bool RecordEligible(const std::string& record_json) {
  auto record = BuildRecord::FromJson(record_json);
  return record && record->LatestEligible();
}

// The seal time a record states (unix time), if it is readable.
std::optional<int64_t> SealedAt(const std::string& record_json) {
  auto record = BuildRecord::FromJson(record_json);
  if (!record || record->sealed_at == 0) return std::nullopt;
  return record->sealed_at;
}

std::string FirstLine(std::string text) {
  auto nl = text.find('\n');
  if (nl != std::string::npos) text.resize(nl);
  return text;
}

}  // namespace

const char* BuildResultName(BuildResult r) {
  switch (r) {
    case BuildResult::kSuccess:
      return "success";
    case BuildResult::kFailure:
      return "failure";
    case BuildResult::kExpired:
      return "expired";
  }
  return "failure";
}

std::optional<BuildResult> ParseBuildResult(const std::string& text) {
  for (auto r : {BuildResult::kSuccess, BuildResult::kFailure, BuildResult::kExpired}) {
    if (text == BuildResultName(r)) return r;
  }
  return std::nullopt;
}

bool BuildRecord::LatestEligible() const {
  return state == "sealed" && result == BuildResult::kSuccess && report.mismatches.empty() && report.files > 0;
}

std::string BuildRecord::ToJson() const {
  Poco::JSON::Object obj(Poco::JSON_PRESERVE_KEY_ORDER);
  obj.set("scope", scope);
  obj.set("state", state);
  obj.set("result", std::string(BuildResultName(result)));
  obj.set("files", static_cast<Poco::Int64>(report.files));
  obj.set("bytes", static_cast<Poco::Int64>(report.bytes));
  Poco::JSON::Array mismatches;
  for (const auto& m : report.mismatches) mismatches.add(m);
  obj.set("mismatches", mismatches);
  obj.set("latest_eligible", LatestEligible());
  obj.set("issued_by", issued_by);
  obj.set("username", username);
  obj.set("created_at", created > 0 ? Rfc3339(created) : std::string());
  obj.set("sealed_at", Rfc3339(sealed_at));
  return artifact::ToJson(obj);
}

std::optional<BuildRecord> BuildRecord::FromJson(const std::string& json) {
  try {
    Poco::JSON::Parser parser;
    auto obj = parser.parse(json).extract<Poco::JSON::Object::Ptr>();
    BuildRecord r;
    r.scope = obj->optValue<std::string>("scope", "");
    r.state = obj->optValue<std::string>("state", "");
    auto result = ParseBuildResult(obj->optValue<std::string>("result", ""));
    if (r.state.empty() || !result) return std::nullopt;
    r.result = *result;
    r.issued_by = obj->optValue<std::string>("issued_by", "");
    r.username = obj->optValue<std::string>("username", "");
    r.report.files = obj->optValue<Poco::Int64>("files", 0);
    r.report.bytes = obj->optValue<Poco::Int64>("bytes", 0);
    if (auto list = obj->getArray("mismatches")) {
      for (size_t i = 0; i < list->size(); ++i) r.report.mismatches.push_back(list->getElement<std::string>(static_cast<unsigned>(i)));
    }
    r.created = ParseTime(obj->optValue<std::string>("created_at", "")).value_or(0);
    r.sealed_at = ParseTime(obj->optValue<std::string>("sealed_at", "")).value_or(0);
    return r;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

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

Status Builds::Open(const std::string& scope, bool reopen, const std::string& master) {
  // The builder's directory first: the build's lock file lives there.
  const std::string builder = scope.find('/') == std::string::npos ? "" : scope.substr(0, scope.rfind('/'));
  if (!builder.empty()) {
    if (auto st = MakeDirs(artifacts_dir_, builder, kArtifactDirMode); !st) {
      return Explained(st.error(), "cannot create the build directory in the artifacts volume");
    }
  }
  // Under the build's lock: a seal writing into the build (its root renamed
  // away for a moment) is done, so "published" and "sealed" are what they
  // are, not what a half-finished seal makes them look like.
  auto lock = Lock(scope);
  if (!lock) return Explained(lock.error(), "cannot lock the build in the artifacts volume");
  if (auto st = MakeDirs(artifacts_dir_, scope, kArtifactDirMode); !st) {
    return Explained(st.error(), "cannot create the build directory in the artifacts volume");
  }
  if (!reopen) {
    auto published = IsPublished(scope);
    if (!published) return published.error();
    if (published.value()) {
      return Error{ErrorCode::kConflict, "scope " + scope + " is published (its directory holds files)"};
    }
  }
  // A sealed build is opened again only when the caller allowed it (a
  // reopen, or a build that published nothing): it becomes writable again.
  auto frozen = IsFrozen(scope);
  if (!frozen) return frozen.error();
  if (frozen.value()) {
    if (auto st = Thaw(scope); !st) return Explained(st.error(), "cannot reopen the sealed build");
  }
  // O_EXCL: of two issuers of a new build one stamps it, and a reopened build
  // keeps its first stamp. The stamp is not fsynced: one lost in a crash
  // only makes the build order as an unstamped (old) one. Its second line
  // names the master that opened the build (who may seal it later).
  const std::string path = PathOf(scope) + "/" + kCreatedFile;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    if (errno == EEXIST) return Ok{};
    return ErrnoError("create", path, errno);
  }
  const std::string text = std::to_string(clock_.NowNanos()) + "\n" + master + "\n";
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) {
    ::unlink(path.c_str());
    return ErrnoError("write", path, n < 0 ? err : ENOSPC);
  }
  return Ok{};
}

std::string Builds::OpenedBy(const std::string& scope) const {
  auto text = disk_.Read(PathOf(scope) + "/" + kCreatedFile, 256);
  if (!text) return {};
  const auto nl = text->find('\n');
  if (nl == std::string::npos) return {};
  return FirstLine(text->substr(nl + 1));
}

std::string Builds::Beside(const std::string& scope, const std::string& prefix, const std::string& suffix) const {
  return Parent(PathOf(scope)) + "/" + prefix + scope.substr(scope.rfind('/') + 1) + suffix;
}

std::string Builds::TicketPath(const std::string& scope) const { return Beside(scope, ".", ".frozen"); }

bool Builds::HoldsTicket(const std::string& scope, const std::string& ticket) const {
  auto text = disk_.Read(TicketPath(scope), 256);
  return text && text.value() == ticket + "\n";
}

std::string Builds::LockPath(const std::string& scope) const { return Beside(scope, ".", ".lock"); }

std::string Builds::HiddenPath(const std::string& scope) const { return Beside(scope, ".sealing-", ""); }

Result<FileLock> Builds::Lock(const std::string& scope, bool wait) const {
  auto lock = disk_.Lock(LockPath(scope), wait);
  if (!lock) return lock;
  // A seal that died while its build was renamed away (WriteIntoFrozen):
  // put the build back before anyone looks at it.
  const std::string hidden = HiddenPath(scope);
  if (Exists(hidden) && !Exists(PathOf(scope))) {
    if (::rename(hidden.c_str(), PathOf(scope).c_str()) != 0) return ErrnoError("rename", hidden, errno);
  }
  return lock;
}

Result<bool> Builds::IsFrozen(const std::string& scope) const {
  struct stat st{};
  if (::lstat(PathOf(scope).c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return ErrnoError("stat", PathOf(scope), errno);
  }
  return S_ISDIR(st.st_mode) && (st.st_mode & 0222) == 0;
}

Result<TreeCount> Builds::Freeze(const std::string& scope, const std::string& ticket) {
  TreeCount count;
  if (auto st = ChmodBuild(PathOf(scope), kFrozenDirMode, &count); !st) {
    return Explained(st.error(), "cannot make the build read-only");
  }
  const std::string ticket_path = TicketPath(scope);
  const auto slash = ticket_path.rfind('/');
  if (auto st = ReplaceFile(disk_, ticket_path.substr(0, slash), ticket_path.substr(slash + 1), ticket + "\n", 0644);
      !st) {
    return Explained(st.error(), "cannot record the build's freeze");
  }
  return count;
}

Status Builds::Thaw(const std::string& scope) {
  // The freeze's ticket goes first: a seal queued for it finds it gone.
  if (::unlink(TicketPath(scope).c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("unlink", TicketPath(scope), errno);
  }
  if (auto st = ChmodBuild(PathOf(scope), kArtifactDirMode, nullptr); !st) return st;
  const std::string record = PathOf(scope) + "/" + kRecordFile;
  if (::unlink(record.c_str()) != 0 && errno != ENOENT) return ErrnoError("unlink", record, errno);
  if (auto st = FsyncDir(PathOf(scope)); !st) return st;
  // An open build is nobody's latest.
  return ForgetLatest(scope);
}

Status Builds::WriteIntoFrozen(const std::string& scope,
                               const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string path = PathOf(scope);
  const std::string hidden = HiddenPath(scope);
  if (::rename(path.c_str(), hidden.c_str()) != 0) return ErrnoError("rename", path, errno);
  Status written = Ok{};
  if (::chmod(hidden.c_str(), 0755) != 0) {
    written = ErrnoError("chmod", hidden, errno);
  } else {
    for (const auto& [name, content] : files) {
      if (written) written = ReplaceFile(disk_, hidden, name, content, 0644);
    }
    if (::chmod(hidden.c_str(), kFrozenDirMode) != 0 && written) written = ErrnoError("chmod", hidden, errno);
  }
  if (::rename(hidden.c_str(), path.c_str()) != 0) return ErrnoError("rename", hidden, errno);
  if (!written) return written;
  return FsyncDir(Parent(path));
}

Status Builds::Seal(const std::string& scope, const std::string& ticket, BuildRecord* record) {
  record->scope = scope;
  if (!HoldsTicket(scope, ticket)) {
    return Error{ErrorCode::kConflict, "the build was reopened or sealed again after this seal froze it"};
  }
  const std::string path = PathOf(scope);
  if (auto text = disk_.Read(path + "/" + kCreatedFile, 64)) {
    if (auto ns = ParseDigits(FirstLine(text.value()))) record->created = *ns / 1000000000;
  }
  auto manifest = HashTree(path);
  record->sealed_at = clock_.Now();
  if (!manifest) {
    record->state = "failed";
    return Explained(manifest.error(), "cannot read the build's files");
  }
  record->report = manifest->report;
  record->state = "sealed";
  std::vector<std::pair<std::string, std::string>> files;
  // An empty build gets no SHA256SUMS (it would mark the scope published).
  if (!manifest->text.empty()) files.emplace_back(kManifestName, manifest->text);
  files.emplace_back(kRecordFile, record->ToJson() + "\n");
  if (auto st = WriteIntoFrozen(scope, files); !st) {
    record->state = "failed";
    return Explained(st.error(), "cannot write the build's SHA256SUMS");
  }
  ::unlink(TicketPath(scope).c_str());
  // A build sealed again (after a reopen) as not eligible stops being latest.
  if (!record->LatestEligible()) return ForgetLatest(scope);
  return Ok{};
}

Status Builds::ForgetLatest(const std::string& scope) {
  const auto slash = scope.rfind('/');
  if (slash == std::string::npos) return Ok{};
  const std::string builder = scope.substr(0, slash);
  const std::string build = scope.substr(slash + 1);
  auto current = disk_.Read(PathOf(builder) + "/" + kLatestFile, 256);
  if (!current || FirstLine(current.value()) != build) return Ok{};
  auto lock = disk_.Lock(PathOf(builder) + "/" + kLatestFile + ".lock", /*wait=*/true);
  if (!lock) return lock.error();
  current = disk_.Read(PathOf(builder) + "/" + kLatestFile, 256);
  if (!current || FirstLine(current.value()) != build) return Ok{};
  // The newest other build whose record makes it eligible, or none.
  std::optional<BuildKey> best;
  std::string best_name;
  for (const auto& name : Subdirectories(PathOf(builder))) {
    if (name == build) continue;
    auto record = disk_.Read(PathOf(builder + "/" + name) + "/" + kRecordFile, 1 << 20);
    if (!record || !RecordEligible(record.value())) continue;
    BuildKey key = KeyOf(builder + "/" + name);
    if (!best || *best < key) {
      best = key;
      best_name = name;
    }
  }
  if (!best) {
    if (disk_.Unlink(PathOf(builder) + "/" + kLatestFile) != 0 && errno != ENOENT) {
      return ErrnoError("unlink", PathOf(builder) + "/" + kLatestFile, errno);
    }
    return FsyncDir(PathOf(builder));
  }
  return ReplaceFile(disk_, PathOf(builder), kLatestFile, best_name + "\n", 0644);
}

Result<std::string> Builds::RecordJson(const std::string& scope) const {
  return disk_.Read(PathOf(scope) + "/" + kRecordFile, 1 << 20);
}

Result<std::string> Builds::ManifestText(const std::string& scope, size_t max_bytes) const {
  return disk_.Read(PathOf(scope) + "/" + kManifestName, max_bytes);
}

Result<std::vector<DirEntry>> Builds::ReadDirectory(const std::string& rel) const {
  const Error missing{ErrorCode::kNotFound, "no such directory"};
  Fd fd(::open(artifacts_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError("open", artifacts_dir_, errno);
  if (!rel.empty()) {
    for (const auto& segment : SplitFields(rel, '/')) {
      if (segment.empty() || segment[0] == '.') return missing;
      int next = ::openat(fd.get(), segment.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return missing;
        return ErrnoError("open", PathOf(rel), errno);
      }
      fd = Fd(next);
    }
  }
  auto names = ListDirAt(fd.get(), PathOf(rel));
  if (!names) return names.error();
  std::vector<DirEntry> out;
  for (auto& listed : names.value()) {
    if (listed.name[0] == '.') continue;  // hidden
    struct stat st{};
    if (::fstatat(fd.get(), listed.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) continue;
    DirEntry entry;
    entry.name = std::move(listed.name);
    entry.directory = S_ISDIR(st.st_mode);
    entry.size = entry.directory ? -1 : static_cast<int64_t>(st.st_size);
    entry.mtime = static_cast<int64_t>(st.st_mtim.tv_sec);
    entry.frozen = entry.directory && (st.st_mode & 0222) == 0;
    out.push_back(std::move(entry));
  }
  return out;
}

BuildSummary Builds::Summarize(const std::string& scope, bool frozen) const {
  BuildSummary s;
  s.name = scope.substr(scope.rfind('/') + 1);
  s.key = KeyOf(scope);
  s.frozen = frozen;
  if (auto json = RecordJson(scope)) {
    s.record = BuildRecord::FromJson(json.value());
    if (s.record) s.record_json = std::move(json.value());
  }
  if (frozen && !s.record) {
    // Asked without taking it (F_OFD_GETLK): a reader changes nothing. The
    // lock file exists only while someone holds or waits for the lock.
    Fd fd(::open(LockPath(scope).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() >= 0) {
      struct flock fl{};
      fl.l_type = F_WRLCK;
      fl.l_whence = SEEK_SET;
      s.busy = ::fcntl(fd.get(), F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    }
  }
  return s;
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
  auto latest = ResolveLatest(builder);
  for (const auto& name : Subdirectories(PathOf(builder))) {
    const std::string scope = builder + "/" + name;
    const std::string dir = PathOf(scope);
    BuildEntry b;
    b.name = name;
    b.key = KeyOf(scope);
    // Times the app recorded (the seal's, else the first issue's); an mtime
    // only for a build the app never stamped: nginx sets a file's mtime from
    // the client's Date: header, and directories' from whatever happens.
    b.time = b.key.created_ns >= 0 ? b.key.created_ns / 1000000000 : MtimeOf(dir);
    if (auto record = disk_.Read(dir + "/" + kRecordFile, 1 << 20)) {
      if (auto t = SealedAt(record.value())) b.time = *t;
    }
    b.protect = Exists(dir + "/KEEP") || has_token(scope) || (latest && latest.value() == name);
    builds.push_back(b);
  }
  return builds;
}

Status Builds::Remove(const std::string& scope) {
  // A frozen build's directories cannot lose entries: writable again first.
  if (auto frozen = IsFrozen(scope); frozen && frozen.value()) {
    if (auto st = ChmodBuild(PathOf(scope), kArtifactDirMode, nullptr); !st) return st;
  }
  std::error_code ec;
  // remove_all deletes symlinks themselves, never what they point to.
  std::filesystem::remove_all(PathOf(scope), ec);
  if (ec) {
    // Whatever is left stays read-only (fail closed).
    (void)ChmodBuild(PathOf(scope), kFrozenDirMode, nullptr);
    return Error{ErrorCode::kUnavailable, "removing " + scope + ": " + ec.message()};
  }
  return FsyncDir(Parent(PathOf(scope)));
}

}  // namespace artifact
