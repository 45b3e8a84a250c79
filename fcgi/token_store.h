// The token store: tokens published as per-scope password files for nginx.
//
// Layout under tokens_dir:
//   <scope>.htpasswd        what nginx reads for writes under <scope>
//   .by-user/<username>     the token's record, same inode (hard link)
//
// A token is one file written once (temp + fsync), then hard-linked to its
// record and to each scope's name. link(2) fails with EEXIST instead of
// replacing, which gives O_EXCL semantics to a complete file: of two issuers
// of one scope exactly one wins, and nginx never sees a half-written file.
// Revoke unlinks the names and fsyncs the directories. Nothing is cached in
// memory, so several `serve` processes (and nodes on a shared volume) agree.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "clock.h"
#include "password_file.h"
#include "result.h"
#include "scope.h"

namespace artifact {

struct IssueRequest {
  std::vector<Scope> scopes;
  int64_t ttl = 0;           // seconds, > 0
  std::string username;      // empty: generate one
  std::string master;        // the issuing master
  bool reopen = false;       // allow a scope whose directory holds files
};

struct IssuedToken {
  TokenInfo info;
  std::string password;  // shown once, never stored in clear
};

class TokenStore {
 public:
  // Both directories must exist. The clock and random source must outlive this.
  TokenStore(std::string tokens_dir, std::string artifacts_dir, const Clock& clock, RandomSource& random);

  // 409 when a scope has a live token, the username is taken, or a scope's
  // artifact directory already holds files (and !reopen); 507 on a full disk.
  // On any failure nothing the call created is left behind.
  Result<IssuedToken> Issue(const IssueRequest& req);

  // Removes every scope file of the token, then its record. 404 if unknown.
  Status Revoke(const std::string& username);

  // A live (unexpired) token; 404 when unknown or expired.
  Result<TokenInfo> Get(const std::string& username) const;

  // Every live token.
  Result<std::vector<TokenInfo>> List() const;

  // Sets the token's expiry to `expires`, capped at issued + max_ttl by the
  // caller. 404 when unknown or already expired: an expired token is dead.
  // Each scope file is replaced atomically (rename), the record last, so a
  // crash in between leaves the old, earlier expiry in force (fail closed).
  Result<TokenInfo> Renew(const std::string& username, int64_t expires);

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
  Result<std::vector<std::string>> Prune(int64_t stale_after);

  // The health check: creates and removes a file in the store and a
  // directory in the artifacts tree, the way an issue writes them.
  Status CheckWritable() const;

  std::string ScopeFilePath(const std::string& scope) const;
  std::string RecordPath(const std::string& username) const;

 private:
  Result<PasswordLine> ReadRecord(const std::string& username) const;
  // Calls `fn` for every record name (not temp files).
  Status ForEachRecord(const std::function<void(const std::string&)>& fn) const;
  // Links `temp` to the scope's file; on EEXIST removes an expired holder once.
  Status LinkScope(const std::string& temp, const std::string& scope);
  // True when this call removed the record (false: someone else did first).
  Result<bool> RemoveToken(const PasswordLine& line);

  std::string tokens_dir_;
  std::string artifacts_dir_;
  std::string records_dir_;
  const Clock& clock_;
  RandomSource& random_;
};

}  // namespace artifact
