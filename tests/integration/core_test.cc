// The core contract end to end: real nginx, the real app under spawn-fcgi,
// HTTP over loopback.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <catch2/catch.hpp>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "integration/server_fixture.h"
#include "scope.h"

using artifact::testing::HttpResponse;
using artifact::testing::ParseObject;
using artifact::testing::IssuedToken;
using artifact::testing::RandomBytes;
using artifact::testing::ServerOptions;
using artifact::testing::Servers;

namespace {

// With `auth` exactly as given, an empty one included.
HttpResponse IssueRaw(const Servers& s, const std::string& json_body, const std::string& auth) {
  return s.Request("POST", "/token", json_body, {{"Authorization", auth}, {"Content-Type", "application/json"}});
}

}  // namespace

TEST_CASE("the whole life of a build: issue, upload, download, revoke, refused", "[integration]") {
  Servers s;
  IssuedToken t = s.Issue(R"({"scope": "dpkg/myproj/linux-amd64/42", "ttl": 600})");
  CHECK(std::filesystem::is_directory(s.artifacts_dir() + "/dpkg/myproj/linux-amd64/42"));

  const std::string base = "/dpkg/myproj/linux-amd64/42";
  const std::string deb = RandomBytes(3 * 1024 * 1024 + 17);
  const std::string log = "build log\n";
  CHECK(s.Put(base + "/pkg_1.0+dfsg-1_amd64.deb", deb, t.username, t.password).status == 201);
  // A PUT makes the directories it needs; MKCOL makes one whose parent
  // exists (RFC 4918 9.3.1: 409 otherwise, and nothing is made).
  const auto auth = Servers::Basic(t.username, t.password);
  CHECK(s.Request("MKCOL", base + "/logs/nested/", "", {{"Authorization", auth}}).status == 409);
  CHECK_FALSE(std::filesystem::exists(s.artifacts_dir() + base + "/logs"));
  CHECK(s.Put(base + "/logs/nested/deeper/build.log", log, t.username, t.password).status == 201);
  CHECK(std::filesystem::is_directory(s.artifacts_dir() + base + "/logs/nested/deeper"));
  CHECK(s.Request("MKCOL", base + "/logs/", "", {{"Authorization", auth}}).status == 405);  // exists
  CHECK(s.Request("MKCOL", base + "/empty/", "", {{"Authorization", auth}}).status == 201);
  // And deletes a directory it made, with what is in it.
  CHECK(s.Put(base + "/scratch/a/b.txt", "b", t.username, t.password).status == 201);
  CHECK(s.Request("DELETE", base + "/scratch/", "", {{"Authorization", auth}}).status == 204);
  CHECK_FALSE(std::filesystem::exists(s.artifacts_dir() + base + "/scratch"));
  // Overwrite and delete its own files.
  CHECK(s.Put(base + "/tmp.txt", "a", t.username, t.password).status == 201);
  CHECK(s.Put(base + "/tmp.txt", "b", t.username, t.password).status == 204);
  CHECK(s.Request("DELETE", base + "/tmp.txt", "", {{"Authorization", Servers::Basic(t.username, t.password)}})
            .status == 204);

  // Anyone downloads, byte-identical, and browses.
  auto got = s.Get(base + "/pkg_1.0+dfsg-1_amd64.deb");
  CHECK(got.status == 200);
  CHECK(got.body == deb);
  CHECK(s.Get(base + "/logs/nested/deeper/build.log").body == log);
  auto listing = s.Get(base + "/");
  CHECK(listing.status == 200);
  CHECK(listing.body.find("pkg_1.0+dfsg-1_amd64.deb") != std::string::npos);
  CHECK(listing.body.find("tmp.txt") == std::string::npos);

  CHECK(s.Revoke(t.username).status == 200);  // sealed: see lifecycle_test.cc
  CHECK_FALSE(std::filesystem::exists(s.tokens_dir() + "/dpkg/myproj/linux-amd64/42.htpasswd"));
  auto after = s.Put(base + "/late.txt", "late", t.username, t.password);
  CHECK(after.status == 403);
  CHECK_FALSE(std::filesystem::exists(s.artifacts_dir() + base + "/late.txt"));
  CHECK(s.Get(base + "/pkg_1.0+dfsg-1_amd64.deb").body == deb);  // published stays readable
  CHECK(s.Revoke(t.username).status == 404);

  // The app logged issue and revoke without the password.
  CHECK(s.WaitForAppLog("revoke master=ci username=" + t.username));
  CHECK(s.AppLog().find(t.password) == std::string::npos);
}

TEST_CASE("a token writes only inside its own scope", "[integration]") {
  Servers s;
  IssuedToken t = s.Issue(R"({"scope": "dpkg/p/linux/4"})");
  IssuedToken other = s.Issue(R"({"scope": "dpkg/p/linux/5"})");
  auto before = s.Snapshot();
  struct Attempt {
    std::string method, target;
  };
  for (const auto& [method, target] : std::vector<Attempt>{
           {"PUT", "/dpkg/p/linux/5/f"},       // a sibling build with a live token
           {"PUT", "/dpkg/p/linux/6/f"},       // a sibling build without one
           {"PUT", "/dpkg/p/linux/42/f"},      // prefix twin
           {"PUT", "/dpkg/p/linux/f"},         // the parent
           {"PUT", "/dpkg/p/linux/4"},         // the scope root itself
           {"DELETE", "/dpkg/p/linux/4/"},     // ... deleted
           {"DELETE", "/dpkg/p/linux/"},       // the parent, deleted
           {"MKCOL", "/dpkg/p/linux/7/"},      // a new build
           {"PUT", "/f"},                      // the root
           {"PUT", "/dpkg/p/linux/4/../5/f"},  // dot segments
           {"PUT", "/dpkg/p/linux/4/%2e%2e/5/f"},
           {"PUT", "/dpkg/p/linux/4/.hidden"},
           {"PUT", "/.incoming/f"},
           {"COPY", "/dpkg/p/linux/4/a"},
           {"MOVE", "/dpkg/p/linux/4/a"},
       }) {
    INFO(method << " " << target);
    auto r = s.Request(method, target, method == "PUT" ? "x" : "",
                       {{"Authorization", Servers::Basic(t.username, t.password)},
                        {"Destination", "http://127.0.0.1/dpkg/p/linux/5/a"}});
    CHECK(r.status >= 400);
    CHECK(r.status != 500);
  }
  CHECK(s.Snapshot() == before);
  // And the neighbour's own token still works in its own scope.
  CHECK(s.Put("/dpkg/p/linux/5/f", "mine", other.username, other.password).status == 201);
}

TEST_CASE("COPY and MOVE are 405 with Allow, hidden paths are never served", "[integration]") {
  Servers s;
  for (const char* m : {"COPY", "MOVE", "PROPPATCH", "LOCK"}) {
    auto r = s.Request(m, "/dpkg/p/linux/1/a");
    CHECK(r.status == 405);
    CHECK(r.headers["allow"] == "OPTIONS, GET, HEAD, PROPFIND, PUT, MKCOL, DELETE, POST");
  }
  CHECK(s.Get("/.incoming/").status == 404);
}

TEST_CASE("master credentials are checked through nginx", "[integration]") {
  Servers s;
  const std::string body = R"({"scope": "dpkg/p/linux/1"})";
  for (const std::string& auth : {std::string(), Servers::Basic("ci", "wrong"), Servers::Basic("nobody", "x")}) {
    auto r = IssueRaw(s, body, auth);
    CHECK(r.status == 401);
    CHECK(r.headers["www-authenticate"] == "Basic realm=\"artifact-token\"");
    CHECK(ParseObject(r.body)->getValue<std::string>("error") == "unauthorized");
  }
  CHECK(s.Request("GET", "/token").status == 401);
  CHECK_FALSE(std::filesystem::exists(s.tokens_dir() + "/dpkg"));
}

TEST_CASE("a master outside its allow= prefixes is refused", "[integration]") {
  Servers s;
  s.AddMaster("narrow", "narrow-pw", "allow=dpkg/mine/,appimage/mine/");
  const auto auth = Servers::Basic("narrow", "narrow-pw");
  auto before = s.Snapshot();
  CHECK(IssueRaw(s, R"({"scope": "dpkg/theirs/linux/1"})", auth).status == 403);
  CHECK(IssueRaw(s, R"({"scope": "dpkg/mine2/linux/1"})", auth).status == 403);
  CHECK(IssueRaw(s, R"({"scopes": ["dpkg/mine/linux/1", "rpm/mine/linux/1"]})", auth).status == 403);
  CHECK(s.Snapshot() == before);
  auto ok = IssueRaw(s, R"({"scopes": ["dpkg/mine/linux/1", "appimage/mine/linux/1"]})", auth);
  CHECK(ok.status == 201);
  // It sees only its own tokens, not ci's, and cannot revoke ci's.
  IssuedToken ci = s.Issue(R"({"scope": "dpkg/theirs/linux/1"})");
  auto list = ParseObject(s.Request("GET", "/token", "", {{"Authorization", auth}}).body);
  CHECK(list->getArray("tokens")->size() == 1);
  CHECK(s.Request("DELETE", "/token/" + ci.username, "", {{"Authorization", auth}}).status == 404);
  CHECK(s.Request("GET", "/token/" + ci.username, "", {{"Authorization", s.MasterAuth()}}).status == 200);
}

TEST_CASE("409 on a second token for a live scope and on a published scope", "[integration]") {
  Servers s;
  IssuedToken t = s.Issue(R"({"scope": "dpkg/p/linux/1"})");
  auto before = s.Snapshot();
  auto dup = IssueRaw(s, R"({"scope": "dpkg/p/linux/1"})", s.MasterAuth());
  CHECK(dup.status == 409);
  CHECK(ParseObject(dup.body)->getValue<std::string>("error") == "conflict");
  CHECK(s.Snapshot() == before);

  REQUIRE(s.Put("/dpkg/p/linux/1/pkg.deb", "deb", t.username, t.password).status == 201);
  REQUIRE(s.Revoke(t.username).status == 200);
  before = s.Snapshot();
  CHECK(IssueRaw(s, R"({"scope": "dpkg/p/linux/1"})", s.MasterAuth()).status == 409);
  CHECK(s.Snapshot() == before);
}

TEST_CASE("invalid scopes are 400 and write nothing anywhere", "[integration]") {
  Servers s;
  auto before = s.Snapshot();
  const std::string long_segment(129, 'a');
  for (const std::string& scope : std::vector<std::string>{
           "dpkg/p/linux/..", "dpkg/p/%2e%2e/1", "dpkg/p/../linux/1", "dpkg/p/linux/1\\n", "dpkg/p:x/linux/1",
           "dpkg/p/linux/1\\u0000", "dpkg/p/linux/1/2", "dpkg/p/linux", "dpkg/p/" + long_segment + "/1",
           "dpkg/caf\\u00e9/linux/1", "/dpkg/p/linux/1", "dpkg/p/linux/1/", "dpkg//linux/1", ""}) {
    INFO("scope: " << scope);
    auto r = IssueRaw(s, "{\"scope\": \"" + scope + "\"}", s.MasterAuth());
    CHECK(r.status == 400);
    CHECK(ParseObject(r.body)->getValue<std::string>("error") == "bad_request");
  }
  CHECK(s.Snapshot() == before);
}

TEST_CASE("one token for several scopes", "[integration]") {
  Servers s;
  IssuedToken t = s.Issue(R"({"scopes": ["dpkg/p/linux/1", "appimage/p/linux/1"], "ttl": 60})");
  auto urls = t.json->getArray("urls");
  REQUIRE(urls->size() == 2);
  CHECK(urls->getElement<std::string>(1).find("/appimage/p/linux/1/") != std::string::npos);
  CHECK(s.Put("/dpkg/p/linux/1/a.deb", "deb", t.username, t.password).status == 201);
  CHECK(s.Put("/appimage/p/linux/1/a.AppImage", "img", t.username, t.password).status == 201);
  CHECK(s.Put("/rpm/p/linux/1/a.rpm", "rpm", t.username, t.password).status == 403);
  CHECK(s.Revoke(t.username).status == 200);
  CHECK(s.Put("/dpkg/p/linux/1/b.deb", "deb", t.username, t.password).status == 403);
  CHECK(s.Put("/appimage/p/linux/1/b.AppImage", "img", t.username, t.password).status == 403);
}

TEST_CASE("form bodies and ?format=netrc, as curl sends them", "[integration]") {
  Servers s;
  auto r = s.Request("POST", "/token?format=netrc", "scope=dpkg/p/linux/1&ttl=60",
                     {{"Authorization", s.MasterAuth()}, {"Content-Type", "application/x-www-form-urlencoded"}});
  REQUIRE(r.status == 201);
  CHECK(r.headers["content-type"].rfind("text/plain", 0) == 0);
  std::istringstream in(r.body);
  std::string machine, host, login, user, password_kw, password;
  in >> machine >> host >> login >> user >> password_kw >> password;
  CHECK(machine == "machine");
  CHECK(host == "127.0.0.1");
  CHECK(s.Put("/dpkg/p/linux/1/f", "x", user, password).status == 201);
  auto one = s.Request("GET", "/token/" + user, "", {{"Authorization", s.MasterAuth()}});
  CHECK(one.status == 200);
  CHECK(one.body.find(password) == std::string::npos);
}

TEST_CASE("writes under no live scope are 403 without an error-level log line", "[integration]") {
  Servers s;
  for (int i = 0; i < 5; ++i) {
    CHECK(s.Put("/dpkg/p/linux/" + std::to_string(i) + "/f", "x", "nobody", "x").status == 403);
    CHECK(s.Put("/not/a/valid/scope/../f", "x", "nobody", "x").status == 403);
    CHECK(s.Put("/too/shallow", "x", "nobody", "x").status == 403);
  }
  CHECK(s.ErrorLog().find("[error]") == std::string::npos);
  CHECK(s.ErrorLog().find("[crit]") == std::string::npos);
}

TEST_CASE("nginx and the app agree on scope_depth (one source of truth)", "[integration]") {
  ServerOptions opts;
  opts.scope_depth = 2;
  Servers s(opts);
  CHECK(IssueRaw(s, R"({"scope": "dpkg/p/linux/1"})", s.MasterAuth()).status == 400);
  IssuedToken t = s.Issue(R"({"scope": "dpkg/p"})");
  for (const char* dir : {"/dpkg/p/linux/", "/dpkg/p/linux/1/"}) CHECK(s.Mkcol(dir, t.username, t.password).status == 201);
  CHECK(s.Put("/dpkg/p/linux/1/f", "deep", t.username, t.password).status == 201);
  CHECK(s.Put("/dpkg/f", "shallow", t.username, t.password).status == 403);
  CHECK(s.Put("/dpkg/q/f", "sibling", t.username, t.password).status == 403);
}

TEST_CASE("/token/healthz answers through nginx and make run stops both servers", "[integration]") {
  Servers s;
  auto h = s.Get("/token/healthz");
  CHECK(h.status == 200);
  CHECK(h.headers["content-type"] == "application/json");
  REQUIRE(s.app_pid() > 0);
  REQUIRE(s.nginx_pid() > 0);
  CHECK(::kill(s.app_pid(), 0) == 0);
  CHECK(s.Stop());
  CHECK(::kill(s.app_pid(), 0) != 0);
  CHECK(::kill(s.nginx_pid(), 0) != 0);
}

TEST_CASE("behind a trusted load balancer the client's address counts, not the balancer's", "[integration]") {
  // This test's client on 127.0.0.1 plays the balancer, which appends the
  // address it saw to X-Forwarded-For.
  ServerOptions opts;
  opts.token_rate = "2r/s";
  opts.token_burst = 3;
  opts.trusted_proxies = "127.0.0.1, ::1";
  Servers s(opts);
  auto from = [](const std::string& client) { return std::map<std::string, std::string>{{"X-Forwarded-For", client}}; };
  // The rate limit is per client: one guessing client is slowed down...
  int limited = 0;
  for (int i = 0; i < 12; ++i) {
    auto h = from("203.0.113.9, 198.51.100.7");  // a client-sent entry first, the balancer's last
    h["Authorization"] = Servers::Basic("ci", "guess" + std::to_string(i));
    if (s.Request("POST", "/token", "{}", h).status == 429) ++limited;
  }
  CHECK(limited >= 6);
  // ...while another client behind the same balancer is not.
  auto other = from("198.51.100.8");
  other["Authorization"] = s.MasterAuth();
  other["Content-Type"] = "application/json";
  CHECK(s.Request("POST", "/token", Servers::ScopeBody("dpkg/p/linux/1"), other).status == 201);
  // Metrics stay loopback-only: a remote client through the balancer is refused.
  CHECK(s.Request("GET", "/token/metrics", "", from("198.51.100.8")).status == 403);
  CHECK(s.Get("/token/metrics").status == 200);
  // The audit log names the client (the last address, the one the balancer
  // added; the first could be forged by the client).
  s.Request("GET", "/audit-probe", "", from("203.0.113.9, 198.51.100.7"));
  CHECK(s.WaitForAccessLog(" 198.51.100.7 user=- \"GET /audit-probe\""));
}

TEST_CASE("without trusted proxies X-Forwarded-For is ignored", "[integration]") {
  Servers s;
  CHECK(s.Request("GET", "/token/metrics", "", {{"X-Forwarded-For", "127.0.0.1"}}).status == 200);
  s.Request("GET", "/audit-probe", "", {{"X-Forwarded-For", "198.51.100.7"}});
  REQUIRE(s.WaitForAccessLog("\"GET /audit-probe\""));
  const std::string access = s.AccessLog();
  CHECK(access.find(" 127.0.0.1 user=- \"GET /audit-probe\"") != std::string::npos);
  CHECK(access.find("198.51.100.7") == std::string::npos);
}

TEST_CASE("limit_req slows brute force on /token", "[integration]") {
  ServerOptions opts;
  opts.token_rate = "2r/s";
  opts.token_burst = 3;
  Servers s(opts);
  int limited = 0;
  for (int i = 0; i < 20; ++i) {
    auto r = IssueRaw(s, R"({"scope": "dpkg/p/linux/1"})", Servers::Basic("ci", "guess" + std::to_string(i)));
    if (r.status == 429) ++limited;
    else CHECK(r.status == 401);
  }
  CHECK(limited >= 10);
}

TEST_CASE("the make run banner commands work as printed, and a second run on its port refuses to start",
          "[integration]") {
  Servers s;
  const std::string log = s.AppLog();
  const auto begin = log.find("Try it");
  const auto end = log.find("Ctrl-C stops both servers.");
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  std::istringstream block(log.substr(begin, end - begin));
  std::vector<std::string> commands;
  for (std::string line; std::getline(block, line);) {
    auto first = line.find_first_not_of(' ');
    if (first != std::string::npos && line.compare(first, 5, "curl ") == 0) commands.push_back(line.substr(first));
  }
  REQUIRE(commands.size() == 4);  // issue, upload, download, revoke
  const std::string src = ARTIFACT_SOURCE_DIR;
  const bool netrc_before = std::filesystem::exists(src + "/build.netrc");
  for (const auto& cmd : commands) {
    INFO(cmd);
    CHECK(std::system(("cd '" + src + "' && (" + cmd + ") >/dev/null 2>&1").c_str()) == 0);
  }
  // The upload again, after the revoke: refused, so curl -f fails.
  CHECK(std::system(("cd '" + src + "' && (" + commands[1] + ") >/dev/null 2>&1").c_str()) != 0);
  // The credential file goes to the state directory, not into the checkout.
  CHECK(std::filesystem::exists(s.state_dir() + "/build.netrc"));
  CHECK(std::filesystem::exists(src + "/build.netrc") == netrc_before);

  // A second make run on the same port: a clear refusal, no banner with a
  // credential that would not work there.
  const auto at = log.find("running on http://");
  REQUIRE(at != std::string::npos);
  const std::string listen = log.substr(at + 18, log.find_first_of(" \n", at + 18) - (at + 18));
  const std::string other = s.state_dir() + "-second";
  const std::string run = "ARTIFACT_LISTEN='" + listen + "' ARTIFACT_STATE_DIR='" + other + "' ARTIFACT_BIN='" +
                          ARTIFACT_TOKEN_BIN + "' timeout 20 bash '" + src + "/scripts/run.sh' >'" + other +
                          ".out' 2>&1";
  CHECK(std::system(run.c_str()) != 0);
  const std::string out = artifact::testing::ReadFile(other + ".out");
  CHECK(out.find("already answers") != std::string::npos);
  CHECK(out.find("master credential") == std::string::npos);
  std::filesystem::remove_all(other);
  std::filesystem::remove(other + ".out");
}
