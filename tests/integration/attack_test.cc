// The attack battery: each attempt must be refused with the right status
// AND leave the token and artifact trees exactly as they were.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <catch2/catch.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "integration/server_fixture.h"

using artifact::testing::HttpResponse;
using artifact::testing::IssuedToken;
using artifact::testing::ParseObject;
using artifact::testing::Servers;

namespace {

// A directory outside both trees that no request may touch.
struct Outside {
  std::string dir;
  explicit Outside(const Servers& s) : dir(s.state_dir() + "/../outside") {
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/victim") << "precious";
    if (::geteuid() == 0) (void)::chown(dir.c_str(), 33, 33);  // writable by nginx's workers: the worst case
  }
  std::vector<std::string> List() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) out.push_back(e.path().string());
    return out;
  }
};

}  // namespace

TEST_CASE("URI tricks cannot leave the scope", "[integration][attack]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/4"));
  s.Issue(Servers::ScopeBody("dpkg/p/linux/5"));
  const auto auth = Servers::Basic(t.username, t.password);
  auto before = s.Snapshot();
  const std::string long_name(300, 'a');
  for (const std::string& target : std::vector<std::string>{
           "//dpkg/p/linux/5/f",
           "/dpkg/p/linux/4/./../5/f",
           "/dpkg/p/linux/4/%2e%2e/5/f",
           "/dpkg/p/linux/4%2F..%2F5/f",
           "/dpkg/p/linux/4/..%2f..%2f..%2f..%2f..%2ftokens/x",
           "/dpkg/p/linux/4/%2e%2e/%2e%2e/%2e%2e/%2e%2e/f",
           "/dpkg/p/linux/4./f",
           "/dpkg/p/linux/4../f",
           "/dpkg/p/linux/4/f%00.txt",
           "/dpkg/p/linux/4/f%0a",
           "/dpkg/p/linux/4/f%0d%0aX-Injected:%201",
           "/dpkg/p/linux/4/" + long_name,
           "/dpkg/p/linux/4/.htpasswd",
           "/dpkg/p/linux/4/sub/.git/config",
           "/dpkg/p/linux/4/~user",
           "/dpkg/p/linux/4/a%20b",
           "/dpkg/p/linux/4/%C3%A9",
       }) {
    INFO(target);
    auto r = s.Request("PUT", target, "x", {{"Authorization", auth}});
    CHECK(r.status >= 400);
    CHECK(r.status < 500);
  }
  // Bytes no HTTP client library would send.
  for (const std::string& raw : {std::string("PUT /dpkg/p/linux/4/f\x01 HTTP/1.1\r\nHost: x\r\n"),
                                 std::string("PUT /dpkg/p/linux/4/f\0g HTTP/1.1\r\nHost: x\r\n", 44),
                                 "PUT /dpkg/p/linux/4/" + std::string(20000, 'b') + " HTTP/1.1\r\nHost: x\r\n"}) {
    INFO(raw.substr(0, 40));
    int status = s.RawStatus(raw + "Authorization: " + auth + "\r\nContent-Length: 1\r\n\r\nx");
    CHECK(status >= 400);
    CHECK(status < 500);
  }
  CHECK(s.Snapshot() == before);
}

TEST_CASE("a symlink planted in the tree does not redirect writes", "[integration][attack]") {
  Servers s;
  Outside outside(s);
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/6"));
  const auto auth = Servers::Basic(t.username, t.password);
  // The scope directory itself replaced by a link after the token was issued.
  const std::string scope_dir = s.artifacts_dir() + "/dpkg/p/linux/6";
  std::filesystem::rename(scope_dir, scope_dir + "-real");
  std::filesystem::create_directory_symlink(outside.dir, scope_dir);
  // And a link inside another live scope.
  IssuedToken u = s.Issue(Servers::ScopeBody("dpkg/p/linux/7"));
  const std::string inner = s.artifacts_dir() + "/dpkg/p/linux/7/escape";
  std::filesystem::create_directory_symlink(outside.dir, inner);
  // And one deeper, below a directory the token made.
  const auto uauth = Servers::Basic(u.username, u.password);
  REQUIRE(s.Request("MKCOL", "/dpkg/p/linux/7/a/", "", {{"Authorization", uauth}}).status == 201);
  std::filesystem::create_directory_symlink(outside.dir, s.artifacts_dir() + "/dpkg/p/linux/7/a/b");
  auto before = s.Snapshot();
  auto outside_before = outside.List();

  // nginx finds no real directory to write in: 409, as for a missing one.
  CHECK(s.Put("/dpkg/p/linux/6/f", "x", t.username, t.password).status == 409);
  CHECK(s.Put("/dpkg/p/linux/6/victim", "x", t.username, t.password).status == 409);
  CHECK(s.Request("MKCOL", "/dpkg/p/linux/6/d/", "", {{"Authorization", auth}}).status == 409);
  CHECK(s.Request("DELETE", "/dpkg/p/linux/6/victim", "", {{"Authorization", auth}}).status == 409);
  CHECK(s.Put("/dpkg/p/linux/7/a/b/victim", "x", u.username, u.password).status == 409);
  CHECK(s.Request("MKCOL", "/dpkg/p/linux/7/a/b/c/", "", {{"Authorization", uauth}}).status == 409);
  CHECK(s.Put("/dpkg/p/linux/7/escape/f", "x", u.username, u.password).status == 409);
  CHECK(s.Put("/dpkg/p/linux/7/escape/victim", "x", u.username, u.password).status == 409);
  CHECK(s.Put("/dpkg/p/linux/7/escape/new/f", "x", u.username, u.password).status == 409);
  CHECK(s.Request("MKCOL", "/dpkg/p/linux/7/escape/d/", "", {{"Authorization", uauth}}).status == 409);
  CHECK(s.Request("DELETE", "/dpkg/p/linux/7/escape/victim", "", {{"Authorization", uauth}}).status == 409);
  // A directory DELETE of the link itself: refused, nothing followed.
  CHECK(s.Request("DELETE", "/dpkg/p/linux/7/escape/", "", {{"Authorization", uauth}}).status == 409);
  CHECK(s.Request("DELETE", "/dpkg/p/linux/7/a/b/", "", {{"Authorization", uauth}}).status == 409);
  CHECK(s.Request("DELETE", "/dpkg/p/linux/7/escape/sub/", "", {{"Authorization", uauth}}).status == 409);
  CHECK(s.Request("DELETE", "/dpkg/p/linux/7/", "", {{"Authorization", uauth}}).status == 403);
  CHECK(s.Request("DELETE", "/dpkg/p/linux/6/d/", "", {{"Authorization", auth}}).status == 409);
  // A PUT that would make directories below a link: refused, nothing made.
  CHECK(s.Put("/dpkg/p/linux/7/a/b/new/deeper/f", "x", u.username, u.password).status == 409);
  CHECK(s.Put("/dpkg/p/linux/7/escape/new/deeper/f", "x", u.username, u.password).status == 409);
  CHECK(s.Put("/dpkg/p/linux/6/new/f", "x", t.username, t.password).status == 409);
  // Reads do not follow links either.
  CHECK(s.Get("/dpkg/p/linux/6/victim").status >= 400);
  CHECK(s.Get("/dpkg/p/linux/7/escape/victim").status >= 400);
  CHECK(s.Snapshot() == before);
  CHECK(outside.List() == outside_before);
  std::ifstream in(outside.dir + "/victim");
  std::string content;
  in >> content;
  CHECK(content == "precious");
}

TEST_CASE("COPY and MOVE with a Destination outside the scope are refused", "[integration][attack]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/4"));
  REQUIRE(s.Put("/dpkg/p/linux/4/a", "a", t.username, t.password).status == 201);
  auto before = s.Snapshot();
  for (const char* method : {"COPY", "MOVE"}) {
    for (const char* dest : {"/dpkg/p/linux/5/a", "/dpkg/p/linux/4/../5/a", "http://evil/dpkg/p/linux/5/a"}) {
      auto r = s.Request(method, "/dpkg/p/linux/4/a", "",
                         {{"Authorization", Servers::Basic(t.username, t.password)}, {"Destination", dest}});
      CHECK(r.status == 405);
    }
  }
  CHECK(s.Snapshot() == before);
}

TEST_CASE("malformed basic credentials are refused, for uploads and for masters", "[integration][attack]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/4"));
  auto before = s.Snapshot();
  const std::vector<std::string> auths = {
      Servers::Basic(t.username + ":x", t.password),           // ':' in the username
      Servers::Basic(t.username, t.password + "\n"),           // newline
      Servers::Basic(t.username + "\n" + t.username, t.password),  // a second line
      Servers::Basic(t.username, std::string(6000, 'p')),      // huge password
      "Basic !!!not-base64!!!",
      "Basic " + std::string(7000, 'A'),
      "Basic",
      "Digest username=\"" + t.username + "\"",
  };
  for (const auto& auth : auths) {
    INFO(auth.substr(0, 60));
    auto up = s.Request("PUT", "/dpkg/p/linux/4/f", "x", {{"Authorization", auth}});
    CHECK((up.status == 401 || up.status == 400));
    auto master = s.Request("POST", "/token", R"({"scope": "dpkg/p/linux/9"})",
                            {{"Authorization", auth}, {"Content-Type", "application/json"}});
    CHECK((master.status == 401 || master.status == 400));
  }
  CHECK(s.Snapshot() == before);
}

TEST_CASE("issue bodies cannot inject a second password line or misparse", "[integration][attack]") {
  Servers s;
  auto before = s.Snapshot();
  const auto auth = s.MasterAuth();
  struct Body {
    std::string type, body;
    int status;
  };
  const std::string json = "application/json", form = "application/x-www-form-urlencoded";
  for (const auto& [type, body, status] : std::vector<Body>{
           {json, R"({"scope": "dpkg/p/linux/1", "request_id": "u\nevil:{SSHA}x"})", 400},
           {json, R"({"scope": "dpkg/p/linux/1", "request_id": "u\revil"})", 400},
           {json, R"({"scope": "dpkg/p/linux/1", "request_id": "u:evil"})", 400},
           {json, R"({"scope": "dpkg/p/linux/1\nevil:{SSHA}x"})", 400},
           {json, R"({"scope": "dpkg/p/linux/1:evil"})", 400},
           {json, R"({"scope": "dpkg/p/linux/1", "ttl": "60\nevil"})", 400},
           {json, R"({"scopes": ["dpkg/p/linux/1", "dpkg/p/linux/2;x=y"]})", 400},
           {form, "scope=dpkg/p/linux/1&request_id=u%0Aevil%3A%7BSSHA%7Dx", 400},
           {form, "scope=dpkg/p/linux/1%0Aevil", 400},
           {form, "scope=dpkg/p/linux/1&ttl=60%0A", 400},
           {json, R"({"scope": "dpkg/p/linux/1", "scope": "dpkg/p/linux/2"})", 400},
           {json, R"({"scope": "dpkg/p/linux/1", "ttl": 5, "ttl": 99999})", 400},
           {json, std::string(500, '[') + std::string(500, ']'), 400},
           {json, R"({"scope": 42})", 400},
           {json, R"({"scope": ["dpkg/p/linux/1"]})", 400},
           {json, R"({"scope": "dpkg/p/linux/1", "ttl": 1e9})", 400},
           {json, R"({"scope": "dpkg/p/lin)", 400},
           {json, std::string(100 * 1024, ' ') + "{}", 413},
           {json, "{\"scope\": \"" + std::string(10 * 1024 * 1024, 'a') + "\"}", 413},
           {"text/xml", "<scope/>", 415},
       }) {
    INFO(type << " " << body.substr(0, 80));
    auto r = s.Request("POST", "/token", body, {{"Authorization", auth}, {"Content-Type", type}});
    CHECK(r.status == status);
    // The app's 413 (over 64 KiB) and nginx's (over 1m) say the same.
    if (status == 413) CHECK(ParseObject(r.body)->getValue<std::string>("error") == "payload_too_large");
  }
  // A Content-Length shorter than the body: the app sees a truncated body.
  CHECK(s.RawStatus("POST /token HTTP/1.1\r\nHost: x\r\nAuthorization: " + auth +
                    "\r\nContent-Type: application/json\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
                    "{\"scope\": \"dpkg/p/linux/1\"}") == 400);
  CHECK(s.Snapshot() == before);
}

TEST_CASE("unknown methods and routes", "[integration][attack]") {
  Servers s;
  auto before = s.Snapshot();
  CHECK(s.Request("BREW", "/dpkg/p/linux/4/f").status == 405);
  CHECK(s.Request("PATCH", "/token", "", {{"Authorization", s.MasterAuth()}}).status == 405);
  CHECK(s.Request("GET", "/token/a/b/c", "", {{"Authorization", s.MasterAuth()}}).status == 404);
  CHECK(s.Request("GET", "/token/../etc/passwd").status >= 400);
  CHECK(s.Request("GET", "/tokenx").status == 404);
  CHECK(s.Snapshot() == before);
}

TEST_CASE("directories made by a PUT and deleted by DELETE stay inside the scope", "[integration][attack]") {
  Servers s;
  Outside outside(s);
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/7"));
  IssuedToken other = s.Issue(Servers::ScopeBody("dpkg/p/linux/8"));
  const auto auth = Servers::Basic(t.username, t.password);
  REQUIRE(s.Put("/dpkg/p/linux/7/file", "f", t.username, t.password).status == 201);
  REQUIRE(s.Put("/dpkg/p/linux/8/d/keep", "k", other.username, other.password).status == 201);
  auto before = s.Snapshot();
  auto outside_before = outside.List();
  struct Attempt {
    std::string method, target, auth;
    int status;
  };
  for (const auto& [method, target, with, status] : std::vector<Attempt>{
           {"PUT", "/dpkg/p/linux/8/new/f", auth, 401},             // another build's directories
           {"PUT", "/dpkg/p/linux/7/new/f", "", 401},               // no credentials
           {"PUT", "/dpkg/p/linux/7/new/f", Servers::Basic(t.username, "x"), 401},
           {"PUT", "/dpkg/p/linux/9/new/f", auth, 403},             // a build without a token
           {"PUT", "/dpkg/p/linux/7/file/sub/f", auth, 409},        // a file on the way
           {"PUT", "/dpkg/p/linux/7/a/../../8/new/f", auth, 401},   // dot segments land in build 8
           {"PUT", "/dpkg/p/linux/7/a/%2e%2e/%2e%2e/8/new/f", auth, 401},
           {"PUT", "/dpkg/p/linux/7/.new/f", auth, 404},            // hidden
           {"DELETE", "/dpkg/p/linux/8/d/", auth, 401},             // another build's directory
           {"DELETE", "/dpkg/p/linux/7/a/../../8/d/", auth, 401},
           {"DELETE", "/dpkg/p/linux/8/d/", "", 401},
           {"DELETE", "/dpkg/p/linux/7/", auth, 403},                // the build itself
           {"DELETE", "/dpkg/p/linux/", auth, 403},                  // its parents
           {"DELETE", "/dpkg/", auth, 403},
           {"DELETE", "/dpkg/p/linux/7/file/", auth, 409},          // a file, as a directory
           {"DELETE", "/dpkg/p/linux/7/.incoming/", auth, 404},
           // The app's side of both, which only nginx may call.
           {"GET", "/token/tree/mkdirs", auth, 404},
           {"DELETE", "/token/tree/delete", auth, 404},
           {"DELETE", "/token/tree/delete/dpkg/p/linux/8/d/", auth, 404},
       }) {
    INFO(method << " " << target);
    std::map<std::string, std::string> headers;
    if (!with.empty()) headers["Authorization"] = with;
    CHECK(s.Request(method, target, method == "PUT" ? "x" : "", headers).status == status);
  }
  CHECK(s.Snapshot() == before);

  // A directory holding a link to the outside: the link goes, the outside stays.
  REQUIRE(s.Put("/dpkg/p/linux/7/made/deeper/f", "x", t.username, t.password).status == 201);
  std::filesystem::create_directory_symlink(outside.dir, s.artifacts_dir() + "/dpkg/p/linux/7/made/deeper/link");
  std::filesystem::create_symlink(outside.dir + "/victim", s.artifacts_dir() + "/dpkg/p/linux/7/made/victim");
  CHECK(s.Request("DELETE", "/dpkg/p/linux/7/made/", "", {{"Authorization", auth}}).status == 204);
  CHECK_FALSE(std::filesystem::exists(std::filesystem::symlink_status(s.artifacts_dir() + "/dpkg/p/linux/7/made")));
  CHECK(outside.List() == outside_before);
  std::ifstream in(outside.dir + "/victim");
  std::string content;
  in >> content;
  CHECK(content == "precious");
  CHECK(s.Snapshot() == before);
}

TEST_CASE("a part of a method is 405 on every /token route, through nginx", "[integration][attack]") {
  // curl -X LETE once revoked a token: the app matched methods by substring.
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/4"));
  const std::string master = s.MasterAuth();
  const std::vector<std::pair<std::string, std::string>> routes = {
      {"/token", "GET, POST"},
      {"/token/" + t.username, "GET, DELETE"},
      {"/token/" + t.username + "/renew", "POST"},
      {"/token/" + t.username + "/seal", "GET"},
      {"/token/healthz", "GET, HEAD"},
      {"/token/metrics", "GET, HEAD"}};
  auto before = s.Snapshot();
  for (const auto& [path, allow] : routes) {
    for (const char* method : {"LETE", "GE", "T", "E", "ELETE", "POS", "OST", "DELET", "GETS"}) {
      INFO(method << " " << path);
      // Without a body: with one, nginx refuses these methods itself (413,
      // request_body_test.cc) and the app's comparison is never reached.
      auto r = s.Request(method, path, "", {{"Authorization", master}, {"Content-Type", "application/json"}});
      CHECK(r.status == 405);
      CHECK(r.headers["allow"] == allow);
      CHECK(ParseObject(r.body)->getValue<std::string>("error") == "method_not_allowed");
    }
  }
  CHECK(s.Snapshot() == before);
  // The token is as it was: listed, and it still uploads.
  CHECK(s.Request("GET", "/token/" + t.username, "", {{"Authorization", master}}).status == 200);
  CHECK(s.Put("/dpkg/p/linux/4/f", "x", t.username, t.password).status == 201);
}
