#include "token_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "posix_file.h"

namespace artifact {
namespace {

constexpr mode_t kFileMode = 0640;         // never world-readable
constexpr int64_t kSealStatusDays = 7;      // how long prune keeps a seal status
constexpr mode_t kTokenDirMode = 0750;

std::string Parent(const std::string& path) { return path.substr(0, path.rfind('/')); }

// Seconds since the file was last modified, or -1.
int64_t AgeOf(const std::string& path, int64_t now) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return -1;
  return now - static_cast<int64_t>(st.st_mtim.tv_sec);
}

bool StartsWith(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

}  // namespace

TokenStore::TokenStore(std::string tokens_dir, const Clock& clock, RandomSource& random, Disk& disk)
    : tokens_dir_(std::move(tokens_dir)),
      records_dir_(tokens_dir_ + "/.by-user"),
      locks_dir_(tokens_dir_ + "/.locks"),
      names_dir_(tokens_dir_ + "/.names"),
      clock_(clock),
      random_(random),
      disk_(disk) {}

// True when the password file at `path` belongs to `username`, false when
// it is gone or another token's; an error when that cannot be told (EIO,
// EACCES, ESTALE on a shared volume): then nothing may be assumed gone.
// Compared by content, not inode: a renewed token's files are new inodes.
// Read under the token's lock, the answer stays true until the lock holder
// acts (token_store.h).
Result<bool> TokenStore::BelongsTo(const std::string& path, const std::string& username) const {
  auto data = disk_.Read(path, 65536);
  if (!data) {
    if (data.error().code == ErrorCode::kNotFound) return false;
    return data.error();
  }
  auto line = PasswordLine::Parse(data.value());
  return line && line->info.username == username;
}

Result<FileLock> TokenStore::LockToken(const std::string& username, bool wait) {
  if (!IsValidUsername(username)) return Error{ErrorCode::kNotFound, "no such token"};
  const std::string path = locks_dir_ + "/" + username;
  auto lock = disk_.Lock(path, wait);
  if (!lock && lock.error().code == ErrorCode::kNotFound) {
    if (auto st = MakeDirs(tokens_dir_, ".locks", kTokenDirMode); !st) return st.error();
    lock = disk_.Lock(path, wait);
  }
  if (!lock && lock.error().code == ErrorCode::kConflict) {
    return Error{ErrorCode::kConflict, "token " + username + " is busy with another operation"};
  }
  return lock;
}

std::string TokenStore::ScopeFilePath(const std::string& scope) const {
  return tokens_dir_ + "/" + scope + ".htpasswd";
}

std::string TokenStore::RecordPath(const std::string& username) const { return records_dir_ + "/" + username; }

Result<PasswordLine> TokenStore::ReadRecord(const std::string& username) const {
  if (!IsValidUsername(username)) return Error{ErrorCode::kNotFound, "no such token"};
  auto data = disk_.Read(RecordPath(username), 65536);
  if (!data) {
    if (data.error().code == ErrorCode::kNotFound) return Error{ErrorCode::kNotFound, "no such token"};
    return data.error();
  }
  auto line = PasswordLine::Parse(data.value());
  if (!line) return Error{ErrorCode::kInternal, "token record " + username + " is corrupt"};
  return line;
}

Result<IssuedToken> TokenStore::Issue(const IssueRequest& req) {
  if (req.scopes.empty()) return Error{ErrorCode::kBadRequest, "a token needs at least one scope"};
  if (req.ttl <= 0) return Error{ErrorCode::kBadRequest, "ttl must be positive"};
  std::set<std::string> seen;
  for (const auto& s : req.scopes) {
    if (!seen.insert(s.str()).second) return Error{ErrorCode::kBadRequest, "scope " + s.str() + " given twice"};
  }

  IssuedToken token;
  token.info.issued_by = req.master;
  token.info.issued = clock_.Now();
  token.info.expires = token.info.issued + req.ttl;
  for (const auto& s : req.scopes) token.info.scopes.push_back(s.str());
  if (!req.request_id) {
    auto name = GenerateUsername(random_);
    if (!name) return name.error();
    token.info.username = name.value();
  } else {
    if (!IsValidRequestId(*req.request_id)) {
      return Error{ErrorCode::kBadRequest, "invalid request_id: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"};
    }
    token.info.username = TokenNameFor(req.master, *req.request_id);
  }
  auto password = GeneratePassword(random_);
  if (!password) return password.error();
  token.password = password.value();
  PasswordLine line{token.info, ""};
  auto hash = SshaHash(token.password, random_);
  if (!hash) return hash.error();
  line.hash = hash.value();
  auto text = line.Format();
  if (!text) return text.error();

  if (auto st = MakeDirs(tokens_dir_, ".by-user", kTokenDirMode); !st) return st.error();
  // Held until the token is complete: a revoke or renew of this name (one
  // made from a request_id is known in advance) waits for the whole token.
  auto lock = LockToken(token.info.username, /*wait=*/true);
  if (!lock) return lock.error();
  // A name names one token for the life of the store: its file in .names is
  // made once, O_EXCL, and never removed, so no later token can take the name
  // of a revoked or expired one and with it its seal status or audit trail.
  // Names from request_ids are per master (TokenNameFor), so only the master
  // that used a request_id can meet it here.
  if (auto st = MakeDirs(tokens_dir_, ".names", kTokenDirMode); !st) return st.error();
  const std::string name_file = names_dir_ + "/" + token.info.username;
  const Error name_taken{ErrorCode::kConflict, "token name " + token.info.username + " was used already"};
  int name_fd = ::open(name_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, kFileMode);
  if (name_fd < 0) {
    if (errno != EEXIST) return ErrnoError("create", name_file, errno);
    if (!req.request_id) return name_taken;
    return Reissue(std::move(token), line, req);
  }
  ::close(name_fd);
  auto temp = WriteTempFile(records_dir_, text.value(), kFileMode);
  if (!temp) {
    ::unlink(name_file.c_str());
    return temp.error();
  }

  // Record first: every published scope file then has a record, so it can
  // always be found by username (revoke, prune) even after a crash.
  const std::string record = RecordPath(token.info.username);
  if (int err = disk_.Link(temp.value(), record); err != 0) {
    ::unlink(temp->c_str());
    ::unlink(name_file.c_str());
    // EEXIST: a record made before names were kept (its name is not in .names).
    if (err == EEXIST) return name_taken;
    return ErrnoError("link", record, err);
  }

  std::vector<std::string> linked;
  // Nothing of a failed issue stays, not even its name: the same request may
  // be sent again.
  auto roll_back = [&](const Error& e) -> Error {
    for (const auto& path : linked) disk_.Unlink(path);
    disk_.Unlink(record);
    ::unlink(temp->c_str());
    ::unlink(name_file.c_str());
    return e;
  };
  for (const auto& s : token.info.scopes) {
    if (auto st = LinkScope(temp.value(), s); !st) return roll_back(st.error());
    linked.push_back(ScopeFilePath(s));
  }
  ::unlink(temp->c_str());

  if (auto st = FsyncDir(names_dir_); !st) return roll_back(st.error());
  if (auto st = FsyncDir(records_dir_); !st) return roll_back(st.error());
  for (const auto& path : linked) {
    if (auto st = FsyncDir(Parent(path)); !st) return roll_back(st.error());
  }
  return token;
}

Status TokenStore::LinkScope(const std::string& temp, const std::string& scope) {
  const std::string path = ScopeFilePath(scope);
  auto dir = scope.substr(0, scope.rfind('/') == std::string::npos ? 0 : scope.rfind('/'));
  if (auto st = MakeDirs(tokens_dir_, dir, kTokenDirMode); !st) return st;
  for (int attempt = 0; attempt < 2; ++attempt) {
    int err = disk_.Link(temp, path);
    if (err == 0) return Ok{};
    if (err != EEXIST) return ErrnoError("link", path, err);
    if (attempt > 0) break;
    // A holder whose token has expired but is still on disk (the expiry
    // timer has not run yet) does not block a new build of that scope.
    if (auto st = RemoveExpiredHolder(path); !st) {
      if (st.error().code != ErrorCode::kConflict) return st;
      break;
    }
  }
  return Error{ErrorCode::kConflict, "scope " + scope + " already has a live token"};
}

Status TokenStore::RemoveExpiredHolder(const std::string& path) {
  auto data = disk_.Read(path, 65536);
  if (!data) return data.error().code == ErrorCode::kNotFound ? Status(Ok{}) : Status(data.error());  // gone: retry
  auto holder = PasswordLine::Parse(data.value());
  const Error live{ErrorCode::kConflict, "the holder is live"};
  if (!holder || holder->info.expires > clock_.Now()) return live;
  // Never wait here: this issue already holds its own token's lock.
  auto lock = LockToken(holder->info.username, /*wait=*/false);
  if (!lock) return lock.error().code == ErrorCode::kConflict ? Status(live) : Status(lock.error());
  // Read again under the lock: the holder may have been renewed meanwhile.
  auto record = ReadRecord(holder->info.username);
  if (record) {
    if (record->info.expires > clock_.Now()) return live;
    auto removed = RemoveTokenLocked(record.value());
    if (!removed) return removed.error();
    return Ok{};
  }
  if (record.error().code != ErrorCode::kNotFound) return record.error();
  // No record: an orphan of this holder (a crash mid-revoke); remove it.
  auto ours = BelongsTo(path, holder->info.username);
  if (!ours) return ours.error();
  if (ours.value()) {
    if (int err = disk_.Unlink(path); err != 0 && err != ENOENT) return ErrnoError("unlink", path, err);
    return FsyncDir(Parent(path));
  }
  return Ok{};
}

Result<bool> TokenStore::RemoveTokenLocked(const PasswordLine& line) {
  const std::string record = RecordPath(line.info.username);
  Status result = Ok{};
  for (const auto& s : line.info.scopes) {
    const std::string path = ScopeFilePath(s);
    auto ours = BelongsTo(path, line.info.username);
    if (!ours) {
      result = ours.error();  // keep the record: the token may still work
      continue;
    }
    if (!ours.value()) continue;
    // Still ours: only a holder of this token's lock could have changed it.
    if (int err = disk_.Unlink(path); err != 0 && err != ENOENT) {
      result = ErrnoError("unlink", path, err);
      continue;
    }
    if (auto st = FsyncDir(Parent(path)); !st) result = st;
  }
  if (!result) return result.error();  // keep the record so a retry finds the token
  if (int err = disk_.Unlink(record); err != 0) {
    if (err == ENOENT) return false;  // another process removed it first
    return ErrnoError("unlink", record, err);
  }
  if (auto st = FsyncDir(records_dir_); !st) return st.error();
  return true;
}

Result<TokenInfo> TokenStore::Revoke(const std::string& username, const std::string& master) {
  auto lock = LockToken(username, /*wait=*/true);
  if (!lock) return lock.error();
  auto line = ReadRecord(username);
  if (!line) return line.error();
  // A master revokes its own live tokens; an expired one is the timer's.
  if (!master.empty() && (line->info.issued_by != master || line->info.expires <= clock_.Now())) {
    return Error{ErrorCode::kNotFound, "no such token"};
  }
  auto removed = RemoveTokenLocked(line.value());
  if (!removed) return removed.error();
  // Of two concurrent revokes exactly one succeeds.
  if (!removed.value()) return Error{ErrorCode::kNotFound, "no such token"};
  return line->info;
}

Result<TokenInfo> TokenStore::Get(const std::string& username) const {
  auto line = ReadRecord(username);
  if (!line) return line.error();
  if (line->info.expires <= clock_.Now()) return Error{ErrorCode::kNotFound, "no such token"};
  return line->info;
}

Status TokenStore::ForEachRecord(const std::function<void(const std::string&)>& fn) const {
  DIR* d = ::opendir(records_dir_.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return Ok{};
    return ErrnoError("opendir", records_dir_, errno);
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);  // skips ".", "..", temp files
  }
  ::closedir(d);
  for (const auto& name : names) fn(name);
  return Ok{};
}

Result<std::vector<TokenInfo>> TokenStore::List() const {
  std::vector<TokenInfo> tokens;
  const int64_t now = clock_.Now();
  auto st = ForEachRecord([&](const std::string& name) {
    auto line = ReadRecord(name);
    if (line && line->info.expires > now) tokens.push_back(line->info);
  });
  if (!st) return st.error();
  return tokens;
}

Result<TokenInfo> TokenStore::Renew(const std::string& username, int64_t expires, const std::string& master) {
  // Held from the read to the last rename: a revoke waits for the renew and
  // then removes the renewed files, or the renew finds the record gone.
  auto lock = LockToken(username, /*wait=*/true);
  if (!lock) return lock.error();
  auto line = ReadRecord(username);
  if (!line) return line.error();
  if (line->info.expires <= clock_.Now()) return Error{ErrorCode::kNotFound, "no such token"};
  if (!master.empty() && line->info.issued_by != master) return Error{ErrorCode::kNotFound, "no such token"};
  PasswordLine renewed = line.value();
  renewed.info.expires = expires;
  if (auto st = Republish(renewed); !st) return st.error();
  return renewed.info;
}

Result<IssuedToken> TokenStore::Reissue(IssuedToken token, const PasswordLine& line, const IssueRequest& req) {
  const Error used{ErrorCode::kConflict, "request_id " + *req.request_id +
                                             " was used already (its token was revoked or has expired, or was "
                                             "issued for other scopes): a retry must send the same scopes"};
  const std::string& username = token.info.username;
  auto old = ReadRecord(username);
  if (!old) return old.error().code == ErrorCode::kNotFound ? used : old.error();
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  if (old->info.issued_by != token.info.issued_by || old->info.expires <= clock_.Now() ||
      sorted(old->info.scopes) != sorted(token.info.scopes)) {
    return used;
  }
  for (const auto& s : old->info.scopes) {
    auto ours = BelongsTo(ScopeFilePath(s), username);
    if (!ours) return ours.error();
    if (!ours.value()) return used;  // half revoked by a crash: prune finishes it
  }
  // The retry of an issue whose answer was lost (a client timeout, a proxy):
  // the same token with a new password and ttl, so nobody holds the old one.
  // Its issue time stays: retries cannot keep a token alive past max_ttl.
  PasswordLine fresh = line;
  fresh.info.scopes = old->info.scopes;
  fresh.info.issued = old->info.issued;
  if (req.max_ttl > 0) fresh.info.expires = std::min(fresh.info.expires, old->info.issued + req.max_ttl);
  if (fresh.info.expires <= clock_.Now()) return used;
  if (auto st = Republish(fresh); !st) return st.error();
  token.info = fresh.info;
  token.reissued = true;
  return token;
}

Status TokenStore::Republish(const PasswordLine& line) {
  const std::string& username = line.info.username;
  auto text = line.Format();
  if (!text) return text.error();
  auto temp = WriteTempFile(records_dir_, text.value(), kFileMode);
  if (!temp) return temp.error();
  auto fail = [&](const Error& e) -> Error {
    ::unlink(temp->c_str());
    return e;
  };
  for (const auto& s : line.info.scopes) {
    const std::string path = ScopeFilePath(s);
    auto ours = BelongsTo(path, username);
    if (!ours) return fail(ours.error());
    if (!ours.value()) continue;
    // A second name for the new inode next to the scope file, renamed over it.
    std::string staged = Parent(path) + "/" + kTempPrefix + username;
    ::unlink(staged.c_str());
    if (int err = disk_.Link(temp.value(), staged); err != 0) return fail(ErrnoError("link", staged, err));
    // Still ours: only a holder of this token's lock could have changed it.
    if (int err = disk_.Rename(staged, path); err != 0) {
      ::unlink(staged.c_str());
      return fail(ErrnoError("rename", path, err));
    }
    if (auto st = FsyncDir(Parent(path)); !st) return fail(st.error());
  }
  if (int err = disk_.Rename(temp.value(), RecordPath(username)); err != 0) {
    return fail(ErrnoError("rename", RecordPath(username), err));
  }
  return FsyncDir(records_dir_);
}

Result<std::optional<TokenInfo>> TokenStore::ExpireIfDue(const std::string& username, int64_t* next) {
  // A first look without the lock: a sweep reads thousands of live records.
  // Only a due token is locked, and then read again under the lock.
  Result<PasswordLine> line = Error{ErrorCode::kNotFound, "no such token"};
  FileLock lock;
  for (bool locked : {false, true}) {
    if (locked) {
      auto l = LockToken(username, /*wait=*/true);
      if (!l) return l.error();
      lock = std::move(l.value());
    }
    line = ReadRecord(username);
    if (!line) {
      if (line.error().code == ErrorCode::kNotFound) return std::optional<TokenInfo>();
      return line.error();
    }
    if (line->info.expires > clock_.Now()) {
      if (next != nullptr) *next = line->info.expires;
      return std::optional<TokenInfo>();
    }
  }
  auto removed = RemoveTokenLocked(line.value());
  if (!removed) return removed.error();
  // Only the process that removed it reports it: one log line per expiry.
  if (!removed.value()) return std::optional<TokenInfo>();
  return std::optional<TokenInfo>(line->info);
}

Result<TokenStore::Sweep> TokenStore::ExpireAll() {
  Sweep sweep;
  Status failure = Ok{};
  auto st = ForEachRecord([&](const std::string& name) {
    int64_t next = 0;
    auto r = ExpireIfDue(name, &next);
    if (!r) {
      // A corrupt record is prune's business (by age); it must not stop the sweep.
      if (r.error().code != ErrorCode::kInternal) failure = r.error();
    } else if (r.value()) {
      sweep.expired.push_back(*r.value());
    } else if (next > 0) {
      sweep.live.emplace_back(next, name);
    }
  });
  if (!st) return st.error();
  if (!failure) return failure.error();
  return sweep;
}

Result<std::vector<std::string>> TokenStore::Prune(int64_t stale_after, std::vector<TokenInfo>* expired) {
  std::vector<std::string> removed;
  auto sweep = ExpireAll();
  if (!sweep) return sweep.error();
  for (const auto& t : sweep->expired) removed.push_back("expired token " + t.username);
  if (expired != nullptr) *expired = sweep->expired;

  const int64_t now = clock_.Now();
  std::vector<std::string> dirs = {tokens_dir_};
  Status failure = Ok{};
  while (!dirs.empty()) {
    std::string dir = dirs.back();
    dirs.pop_back();
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
      // Removed since its parent was listed (an operator, `apt remove`):
      // nothing left in it to prune.
      if (errno == ENOENT && dir != tokens_dir_) continue;
      return ErrnoError("opendir", dir, errno);
    }
    std::vector<std::pair<std::string, unsigned char>> entries;
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") entries.emplace_back(name, e->d_type);
    }
    ::closedir(d);
    std::sort(entries.begin(), entries.end());  // the same order on every filesystem
    for (const auto& [name, type] : entries) {
      const std::string path = dir + "/" + name;
      const std::string rel = path.substr(tokens_dir_.size() + 1);
      struct stat st{};
      if (::lstat(path.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        dirs.push_back(path);
        continue;
      }
      bool remove = false;
      FileLock held;  // a scope file's token, from the check to the unlink
      if (dir == locks_dir_) {
        // Unheld, it was left by a crash: taking the lock and releasing it
        // removes the file (FileLock), and a waiter on it simply retries.
        (void)disk_.Lock(path, /*wait=*/false);
        continue;
      }
      if (StartsWith(name, kTempPrefix)) {
        remove = AgeOf(path, now) >= stale_after;  // younger ones may be in flight
      } else if (dir == tokens_dir_ + "/.seals") {
        remove = AgeOf(path, now) >= kSealStatusDays * 86400;  // masters poll for minutes, not weeks
      } else if (dir == tokens_dir_ + "/.metrics") {
        remove = false;
      } else if (dir == records_dir_) {
        auto record = ReadRecord(name);
        remove = !record && record.error().code == ErrorCode::kInternal && AgeOf(path, now) >= stale_after;
      } else if (rel.size() > 9 && rel.compare(rel.size() - 9, 9, ".htpasswd") == 0) {
        // A scope file is an orphan unless its token's record lists this scope.
        const std::string scope = rel.substr(0, rel.size() - 9);
        // Read errors keep the file: only what is known to be stray goes.
        auto data = disk_.Read(path, 65536);
        if (!data) continue;
        auto line = PasswordLine::Parse(data.value());
        if (!line) {
          remove = true;  // never written by us half-way: a foreign or damaged file
        } else {
          // Decided and done under the token's lock; a busy token is left
          // to its operation (or the next prune).
          auto lock = LockToken(line->info.username, /*wait=*/false);
          if (!lock) continue;
          held = std::move(lock.value());
          auto ours = BelongsTo(path, line->info.username);
          if (!ours || !ours.value()) continue;
          auto record = ReadRecord(line->info.username);
          if (!record) {
            remove = record.error().code == ErrorCode::kNotFound || record.error().code == ErrorCode::kInternal;
          } else {
            const auto& scopes = record->info.scopes;
            remove = std::find(scopes.begin(), scopes.end(), scope) == scopes.end();
          }
        }
      }
      if (!remove) continue;
      if (int err = disk_.Unlink(path); err != 0 && err != ENOENT) {
        failure = ErrnoError("unlink", path, err);
        continue;
      }
      if (auto fs = FsyncDir(dir); !fs) failure = fs;
      removed.push_back((dir == tokens_dir_ + "/.seals" ? "old seal status " : "stray file ") + rel);
    }
  }
  if (!failure) return failure.error();
  return removed;
}

bool TokenStore::HoldsScope(const std::string& scope) const {
  struct stat st{};
  return ::lstat(ScopeFilePath(scope).c_str(), &st) == 0;
}

Status TokenStore::CheckWritable() const {
  auto temp = WriteTempFile(tokens_dir_, "", kFileMode);
  if (!temp) return Explained(temp.error(), "the token store is not writable");
  if (::unlink(temp->c_str()) != 0) {
    return Explained(ErrnoError("unlink", temp.value(), errno), "the token store is not writable");
  }
  return Ok{};
}

Status TokenStore::WriteSealStatus(const std::string& username, const std::string& json) {
  if (!IsValidUsername(username)) return Error{ErrorCode::kBadRequest, "invalid username"};
  if (auto st = MakeDirs(tokens_dir_, ".seals", kTokenDirMode); !st) return st;
  return ReplaceFile(disk_, tokens_dir_ + "/.seals", username, json, kFileMode);
}

Result<std::string> TokenStore::ReadSealStatus(const std::string& username) const {
  if (!IsValidUsername(username)) return Error{ErrorCode::kNotFound, "no seal for this token"};
  return disk_.Read(tokens_dir_ + "/.seals/" + username, 1 << 20);
}

}  // namespace artifact
