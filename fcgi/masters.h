// Master credentials: an htpasswd file made with standard tools
// (`htpasswd -B`), one master per line, optionally restricted to scope
// prefixes in the third field:
//
//   ci:$2y$05$...:allow=dpkg/myproj/,appimage/myproj/
//
// Hashes are checked with crypt_r (bcrypt, yescrypt, sha512crypt,
// sha256crypt). The file (a few hundred bytes) is read on every check and
// re-parsed when its bytes change: an edit takes effect on the next request,
// whatever the timestamp resolution. An unreadable file fails closed (503).
#pragma once

#include <array>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "result.h"
#include "scope.h"

namespace artifact {

struct Master {
  std::string name;
  std::vector<std::string> allow;  // scope prefixes; empty: any scope
  bool may_reopen = false;         // "reopen=yes": may issue on a published scope

  bool MayIssue(const Scope& scope) const;
};

struct MasterEntry {
  Master master;
  std::string hash;
};

struct MastersParse {
  std::vector<MasterEntry> entries;
  std::vector<std::string> problems;  // "line N: reason", one per broken line
};

// Pure parsing; broken lines are reported and left out (that master cannot
// log in), never half-applied.
MastersParse ParseMasters(const std::string& text);

class MastersFile {
 public:
  // `log`, when given, receives a line per problem each time the file is
  // (re)parsed and when it becomes unreadable.
  explicit MastersFile(std::string path, std::ostream* log = nullptr);
  ~MastersFile();
  MastersFile(const MastersFile&) = delete;
  MastersFile& operator=(const MastersFile&) = delete;

  // 401 for unknown names or wrong passwords (same work either way), 503
  // when the file cannot be read. Successful checks are remembered by an
  // HMAC of the credentials until the file changes, so a busy master does
  // not pay a bcrypt per call.
  Result<Master> Verify(const std::string& name, const std::string& password);

  // Problems found at the last (re)load, for logging.
  const std::vector<std::string>& problems() const { return parsed_.problems; }

 private:
  Status Reload();

  struct CryptState;
  std::string path_;
  std::ostream* log_;
  MastersParse parsed_;
  std::string content_;  // the text parsed_ came from
  bool loaded_ = false;
  std::array<unsigned char, 32> hmac_key_{};
  std::string dummy_hash_;
  std::set<std::string> verified_;  // HMACs of good credentials
  std::unique_ptr<CryptState> crypt_;
};

}  // namespace artifact
