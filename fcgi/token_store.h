// The token store: tokens published as per-scope password files for nginx.
//
// Layout under tokens_dir:
//   <scope>.htpasswd        what nginx reads for writes under <scope>
//   .by-user/<username>     the token's record, same inode (hard link)
//   .names/<username>       empty, made at issue and kept: names are never reused
//   .locks/<username>       the token's lock while an operation runs
//
// A token is one file written once (temp + fsync), then hard-linked to its
// record and to each scope's name. link(2) fails with EEXIST instead of
// replacing, which gives O_EXCL semantics to a complete file: of two issuers
// of one scope exactly one wins, and nginx never sees a half-written file.
// Revoke unlinks the names and fsyncs the directories. Nothing is cached in
// memory, so several `serve` processes (and nodes on a shared volume) agree.
//
// Concurrency. Every operation on a token (issue, renew, revoke, expire,
// prune) holds that token's lock, tokens_dir/.locks/<username> (an open file
// description lock, disk.h), from its first read of the token's files to its
// last act on them, against other threads, processes and the nodes of a
// shared volume. Two rules make that enough:
//  - a file naming token X (its record or a scope file) is removed or
//    replaced only by a holder of X's lock, after reading it under the lock;
//  - a new file only ever appears at a free name: link(2) fails with EEXIST
//    instead of replacing another token's file.
// So once X's holder has read "this scope file is X's", it stays X's until
// that holder acts: check-then-unlink and check-then-rename touch X's file,
// never a newer token's. Renew and revoke of one token are serialised, so a
// renew that read the token before a revoke cannot bring it back. An issue
// that meets an expired holder on its scope only try-locks that holder (it
// never waits while holding a lock, so issues cannot deadlock) and answers
// 409 when the holder is busy.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "clock.h"
#include "disk.h"
#include "password_file.h"
#include "result.h"
#include "scope.h"

namespace artifact {

struct IssueRequest {
  std::vector<Scope> scopes;
  int64_t ttl = 0;           // seconds, > 0
  std::optional<std::string> request_id;  // the idempotency key; none: a generated name
  int64_t max_ttl = 0;       // a retry's expiry is capped at the first issue + this (0: no cap)
  std::string master;        // the issuing master
  bool reopen = false;       // allow a published scope (checked by the caller, builds.h)
};

struct IssuedToken {
  TokenInfo info;
  std::string password;  // shown once, never stored in clear
  bool reissued = false;  // the retry of a live token (TokenStore::Issue)
};

class TokenStore {
 public:
  // `tokens_dir` must exist; the store touches nothing outside it. The
  // clock, random source and disk must outlive this.
  TokenStore(std::string tokens_dir, const Clock& clock, RandomSource& random, Disk& disk = Disk::Default());

  // 409 when a scope has a live token; 507 on a full disk. On any failure
  // nothing the call created is left behind.
  // With a request_id the token's name is TokenNameFor(master, request_id)
  // (password_file.h), and the request is idempotent: when that token is
  // live, for the same scopes, the issue is the retry of one whose answer was
  // lost, and the same token is published again with a new password and
  // ttl (the old password stops working; its issue time stays, so the expiry
  // is capped at that time + max_ttl as a renew's is). Any other use of a
  // request_id that was used before (revoked, expired, other scopes) is 409:
  // a name names one token for the life of the store.
  // (Whether a scope is published, and its directories, are the builds'
  // business: IssueToken in api.h does both.)
  Result<IssuedToken> Issue(const IssueRequest& req);

  // Removes every scope file of the token, then its record, and returns what
  // was removed. 404 if unknown; with a `master`, also when that master did
  // not issue it or it has expired (the API's "no such live token").
  Result<TokenInfo> Revoke(const std::string& username, const std::string& master = "");

  // A live (unexpired) token; 404 when unknown or expired.
  Result<TokenInfo> Get(const std::string& username) const;

  // Every live token.
  Result<std::vector<TokenInfo>> List() const;

  // Sets the token's expiry to `expires`, capped at issued + max_ttl by the
  // caller. 404 when unknown or already expired (an expired token is dead),
  // or when `master` is not empty and did not issue it.
  // Each scope file is replaced atomically (rename), the record last, so a
  // crash in between leaves the old, earlier expiry in force (fail closed).
  Result<TokenInfo> Renew(const std::string& username, int64_t expires, const std::string& master = "");

  // Removes the token if its record says it has expired. Returns the
  // removed token, or nullopt when it is live (then `next` gets its expiry)
  // or already gone.
  Result<std::optional<TokenInfo>> ExpireIfDue(const std::string& username, int64_t* next);

  // One pass over every record: removes the expired tokens (returned in
  // `expired`) and reports the live ones' expiries for scheduling.
  struct Sweep {
    std::vector<TokenInfo> expired;
    std::vector<std::pair<int64_t, std::string>> live;  // (expires, username)
  };
  Result<Sweep> ExpireAll();

  // What `artifact-token prune` removes: expired tokens, temp files older
  // than `stale_after` seconds (left by a crash mid-write), scope files
  // without a matching record, and unreadable records older than
  // `stale_after`. Returns one human line per removal.
  // The expired tokens it removed go to `expired` too, when given.
  Result<std::vector<std::string>> Prune(int64_t stale_after, std::vector<TokenInfo>* expired = nullptr);

  // True when a scope file of `scope` exists (a token holds it, live or not
  // yet removed): retention never deletes such a build.
  bool HoldsScope(const std::string& scope) const;

  // Creates and removes a file in the store: the health check (Builds has
  // its own for the artifacts volume).
  Status CheckWritable() const;

  std::string ScopeFilePath(const std::string& scope) const;
  std::string RecordPath(const std::string& username) const;

  // The status of a revoked token's seal (JSON, no secret), kept after the
  // token for GET /token/<username>/seal, where any process or node reads
  // it: tokens_dir/.seals/<username>, replaced atomically, removed by prune
  // when old.
  Status WriteSealStatus(const std::string& username, const std::string& json);
  // kNotFound when there is none (or the name is not a valid username).
  Result<std::string> ReadSealStatus(const std::string& username) const;

 private:
  Result<PasswordLine> ReadRecord(const std::string& username) const;
  // The token's lock (see the top of this file); `wait` false: 409 when busy.
  Result<FileLock> LockToken(const std::string& username, bool wait);
  // True when the password file at `path` names `username` (see the .cc).
  Result<bool> BelongsTo(const std::string& path, const std::string& username) const;
  // Calls `fn` for every record name (not temp files).
  Status ForEachRecord(const std::function<void(const std::string&)>& fn) const;
  // The second issue of a live token's request_id (see Issue); holds the lock.
  Result<IssuedToken> Reissue(IssuedToken token, const PasswordLine& line, const IssueRequest& req);
  // Replaces the record and each scope file of line.info.username that still
  // names it with `line` (one new inode, renamed over each). The caller holds
  // the token's lock and has read its record.
  Status Republish(const PasswordLine& line);
  // Links `temp` to the scope's file; on EEXIST removes an expired holder once.
  Status LinkScope(const std::string& temp, const std::string& scope);
  // Removes the expired token holding `path`, under its lock; kConflict
  // when it is live or busy.
  Status RemoveExpiredHolder(const std::string& path);
  // Removes the token's scope files and then its record. The caller holds
  // the token's lock. True when this call removed the record.
  Result<bool> RemoveTokenLocked(const PasswordLine& line);

  std::string tokens_dir_;
  std::string records_dir_;
  std::string locks_dir_;
  std::string names_dir_;
  const Clock& clock_;
  RandomSource& random_;
  Disk& disk_;
};

}  // namespace artifact
