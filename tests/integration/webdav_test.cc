// WebDAV reads for everyone (PROPFIND Depth 0/1, OPTIONS) and refusals that
// say why, on the shipped nginx site with the dav_ext module.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>

#include "integration/server_fixture.h"

using artifact::testing::HttpResponse;
using artifact::testing::IssuedToken;
using artifact::testing::ParseObject;
using artifact::testing::Servers;

namespace {

// The hrefs of a 207 Multi-Status body, in order.
std::vector<std::string> Hrefs(const std::string& body) {
  std::vector<std::string> out;
  static const std::regex href("<D:href>([^<]*)</D:href>");
  for (std::sregex_iterator it(body.begin(), body.end(), href), end; it != end; ++it) out.push_back((*it)[1]);
  return out;
}

HttpResponse Propfind(const Servers& s, const std::string& target, const std::string& depth,
                      const std::string& body = "") {
  std::map<std::string, std::string> headers;
  if (!depth.empty()) headers["Depth"] = depth;
  return s.Request("PROPFIND", target, body, headers);
}

}  // namespace

TEST_CASE("PROPFIND Depth 0 and 1 and OPTIONS are public, Depth infinity is refused", "[integration][webdav]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/1"));
  REQUIRE(s.Put("/dpkg/p/linux/1/pkg.deb", "deb", t.username, t.password).status == 201);
  REQUIRE(s.Mkcol("/dpkg/p/linux/1/logs/", t.username, t.password).status == 201);
  REQUIRE(s.Put("/dpkg/p/linux/1/logs/build.log", "log", t.username, t.password).status == 201);
  // Hidden entries (the app's .latest, nginx's .incoming) and a link planted
  // in the volume to a directory outside it.
  const std::string outside = s.state_dir() + "/../outside";
  std::filesystem::create_directories(outside);
  std::ofstream(outside + "/victim") << "secret";
  std::ofstream(s.artifacts_dir() + "/dpkg/p/linux/1/.hidden") << "h";
  std::filesystem::create_directory_symlink(outside, s.artifacts_dir() + "/dpkg/p/linux/1/escape");
  auto before = s.Snapshot();

  auto options = s.Request("OPTIONS", "/dpkg/p/linux/1/");
  CHECK(options.status == 200);
  CHECK(options.headers["dav"] == "1");
  CHECK(options.headers["allow"].find("PROPFIND") != std::string::npos);

  auto zero = Propfind(s, "/dpkg/p/linux/1/", "0");
  CHECK(zero.status == 207);
  CHECK(Hrefs(zero.body) == std::vector<std::string>{"/dpkg/p/linux/1/"});

  auto one = Propfind(s, "/dpkg/p/linux/1/", "1");
  CHECK(one.status == 207);
  auto hrefs = Hrefs(one.body);
  std::sort(hrefs.begin(), hrefs.end());
  // One level: the build, its file and directory (and the planted link's
  // name, as autoindex shows it), never a hidden entry or anything deeper.
  CHECK(hrefs == std::vector<std::string>{"/dpkg/p/linux/1/", "/dpkg/p/linux/1/escape/",
                                          "/dpkg/p/linux/1/logs/", "/dpkg/p/linux/1/pkg.deb"});
  CHECK(one.body.find("<D:getcontentlength>3</D:getcontentlength>") != std::string::npos);
  auto root = Propfind(s, "/", "1");
  CHECK(root.status == 207);
  CHECK(root.body.find(".incoming") == std::string::npos);
  CHECK(Propfind(s, "/dpkg/p/linux/1/pkg.deb", "0").status == 207);

  // Depth infinity in any spelling: 403 with the reason; other depths 400.
  for (const char* depth : {"infinity", "Infinity", "INFINITY"}) {
    auto r = Propfind(s, "/dpkg/p/linux/1/", depth);
    CHECK(r.status == 403);
    CHECK(ParseObject(r.body)->getValue<std::string>("error") == "depth_infinity");
  }
  CHECK(Propfind(s, "/dpkg/p/linux/1/", "2").status == 400);

  // Never through a symlink, never a hidden name.
  CHECK(Propfind(s, "/dpkg/p/linux/1/escape/", "1").status == 404);
  CHECK(Propfind(s, "/dpkg/p/linux/1/escape/victim", "0").status == 404);
  CHECK(Propfind(s, "/dpkg/p/linux/1/.hidden", "0").status == 404);
  CHECK(Propfind(s, "/.incoming/", "1").status == 404);
  // A body larger than a PROPFIND needs is refused before nginx reads it.
  auto big = Propfind(s, "/", "1", std::string(20000, ' '));
  CHECK(big.status == 413);
  CHECK(ParseObject(big.body)->getValue<std::string>("error") == "propfind_body");
  // A PROPFIND with a real body (rclone asks for named properties).
  auto named = Propfind(s, "/dpkg/p/linux/1/", "1",
                        "<?xml version=\"1.0\"?><d:propfind xmlns:d=\"DAV:\"><d:prop><d:getcontentlength/>"
                        "<d:resourcetype/></d:prop></d:propfind>");
  CHECK(named.status == 207);
  CHECK(Hrefs(named.body).size() == 4);
  CHECK(s.Snapshot() == before);

  // A sealed build is listed like any other.
  REQUIRE(s.Revoke(t.username).status == 200);
  auto sealed = Propfind(s, "/dpkg/p/linux/1/", "1");
  CHECK(sealed.status == 207);
  CHECK(sealed.body.find("/dpkg/p/linux/1/SHA256SUMS") != std::string::npos);
}

TEST_CASE("every refusal says why in the API's JSON error shape", "[integration][webdav]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/1"));
  IssuedToken other = s.Issue(Servers::ScopeBody("dpkg/p/linux/2"));
  IssuedToken gone = s.Issue(Servers::ScopeBody("dpkg/p/linux/3"));
  REQUIRE(s.Revoke(gone.username).status == 200);
  REQUIRE(s.Mkcol("/dpkg/p/linux/1/d/", t.username, t.password).status == 201);
  REQUIRE(s.Put("/dpkg/p/linux/1/file", "f", t.username, t.password).status == 201);
  const auto auth = Servers::Basic(t.username, t.password);
  struct Case {
    std::string method, target, auth;
    int status;
    std::string error, says;  // the error code and a part of the message
  };
  const std::vector<Case> cases = {
      {"PUT", "/dpkg/p/linux/3/f", Servers::Basic(gone.username, gone.password), 403, "no_live_token",
       "revoked or has expired"},
      {"PUT", "/dpkg/p/linux/3/f", auth, 403, "no_live_token", "dpkg/p/linux/3"},
      {"PUT", "/dpkg/p/linux/2/f", auth, 401, "unauthorized", "another build"},
      {"PUT", "/dpkg/p/linux/1/f", "", 401, "unauthorized", "POST /token"},
      {"PUT", "/dpkg/p/f", auth, 403, "outside_build", "inside a build directory"},
      {"PUT", "/f", auth, 403, "outside_build", "inside a build directory"},
      {"PUT", "/dpkg/p/linux/1", auth, 403, "build_root", "below it"},
      {"DELETE", "/dpkg/p/linux/1/", auth, 403, "build_root", "below it"},
      {"PUT", "/dpkg/p/linux/1/a%20b", auth, 403, "name_not_allowed", "[A-Za-z0-9_+][A-Za-z0-9._+~-]{0,254}"},
      {"PUT", "/dpkg/p/linux/1/caf%C3%A9", auth, 403, "name_not_allowed", "ASCII"},
      {"PUT", "/dpkg/p/linux/1/.hidden", auth, 404, "hidden", "dot"},
      {"GET", "/dpkg/p/linux/1/.hidden", "", 404, "hidden", "dot"},
      {"MKCOL", "/dpkg/p/linux/1/no/such/", auth, 409, "parent_missing", "MKCOL"},
      {"PUT", "/dpkg/p/linux/1/file/sub/f", auth, 409, "parent_blocked", "a file or a symlink"},
      {"DELETE", "/dpkg/p/linux/1/file/", auth, 409, "conflict", "not a real directory"},
      {"DELETE", "/dpkg/p/linux/1/none/", auth, 404, "not_found", "does not exist"},
      {"MKCOL", "/dpkg/p/linux/1/e", auth, 409, "mkcol_slash", "slash"},
      {"MKCOL", "/dpkg/p/linux/1/d/", auth, 405, "method_not_allowed", "exists"},
      {"PUT", "/dpkg/p/linux/1/d", auth, 409, "conflict", "directory"},
      {"COPY", "/dpkg/p/linux/1/f", auth, 405, "method", "PUT"},
      {"GET", "/dpkg/p/linux/1/missing", "", 404, "not_found", "no such file"},
  };
  for (const auto& c : cases) {
    INFO(c.method << " " << c.target);
    std::map<std::string, std::string> headers;
    if (!c.auth.empty()) headers["Authorization"] = c.auth;
    auto r = s.Request(c.method, c.target, c.method == "PUT" ? "x" : "", headers);
    CHECK(r.status == c.status);
    CHECK(r.headers["content-type"] == "application/json");
    INFO(r.body);
    auto json = ParseObject(r.body);
    CHECK(json->getValue<std::string>("error") == c.error);
    CHECK(json->getValue<std::string>("message").find(c.says) != std::string::npos);
  }
  // A 401 still asks for basic auth, whatever its body.
  auto unauth = s.Put("/dpkg/p/linux/1/f", "x", t.username, "wrong");
  CHECK(unauth.headers["www-authenticate"] == "Basic realm=\"artifact-repository\"");
  // The app's own answers on /token are left as they are.
  auto api = s.Request("DELETE", "/token/nobody", "", {{"Authorization", s.MasterAuth()}});
  CHECK(api.status == 404);
  CHECK(ParseObject(api.body)->getValue<std::string>("error") == "not_found");
}
