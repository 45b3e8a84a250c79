// The names the seal writes at a build's root (SHA256SUMS) belong to the
// server: a token holder can neither upload one to be trusted nor block the
// seal with a directory of that name. Deeper in the build the name is free.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "integration/server_fixture.h"

using artifact::testing::IssuedToken;
using artifact::testing::ParseObject;
using artifact::testing::Servers;
using artifact::testing::ServerOptions;

namespace {

// The request is refused with 403 and the reason for the seal's names.
void CheckRefusedAsSealName(const Servers& s, const std::string& method, const std::string& target,
                            const std::string& auth) {
  INFO(method << " " << target);
  auto r = s.Request(method, target, method == "PUT" ? "forged" : "", {{"Authorization", auth}});
  CHECK(r.status == 403);
  CHECK(r.headers["content-type"] == "application/json");
  INFO(r.body);
  const bool is_json = r.body.rfind('{', 0) == 0;
  CHECK(is_json);
  if (!is_json) return;
  auto json = ParseObject(r.body);
  CHECK(json->getValue<std::string>("error") == "seal_name");
  CHECK(json->getValue<std::string>("message").find("SHA256SUMS is written by the server when the build is sealed") !=
        std::string::npos);
}

}  // namespace

TEST_CASE("a token cannot write SHA256SUMS at its build's root but can deeper", "[integration][attack]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/8"));
  const auto auth = Servers::Basic(t.username, t.password);
  const std::string base = "/dpkg/p/linux/8";
  REQUIRE(s.Put(base + "/pkg.deb", "deb", t.username, t.password).status == 201);
  const auto before = s.Snapshot();
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"PUT", "/SHA256SUMS"},
           {"MKCOL", "/SHA256SUMS/"},
           {"MKCOL", "/SHA256SUMS"},
           {"PUT", "/SHA256SUMS/pkg.deb"},
           {"MKCOL", "/SHA256SUMS/sub/"},
           {"DELETE", "/SHA256SUMS"},
           {"DELETE", "/SHA256SUMS/"},
       }) {
    CheckRefusedAsSealName(s, method, base + path, auth);
  }
  CHECK(s.Snapshot() == before);
  CHECK_FALSE(std::filesystem::exists(s.artifacts_dir() + base + "/SHA256SUMS"));

  // The same name deeper in the build, or merely alike, is the build's own.
  CHECK(s.Put(base + "/a/b/SHA256SUMS", "nested", t.username, t.password).status == 201);
  CHECK(s.Mkcol(base + "/a/SHA256SUMS/", t.username, t.password).status == 201);
  CHECK(s.Put(base + "/SHA256SUMS.asc", "signature", t.username, t.password).status == 201);
  CHECK(s.Request("DELETE", base + "/a/b/SHA256SUMS", "", {{"Authorization", auth}}).status == 204);
  CHECK(s.Put(base + "/a/b/SHA256SUMS", "nested", t.username, t.password).status == 201);

  // The seal writes its own, and everyone reads it.
  auto revoked = s.Revoke(t.username);
  REQUIRE(revoked.status == 200);
  CHECK(ParseObject(revoked.body)->getValue<std::string>("state") == "done");
  auto sums = s.Get(base + "/SHA256SUMS");
  CHECK(sums.status == 200);
  CHECK(sums.body.find("  pkg.deb\n") != std::string::npos);
  CHECK(sums.body.find("  a/b/SHA256SUMS\n") != std::string::npos);
  CHECK(sums.body.find("forged") == std::string::npos);
}

TEST_CASE("the seal's names follow scope_depth from the nginx map", "[integration][attack]") {
  ServerOptions opts;
  opts.scope_depth = 2;
  Servers s(opts);
  IssuedToken t = s.Issue(R"({"scope": "dpkg/p"})");
  const auto auth = Servers::Basic(t.username, t.password);
  CheckRefusedAsSealName(s, "PUT", "/dpkg/p/SHA256SUMS", auth);
  CheckRefusedAsSealName(s, "MKCOL", "/dpkg/p/SHA256SUMS/", auth);
  // Where a depth-4 build's root would be is just a directory of this build.
  CHECK(s.Put("/dpkg/p/linux/1/SHA256SUMS", "nested", t.username, t.password).status == 201);
}
