#include "api.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Stringifier.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <sstream>

#include "base64.h"
#include "build_tree.h"
#include "expiry_timer.h"
#include "issue_body.h"
#include "metrics.h"
#include "password_file.h"
#include "posix_file.h"
#include "sealer.h"
#include "split.h"

namespace artifact {
namespace {

constexpr const char* kJson = "application/json";

// "a=1&b=2" -> {a: 1, b: 2}; the last of repeated keys wins.
std::map<std::string, std::string> ParseQuery(const std::string& query) {
  std::map<std::string, std::string> out;
  std::string::size_type start = 0;
  while (start < query.size()) {
    auto amp = query.find('&', start);
    std::string pair = query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    start = amp == std::string::npos ? query.size() : amp + 1;
    auto eq = pair.find('=');
    out[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
  }
  return out;
}

Response JsonResponse(int status, const Poco::JSON::Object& obj) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", kJson);
  r.headers.emplace_back("Cache-Control", "no-store");
  r.body = ToJson(obj);
  return r;
}

}  // namespace

std::string ToJson(const Poco::JSON::Object& obj) {
  std::ostringstream out;
  Poco::JSON::Stringifier::condense(obj, out);
  return out.str();
}

std::string PrintableAscii(const std::string& text, size_t max_length) {
  std::string out = text.substr(0, max_length);
  for (char& c : out) {
    if (c < ' ' || c > '~') c = '?';
  }
  return out;
}

Response ErrorResponse(const Error& e) {
  Poco::JSON::Object obj(Poco::JSON_PRESERVE_KEY_ORDER);
  obj.set("error", std::string(ErrorName(e.code)));
  // Messages may quote client input (an unknown field name): never let it
  // make the body invalid UTF-8 or arbitrarily long.
  obj.set("message", PrintableAscii(e.message, 512));
  Response r = JsonResponse(HttpStatus(e.code), obj);
  if (e.code == ErrorCode::kUnauthorized) {
    r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"artifact-token\"");
  }
  return r;
}

namespace {

Response MethodNotAllowed(const std::string& allow) {
  Response r = ErrorResponse(Error{ErrorCode::kMethodNotAllowed, "allowed: " + allow});
  r.headers.emplace_back("Allow", allow);
  return r;
}

// Host header as given by the client, accepted only when it is a plain
// host[:port]; it only ever flows back into the caller's own response.
bool IsPlainHost(const std::string& h) {
  if (h.empty() || h.size() > 255) return false;
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '-' || c == ':' || c == '[' || c == ']';
    if (!ok) return false;
  }
  return true;
}

std::string HostName(const std::string& base_url) {
  auto start = base_url.find("://");
  std::string host = start == std::string::npos ? base_url : base_url.substr(start + 3);
  host = host.substr(0, host.find('/'));
  if (!host.empty() && host[0] == '[') return host.substr(0, host.find(']') + 1);
  return host.substr(0, host.find(':'));
}


}  // namespace

std::string Response::Header(const std::string& name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

std::string Rfc3339(int64_t unix_time) {
  std::time_t t = static_cast<std::time_t>(unix_time);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Poco::JSON::Object TokenJson(const TokenInfo& t, int64_t now) {
  Poco::JSON::Object obj(Poco::JSON_PRESERVE_KEY_ORDER);
  obj.set("username", t.username);
  Poco::JSON::Array scopes;
  for (const auto& s : t.scopes) scopes.add(s);
  obj.set("scopes", scopes);
  obj.set("issued_by", t.issued_by);
  obj.set("issued_at", Rfc3339(t.issued));
  obj.set("expires_at", Rfc3339(t.expires));
  obj.set("expires_in", static_cast<Poco::Int64>(t.expires - now));
  return obj;
}

Result<IssuedToken> IssueToken(TokenStore& store, Builds& builds, const IssueRequest& req) {
  if (!req.reopen) {
    for (const auto& s : req.scopes) {
      auto published = builds.IsPublished(s.str());
      if (!published) return published.error();
      if (published.value()) {
        return Error{ErrorCode::kConflict, "scope " + s.str() + " is published (its directory holds files)"};
      }
    }
  }
  auto token = store.Issue(req);
  if (!token) return token;
  // A retry's build was opened by the token's first issue. Opening it again
  // could thaw a build that a revoke sealed since the retry let go of the
  // token's lock, and a failure here must not revoke a token this call did
  // not make: the retry is done (a revoke after it wins, as it should).
  if (token->reissued) return token;
  for (const auto& s : req.scopes) {
    // Open decides "published" again, under the build's lock: the check
    // above is only the early answer that spares a token.
    if (auto st = builds.Open(s.str(), req.reopen, req.master); !st) {
      (void)store.Revoke(token->info.username);
      OPENSSL_cleanse(token->password.data(), token->password.size());
      return st.error();
    }
  }
  return token;
}

Api::Api(const Config& config, TokenStore& store, Builds& builds, MastersFile& masters, const Clock& clock,
         EventLog& log, ApiServices services)
    : config_(config),
      store_(store),
      builds_(builds),
      masters_(masters),
      clock_(clock),
      log_(log),
      services_(services) {}

void Api::LogLine(const std::string& event, const std::string& master, const std::string& username,
                  const std::string& scopes, const std::string& outcome) {
  log_.Write(Rfc3339(clock_.Now()) + " " + event + " master=" + master + " username=" + username +
             " scopes=" + scopes + " outcome=" + outcome);
}

Response Api::Fail(const Error& e, const std::string& event, const std::string& master) {
  // The message is ours (never echoes a secret); quote-free for one-line logs.
  std::string reason = PrintableAscii(e.message, 512);
  for (char& c : reason) {
    if (c == '"') c = '\'';
  }
  const int status = HttpStatus(e.code);
  log_.Write(Rfc3339(clock_.Now()) + " " + event + " master=" + master + " outcome=" + std::to_string(status) +
                 " reason=\"" + reason + "\"",
             status >= 500 ? Priority::kError : Priority::kInfo);
  if (services_.metrics != nullptr) services_.metrics->Add(Metrics::RefusalCounter(e.code));
  if (status < 500) return ErrorResponse(e);
  // Server-side details (paths, errno) go to the log, not to the client.
  std::string what = e.public_message;
  if (what.empty()) {
    what = e.code == ErrorCode::kInsufficientStorage ? "the storage is full" : "the token service failed";
  }
  return ErrorResponse(Error{e.code, what + "; nothing was changed, the token service's log has the details"});
}

std::string Api::BaseUrl(const Request& req) const {
  if (!config_.public_url.empty()) return config_.public_url;
  std::string scheme = req.scheme == "https" ? "https" : "http";
  return IsPlainHost(req.host) ? scheme + "://" + req.host : "";
}

namespace {

// The user name and password of an "Authorization: Basic ..." header.
struct BasicCredentials {
  std::string user, password;
  ~BasicCredentials() { OPENSSL_cleanse(password.data(), password.size()); }
};

Result<BasicCredentials> DecodeBasic(const std::string& authorization, const char* missing) {
  const std::string prefix = "Basic ";
  if (authorization.compare(0, prefix.size(), prefix) != 0) return Error{ErrorCode::kUnauthorized, missing};
  std::string b64 = authorization.substr(prefix.size());
  if (b64.empty() || b64.size() > 1024 || b64.size() % 4 != 0) {
    return Error{ErrorCode::kUnauthorized, "malformed basic credentials"};
  }
  std::string raw = Base64Decode(b64);
  auto colon = raw.find(':');
  if (colon == std::string::npos || raw.find('\0') != std::string::npos) {
    OPENSSL_cleanse(raw.data(), raw.size());
    return Error{ErrorCode::kUnauthorized, "malformed basic credentials"};
  }
  BasicCredentials out;
  out.user = raw.substr(0, colon);
  out.password = raw.substr(colon + 1);
  OPENSSL_cleanse(raw.data(), raw.size());
  return out;
}

}  // namespace

Result<Master> Api::Authenticate(const Request& req) {
  auto creds = DecodeBasic(req.authorization, "master credentials required (HTTP basic auth)");
  if (!creds) return creds.error();
  return masters_.Verify(creds->user, creds->password);
}

Result<std::string> Api::AuthenticateBuildToken(const Request& req, const std::string& scope) {
  auto creds = DecodeBasic(req.authorization, "this build's token is required (HTTP basic auth)");
  if (!creds) return creds.error();
  const Error refused{ErrorCode::kUnauthorized, "not a live token of " + scope};
  auto token = LiveScopeToken(scope);
  if (!token) return token.error().code == ErrorCode::kNotFound ? refused : token.error();
  if (token->info.username != creds->user || !SshaVerify(creds->password, token->hash)) return refused;
  return token->info.username;
}

Result<PasswordLine> Api::LiveScopeToken(const std::string& scope) const {
  const Error none{ErrorCode::kNotFound, "no live token of " + scope};
  auto text = ReadSmallFile(store_.ScopeFilePath(scope));
  if (!text) return text.error().code == ErrorCode::kNotFound ? none : text.error();
  std::string line = text.value();
  if (!line.empty() && line.back() == '\n') line.pop_back();
  auto parsed = PasswordLine::Parse(line);
  if (!parsed || parsed->info.expires <= clock_.Now()) return none;
  return parsed;
}

Status Api::ChangeLiveBuild(const std::string& scope, const std::string& username,
                            const std::function<Status()>& change) {
  auto lock = builds_.Lock(scope);
  if (!lock) return lock.error();
  auto frozen = builds_.IsFrozen(scope);
  if (!frozen) return frozen.error();
  if (frozen.value()) return Error{ErrorCode::kConflict, "the build is sealed: nothing was written"};
  auto token = LiveScopeToken(scope);
  if (!token || token->info.username != username) {
    return Error{ErrorCode::kConflict, "the build's token was revoked meanwhile: nothing was written"};
  }
  return change();
}

Response Api::BuildTree(const Request& req, const std::string& op) {
  // nginx's internal locations only: "mkdirs" from the auth_request of a PUT
  // whose directory is missing, "mkcol" for MKCOL, "delete" for a directory
  // DELETE. nginx has checked the token; it is checked again here, against
  // the same file.
  const bool mkdirs = op == "mkdirs";
  auto path = ParseBuildPath(req.tree_path, config_.scope_depth);
  if (!path) return Fail(path.error(), op);
  auto user = AuthenticateBuildToken(req, path->scope);
  if (!user) return Fail(user.error(), op);
  std::vector<std::string> dirs = path->entries;
  if (mkdirs) dirs.pop_back();  // the file the PUT writes
  const std::string scope_file = store_.ScopeFilePath(path->scope);
  const StillLive still_live = [&scope_file] { return ::access(scope_file.c_str(), F_OK) == 0; };
  Status done = ChangeLiveBuild(path->scope, user.value(), [&]() -> Status {
    if (mkdirs) return MakeBuildDirs(config_.artifacts_dir, path->scope, dirs, kBuildDirMode, still_live);
    if (op == "mkcol") return MakeCollection(config_.artifacts_dir, path->scope, dirs, kBuildDirMode, still_live);
    return RemoveBuildDir(config_.artifacts_dir, path->scope, dirs, still_live);
  });
  if (!done) {
    Response refused = Fail(done.error(), op);
    // nginx's auth_request passes on 401 and 403 only (anything else is its
    // 500); it answers this 403 as a 409 with its own reason.
    if (mkdirs && refused.status != 401 && refused.status < 500) refused.status = 403;
    return refused;
  }
  const int status = op == "mkcol" ? 201 : 204;
  LogLine(op, "-", user.value(), path->scope, std::to_string(status) + " path=" + req.tree_path);
  Response r;
  r.status = status;
  return r;
}

Response Api::UploadTree(const Request& req) {
  // nginx's internal location only, after auth_basic checked the token; it
  // is checked again here. Whatever happens, the body is read to its end:
  // nginx is still sending it.
  struct Drain {
    const ReadFunction& read;
    ~Drain() {
      char buf[65536];
      while (read) {
        auto n = read(buf, sizeof buf);
        if (!n || n.value() == 0) break;
      }
    }
  } drain{req.body_stream};
  const std::string op = "upload_tree";
  auto path = ParseBuildPath(req.tree_path, config_.scope_depth, /*build_root=*/true);
  if (!path) return Fail(path.error(), op);
  auto user = AuthenticateBuildToken(req, path->scope);
  if (!user) return Fail(user.error(), op);
  const std::string type = req.content_type.substr(0, req.content_type.find(';'));
  if (type != "application/x-tar" || !req.body_stream) {
    return Fail(Error{ErrorCode::kUnsupportedMediaType,
                      "a POST into a build is a tree upload: a tar archive sent as application/x-tar"},
                op);
  }
  TarReader archive(req.body_stream);
  auto staged = StagedTree::Stage(config_.artifacts_dir, path->scope, path->entries, archive);
  if (!staged) return Fail(staged.error(), op);
  // The files land before a revoke's freeze (and are sealed with the
  // build), or find the build frozen or its token gone and land nowhere.
  Status done = ChangeLiveBuild(path->scope, user.value(), [&staged] { return staged->Commit(); });
  if (!done) return Fail(done.error(), op);
  const UploadCount& count = staged->count();
  LogLine(op, "-", user.value(), path->scope,
          "201 path=" + req.tree_path + " files=" + std::to_string(count.files) + " bytes=" + std::to_string(count.bytes));
  Poco::JSON::Object body;
  body.set("files", count.files);
  body.set("directories", count.directories);
  body.set("bytes", count.bytes);
  Response r;
  r.status = 201;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = ToJson(body);
  return r;
}

// The routes of /token. A path is matched against the patterns in table
// order and the first pattern that matches decides: its routes are tried by
// exact method, and a method none of them has is 405 with their methods as
// Allow. ":user" matches one non-empty segment, "*" one or more segments.
// The literal routes come before ":user"; token names ("t" or "r" and hex
// digits, password_file.h) are never one of them.
const std::vector<Api::Route>& Api::Routes() {
  using Req = const Request&;
  using Who = const Master&;
  using Arg = const std::string&;
  static const std::vector<Route> routes = {
      {"GET", "/token", true, [](Api& a, Req, Who m, Arg) { return a.ListTokens(m); }},
      {"POST", "/token", true, [](Api& a, Req r, Who m, Arg) { return a.Issue(r, m); }},
      {"GET", "/token/healthz", false, [](Api& a, Req, Who, Arg) { return a.Health(); }},
      {"HEAD", "/token/healthz", false, [](Api& a, Req, Who, Arg) { return a.Health(); }},
      {"GET", "/token/metrics", false, [](Api& a, Req, Who, Arg) { return a.MetricsText(); }},
      {"HEAD", "/token/metrics", false, [](Api& a, Req, Who, Arg) { return a.MetricsText(); }},
      {"GET", "/token/latest/*", false, [](Api& a, Req r, Who, Arg rest) { return a.Latest(rest, r.query); }},
      {"HEAD", "/token/latest/*", false, [](Api& a, Req r, Who, Arg rest) { return a.Latest(rest, r.query); }},
      // nginx's internal locations for a PUT's missing directories and a
      // directory DELETE; authenticated by the build's token, not a master.
      {"GET", "/token/tree/mkdirs", false, [](Api& a, Req r, Who, Arg) { return a.BuildTree(r, "mkdirs"); }},
      {"DELETE", "/token/tree/delete", false, [](Api& a, Req r, Who, Arg) { return a.BuildTree(r, "delete"); }},
      {"MKCOL", "/token/tree/mkcol", false, [](Api& a, Req r, Who, Arg) { return a.BuildTree(r, "mkcol"); }},
      {"POST", "/token/tree/unpack", false, [](Api& a, Req r, Who, Arg) { return a.UploadTree(r); }},
      // The build browser: directory URLs of the tree, handed over by nginx
      // (its internal /token/browse/), and the public build records.
      {"GET", "/token/browse", false, [](Api& a, Req r, Who, Arg) { return a.Browse(r, ""); }},
      {"HEAD", "/token/browse", false, [](Api& a, Req r, Who, Arg) { return a.Browse(r, ""); }},
      {"GET", "/token/browse/*", false, [](Api& a, Req r, Who, Arg rest) { return a.Browse(r, rest); }},
      {"HEAD", "/token/browse/*", false, [](Api& a, Req r, Who, Arg rest) { return a.Browse(r, rest); }},
      {"GET", "/token/builds/*", false, [](Api& a, Req, Who, Arg rest) { return a.BuildRecords(rest); }},
      {"HEAD", "/token/builds/*", false, [](Api& a, Req, Who, Arg rest) { return a.BuildRecords(rest); }},
      {"POST", "/token/seal/*", true, [](Api& a, Req r, Who m, Arg scope) { return a.SealBuild(r, m, scope); }},
      {"GET", "/token/:user", true, [](Api& a, Req, Who m, Arg u) { return a.GetToken(m, u); }},
      {"DELETE", "/token/:user", true, [](Api& a, Req r, Who m, Arg u) { return a.Revoke(r, m, u); }},
      {"POST", "/token/:user/renew", true, [](Api& a, Req r, Who m, Arg u) { return a.Renew(r, m, u); }},
      {"GET", "/token/:user/seal", true, [](Api& a, Req, Who m, Arg u) { return a.SealStatusOf(m, u); }},
  };
  return routes;
}

namespace {

// Splits "/token/u/renew" into {"token", "u", "renew"}; one trailing slash is
// ignored ("/token/" is "/token"), other empty segments are kept (and match
// nothing).
std::vector<std::string> PathSegments(const std::string& path) {
  if (path.empty() || path[0] != '/') return {};
  std::string trimmed = path.substr(1);
  if (!trimmed.empty() && trimmed.back() == '/') trimmed.pop_back();
  return SplitFields(trimmed, '/');
}

// True when `segments` match `pattern`; `arg` gets what ":user" or "*" matched.
bool MatchPattern(const std::string& pattern, const std::vector<std::string>& segments, std::string* arg) {
  const std::vector<std::string> parts = PathSegments(pattern);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i] == "*") {
      if (i >= segments.size()) return false;
      std::string rest;
      for (size_t j = i; j < segments.size(); ++j) rest += (j == i ? "" : "/") + segments[j];
      *arg = rest;
      return true;
    }
    if (i >= segments.size()) return false;
    if (parts[i] == ":user") {
      if (segments[i].empty()) return false;
      *arg = segments[i];
    } else if (parts[i] != segments[i]) {
      return false;
    }
  }
  return parts.size() == segments.size();
}

}  // namespace

Response Api::Handle(const Request& req) {
  const std::vector<std::string> segments = PathSegments(req.path);
  const std::vector<Route>& routes = Routes();
  const Route* matched = nullptr;  // the first route of the pattern that matched
  std::string arg;
  for (const auto& route : routes) {
    if (MatchPattern(route.pattern, segments, &arg)) {
      matched = &route;
      break;
    }
  }
  if (matched == nullptr) return Fail(Error{ErrorCode::kNotFound, "no such route"}, "refuse");
  const Route* route = nullptr;
  std::string allow;
  for (const auto& r : routes) {
    if (r.pattern != matched->pattern) continue;
    allow += (allow.empty() ? "" : ", ") + r.method;
    if (r.method == req.method) route = &r;  // compared exactly: "GE" is not "GET"
  }
  // Method before credentials: a wrong method is a client bug, say so.
  if (route == nullptr) return MethodNotAllowed(allow);
  if (!route->needs_master) return route->handle(*this, req, Master{}, arg);
  auto master = Authenticate(req);
  if (!master) return Fail(master.error(), "auth");
  return route->handle(*this, req, master.value(), arg);
}

Response Api::Issue(const Request& req, const Master& master) {
  if (req.body_too_large) {
    return Fail(Error{ErrorCode::kPayloadTooLarge, "the body is larger than 64 KiB"}, "issue", master.name);
  }
  auto body = ParseIssueBody(req.content_type, req.body);
  if (!body) return Fail(body.error(), "issue", master.name);

  IssueRequest ir;
  ir.master = master.name;
  ir.reopen = body->reopen;
  ir.ttl = std::min(body->ttl.value_or(config_.default_ttl), config_.max_ttl);
  ir.request_id = body->request_id;
  ir.max_ttl = config_.max_ttl;
  // Also checked by the store; here so that 400 comes before the scope and
  // permission answers.
  if (ir.request_id && !IsValidRequestId(*ir.request_id)) {
    return Fail(Error{ErrorCode::kBadRequest, "invalid request_id: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"}, "issue",
                master.name);
  }
  for (const auto& text : body->scopes) {
    auto scope = Scope::Parse(text, config_.scope_depth);
    if (!scope) return Fail(scope.error(), "issue", master.name);
    if (!master.MayIssue(scope.value())) {
      return Fail(Error{ErrorCode::kForbidden, "master " + master.name + " may not issue for " + text}, "issue",
                  master.name);
    }
    ir.scopes.push_back(scope.value());
  }
  if (ir.reopen && !master.may_reopen) {
    return Fail(Error{ErrorCode::kForbidden, "master " + master.name + " may not reopen published scopes"},
                "issue", master.name);
  }

  auto token = IssueToken(store_, builds_, ir);
  if (!token) return Fail(token.error(), "issue", master.name);
  const TokenInfo& t = token->info;
  // "reissue": a retry replaced the password of a live token.
  LogLine(token->reissued ? "reissue" : "issue", master.name, t.username, JoinScopes(t.scopes), "201");
  if (services_.metrics != nullptr) services_.metrics->Add(Metrics::kIssued);
  if (services_.timer != nullptr) services_.timer->Schedule(t.username, t.expires);

  const std::string base = BaseUrl(req);
  Response r;
  r.status = 201;
  r.headers.emplace_back("Cache-Control", "no-store");
  if (ParseQuery(req.query)["format"] == "netrc") {
    r.headers.emplace_back("Content-Type", "text/plain");
    r.body = "machine " + HostName(base.empty() ? "localhost" : base) + " login " + t.username + " password " +
             token->password + "\n";
  } else {
    Poco::JSON::Object obj(Poco::JSON_PRESERVE_KEY_ORDER);
    obj.set("username", t.username);
    obj.set("password", token->password);
    Poco::JSON::Array scopes, urls;
    for (const auto& s : t.scopes) {
      scopes.add(s);
      urls.add(base + "/" + s + "/");
    }
    obj.set("scopes", scopes);
    obj.set("urls", urls);
    obj.set("expires_at", Rfc3339(t.expires));
    obj.set("expires_in", static_cast<Poco::Int64>(t.expires - t.issued));
    r.headers.emplace_back("Content-Type", kJson);
    r.body = ToJson(obj);
  }
  OPENSSL_cleanse(token->password.data(), token->password.size());
  return r;
}

Response Api::ListTokens(const Master& master) {
  auto tokens = store_.List();
  if (!tokens) return Fail(tokens.error(), "list", master.name);
  const int64_t now = clock_.Now();
  Poco::JSON::Array list;
  for (const auto& t : tokens.value()) {
    if (t.issued_by == master.name) list.add(TokenJson(t, now));
  }
  Poco::JSON::Object obj;
  obj.set("tokens", list);
  return JsonResponse(200, obj);
}

Response Api::GetToken(const Master& master, const std::string& username) {
  auto t = store_.Get(username);
  // Another master's token is reported exactly like a missing one.
  if (!t || t->issued_by != master.name) {
    return Fail(t ? Error{ErrorCode::kNotFound, "no such token"} : t.error(), "get", master.name);
  }
  return JsonResponse(200, TokenJson(t.value(), clock_.Now()));
}

Response Api::Revoke(const Request& req, const Master& master, const std::string& username) {
  auto query = ParseQuery(req.query);
  const std::string seal = query.count("seal") != 0 ? query["seal"] : "true";
  const std::string result = query.count("result") != 0 ? query["result"] : "success";
  if ((seal != "true" && seal != "false") || (result != "success" && result != "failure")) {
    return Fail(Error{ErrorCode::kBadRequest, "use ?seal=true|false and ?result=success|failure"}, "revoke",
                master.name);
  }
  // The owner is checked under the token's lock, with the removal.
  auto t = store_.Revoke(username, master.name);
  if (!t) return Fail(t.error(), "revoke", master.name);
  LogLine("revoke", master.name, username, JoinScopes(t->scopes), "ok");
  if (services_.metrics != nullptr) services_.metrics->Add(Metrics::kRevoked);
  if (seal == "false" || services_.sealer == nullptr) {
    Response r;
    r.status = 204;
    return r;
  }
  // The token is gone: freezing makes the build read-only, its file set final.
  return SealAnswer(services_.sealer->Seal(t.value(), *ParseBuildResult(result)), username);
}

Response Api::SealAnswer(const SealStatus& status, const std::string& username) {
  Response r;
  r.headers.emplace_back("Content-Type", kJson);
  if (status.conflict) return Fail(Error{ErrorCode::kConflict, status.error}, "seal", status.issued_by);
  if (status.state == "failed") {
    // The token is gone either way; the build is not sealed, and says so.
    Poco::JSON::Object obj(Poco::JSON_PRESERVE_KEY_ORDER);
    obj.set("error", std::string("seal_failed"));
    obj.set("message", status.error + (status.username == "-" ? "" : "; the token is revoked") +
                           "; the build is not sealed: the token service's log has the details, and "
                           "`artifact-token seal` seals it once they are fixed");
    r.status = 500;
    r.body = ToJson(obj);
    return r;
  }
  r.body = status.ToJson();
  if (status.state == "running") {
    r.status = 202;
    if (username != "-") r.headers.emplace_back("Location", "/token/" + username + "/seal");
  } else {
    r.status = 200;
  }
  return r;
}

Response Api::SealBuild(const Request& req, const Master& master, const std::string& scope_text) {
  // POST /token/seal/<scope>?result=failure|success|expired: seals a build
  // whose token is gone without a seal (a master that vanished, a crash).
  auto query = ParseQuery(req.query);
  const auto result = ParseBuildResult(query.count("result") != 0 ? query["result"] : "failure");
  if (!result) {
    return Fail(Error{ErrorCode::kBadRequest, "use ?result=success|failure|expired"}, "seal", master.name);
  }
  auto scope = Scope::Parse(scope_text, config_.scope_depth);
  if (!scope) return Fail(scope.error(), "seal", master.name);
  if (!master.MayIssue(scope.value())) {
    return Fail(Error{ErrorCode::kForbidden, "master " + master.name + " may not seal " + scope_text}, "seal",
                master.name);
  }
  if (services_.sealer == nullptr) return Fail(Error{ErrorCode::kNotFound, "sealing is off"}, "seal", master.name);
  // A build is its master's: another master (even one allowed the prefix)
  // cannot declare it a success.
  if (const std::string opener = builds_.OpenedBy(scope_text); !opener.empty() && opener != master.name) {
    return Fail(Error{ErrorCode::kForbidden, "build " + scope_text + " was opened by another master"}, "seal",
                master.name);
  }
  auto sealed = services_.sealer->SealBuild(scope_text, master.name, *result, [&] {
    LogLine("seal", master.name, "-", scope_text, "requested");  // only when a seal runs
  });
  if (!sealed) return Fail(sealed.error(), "seal", master.name);
  if (!sealed->record_json.empty()) {
    // Sealed already: the record it wrote, as an idempotent answer.
    Response r;
    r.headers.emplace_back("Content-Type", kJson);
    r.body = sealed->record_json;
    return r;
  }
  return SealAnswer(sealed->status, "-");
}

Response Api::SealStatusOf(const Master& master, const std::string& username) {
  if (services_.sealer == nullptr) return Fail(Error{ErrorCode::kNotFound, "sealing is off"}, "seal", master.name);
  auto text = services_.sealer->StatusJson(username, master.name);
  if (!text) return Fail(text.error(), "seal", master.name);
  Response r;
  r.headers.emplace_back("Content-Type", kJson);
  r.headers.emplace_back("Cache-Control", "no-store");
  r.body = text.value();
  return r;
}

Response Api::MetricsText() {
  if (services_.metrics == nullptr) return Fail(Error{ErrorCode::kNotFound, "metrics are off"}, "metrics");
  int64_t live = 0;
  if (auto tokens = store_.List(); tokens) live = static_cast<int64_t>(tokens->size());
  Response r;
  r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
  r.headers.emplace_back("Cache-Control", "no-store");
  r.body = services_.metrics->Render(live);
  return r;
}

Response Api::Latest(const std::string& path, const std::string& query) {
  // path: <builder: scope_depth - 1 segments>/latest[/rest]
  const std::vector<std::string> parts = SplitFields(path, '/');
  const size_t builder_depth = static_cast<size_t>(config_.scope_depth - 1);
  if (config_.scope_depth < 2 || parts.size() <= builder_depth || parts[builder_depth] != "latest") {
    return Fail(Error{ErrorCode::kNotFound, "no such builder"}, "latest");
  }
  std::string builder;
  for (size_t i = 0; i < builder_depth; ++i) {
    if (!IsValidSegment(parts[i])) return Fail(Error{ErrorCode::kNotFound, "no such builder"}, "latest");
    builder += (i == 0 ? "" : "/") + parts[i];
  }
  auto build = builds_.ResolveLatest(builder);
  if (!build) return Fail(build.error(), "latest");
  std::string location = "/" + builder + "/" + build.value() + "/";
  for (size_t i = builder_depth + 1; i < parts.size(); ++i) {
    // The rest is passed on as nginx normalised it; it only ever lands below
    // the real build directory, where nginx serves it under its own rules.
    location += parts[i] + (i + 1 < parts.size() ? "/" : "");
  }
  // The query goes along (.../latest/?format=json lists the build as JSON),
  // as nginx passed it on: still percent-encoded, so printable ASCII.
  if (!query.empty() && std::all_of(query.begin(), query.end(), [](char c) { return c > ' ' && c <= '~'; })) {
    location += "?" + query;
  }
  Response r;
  r.status = 302;
  r.headers.emplace_back("Location", location);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

Response Api::Renew(const Request& req, const Master& master, const std::string& username) {
  if (req.body_too_large) {
    return Fail(Error{ErrorCode::kPayloadTooLarge, "the body is larger than 64 KiB"}, "renew", master.name);
  }
  auto ttl = ParseTtlBody(req.content_type, req.body);
  if (!ttl) return Fail(ttl.error(), "renew", master.name);
  auto t = store_.Get(username);
  if (!t || t->issued_by != master.name) {
    return Fail(t ? Error{ErrorCode::kNotFound, "no such token"} : t.error(), "renew", master.name);
  }
  // max_ttl counts from the issue: renewing cannot make a token immortal.
  const int64_t expires =
      std::min(clock_.Now() + ttl.value().value_or(config_.default_ttl), t->issued + config_.max_ttl);
  auto renewed = store_.Renew(username, expires, master.name);
  if (!renewed) return Fail(renewed.error(), "renew", master.name);
  LogLine("renew", master.name, username, JoinScopes(renewed->scopes), "200");
  if (services_.metrics != nullptr) services_.metrics->Add(Metrics::kRenewed);
  if (services_.timer != nullptr) services_.timer->Schedule(username, renewed->expires);
  return JsonResponse(200, TokenJson(renewed.value(), clock_.Now()));
}

Response Api::Health() {
  if (auto st = store_.CheckWritable(); !st) return Fail(st.error(), "health");
  if (auto st = builds_.CheckWritable(); !st) return Fail(st.error(), "health");
  Poco::JSON::Object obj;
  obj.set("status", std::string("ok"));
  return JsonResponse(200, obj);
}

}  // namespace artifact
