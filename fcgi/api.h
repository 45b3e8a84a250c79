// The HTTP API of /token as a pure function: Request in, Response out. No
// FastCGI in here (fcgi_loop.cc adapts), so every route is unit-tested on
// plain structs. Every Error becomes its status and JSON body in one place.
#pragma once

#include <Poco/JSON/Object.h>

#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "browser.h"
#include "builds.h"
#include "clock.h"
#include "config.h"
#include "event_log.h"
#include "masters.h"
#include "tar_reader.h"
#include "token_store.h"

namespace artifact {

// Request bodies larger than this are refused with 413 (DESIGN.md).
inline constexpr size_t kMaxBodyBytes = 64 * 1024;

struct Request {
  std::string method;
  std::string path;           // normalised, e.g. /token/t0123
  std::string query;          // without '?'
  std::string content_type;
  std::string authorization;  // the Authorization header
  std::string host;           // the Host header
  std::string scheme = "http";
  std::string body;
  bool body_too_large = false;  // the adapter stopped reading at kMaxBodyBytes
  // ARTIFACT_TREE_PATH: the artifact URI of a /token/tree/ request (nginx's
  // internal directory operations; see Api::BuildTree).
  std::string tree_path;
  // The tree upload's body (POST /token/tree/unpack), read as a stream by
  // its route instead of into `body`; unset for every other request.
  ReadFunction body_stream;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  std::string Header(const std::string& name) const;
};

class ExpiryTimer;
class Metrics;
class Sealer;
struct SealStatus;

// What `serve` adds to the pure API; each may be absent (unit tests).
struct ApiServices {
  ExpiryTimer* timer = nullptr;  // learns every new expiry
  Sealer* sealer = nullptr;      // seals builds at revoke
  Metrics* metrics = nullptr;    // counts events for /token/metrics
};

class Api {
 public:
  // `log` receives one line per issue, revoke, renew and refusal; never a
  // secret.
  Api(const Config& config, TokenStore& store, Builds& builds, MastersFile& masters, const Clock& clock,
      EventLog& log, ApiServices services = {});

  Response Handle(const Request& req);

  // One route of /token: a method compared exactly, a path pattern, and
  // whether master credentials are checked before the handler runs.
  struct Route {
    std::string method;
    std::string pattern;
    bool needs_master;
    std::function<Response(Api&, const Request&, const Master&, const std::string& arg)> handle;
  };
  // The route table, in matching order (api.cc says how a path matches).
  static const std::vector<Route>& Routes();

 private:
  Response Issue(const Request& req, const Master& master);
  Response ListTokens(const Master& master);
  Response GetToken(const Master& master, const std::string& username);
  Response Revoke(const Request& req, const Master& master, const std::string& username);
  Response SealStatusOf(const Master& master, const std::string& username);
  Response SealBuild(const Request& req, const Master& master, const std::string& scope);
  Response SealAnswer(const SealStatus& status, const std::string& username);
  Response MetricsText();
  Response Latest(const std::string& path, const std::string& query);
  Response Renew(const Request& req, const Master& master, const std::string& username);
  Response Health();
  // The build browser (browse.cc): the page or ?format=json listing of the
  // directory `rest` of the artifact tree (nginx hands directory URLs over),
  // and the public records of a builder's builds or of one build.
  Response Browse(const Request& req, const std::string& rest);
  Response BuildRecords(const std::string& rest);
  // The rows of `builder`'s builds, newest first, with the latest mark; with
  // `page` 0 each with its summary and state, else only the rows that page
  // of RenderBuilder shows (and those whose order needs their record).
  std::vector<BuildRow> BuilderRows(const std::string& builder, const std::vector<DirEntry>& entries, size_t page);
  // Runs `change` (the app's own change of a build's tree for the token
  // `username`) under the build's lock, when the build is not frozen and
  // `username` is still its live token. A revoke removes the token first,
  // then freezes the build under the same lock: a change comes before the
  // freeze (and is frozen with the rest) or finds the build frozen or its
  // token gone, or another's after a reopen, and does nothing (409).
  Status ChangeLiveBuild(const std::string& scope, const std::string& username,
                         const std::function<Status()>& change);
  Response BuildTree(const Request& req, const std::string& op);
  // The tree upload (build_tree.h StagedTree): a tar archive unpacked into
  // the directory of the build that req.tree_path names.
  Response UploadTree(const Request& req);
  Result<Master> Authenticate(const Request& req);
  // The username of the live token of `scope` that the request's basic
  // credentials name (401 otherwise).
  Result<std::string> AuthenticateBuildToken(const Request& req, const std::string& scope);
  // The live (unexpired) token of `scope`'s file; kNotFound when none.
  Result<PasswordLine> LiveScopeToken(const std::string& scope) const;
  Response Fail(const Error& e, const std::string& event, const std::string& master = "-");
  void LogLine(const std::string& event, const std::string& master, const std::string& username,
               const std::string& scopes, const std::string& outcome);
  std::string BaseUrl(const Request& req) const;

  const Config& config_;
  TokenStore& store_;
  Builds& builds_;
  MastersFile& masters_;
  const Clock& clock_;
  EventLog& log_;
  ApiServices services_;
};

// Issues a token and opens its builds: 409 for a published scope unless
// `req.reopen` (whether the master may is the caller's check). When a build
// directory cannot be made, the token is revoked again.
Result<IssuedToken> IssueToken(TokenStore& store, Builds& builds, const IssueRequest& req);

// The JSON error body and status of `e` (401 adds WWW-Authenticate).
Response ErrorResponse(const Error& e);

// `obj` as one line of JSON: every JSON this program writes.
std::string ToJson(const Poco::JSON::Object& obj);

// `text` cut to `max_length` bytes, every byte outside printable ASCII as '?'.
std::string PrintableAscii(const std::string& text, size_t max_length);

// A token as the API and `artifact-token list --json` show it: no secret.
Poco::JSON::Object TokenJson(const TokenInfo& t, int64_t now);

// Helpers exposed for tests.
std::string Rfc3339(int64_t unix_time);

}  // namespace artifact
