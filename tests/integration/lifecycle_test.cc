// The build lifecycle on real servers: JSON listings, sealing with
// SHA256SUMS, latest, metrics and the audit trail.
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <catch2/catch.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "integration/server_fixture.h"

using artifact::testing::HttpResponse;
using artifact::testing::ParseObject;
using artifact::testing::IssuedToken;
using artifact::testing::RandomBytes;
using artifact::testing::Servers;
using artifact::testing::Sha256Hex;

TEST_CASE("directory listings as JSON, parsed by a JSON parser", "[integration][lifecycle]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/1"));
  REQUIRE(s.Put("/dpkg/p/linux/1/a.deb", "12345", t.username, t.password).status == 201);
  REQUIRE(s.Mkcol("/dpkg/p/linux/1/sub/", t.username, t.password).status == 201);
  REQUIRE(s.Put("/dpkg/p/linux/1/sub/b.log", "x", t.username, t.password).status == 201);
  auto r = s.Get("/dpkg/p/linux/1/?format=json");
  REQUIRE(r.status == 200);
  CHECK(r.headers["content-type"].find("json") != std::string::npos);
  Poco::JSON::Parser p;
  auto list = p.parse(r.body).extract<Poco::JSON::Array::Ptr>();
  REQUIRE(list->size() == 2);
  std::map<std::string, Poco::JSON::Object::Ptr> entries;
  for (size_t i = 0; i < list->size(); ++i) {
    auto e = list->getObject(static_cast<unsigned>(i));
    entries[e->getValue<std::string>("name")] = e;
  }
  REQUIRE(entries.count("a.deb") == 1);
  CHECK(entries["a.deb"]->getValue<std::string>("type") == "file");
  CHECK(entries["a.deb"]->getValue<int>("size") == 5);
  // RFC 3339 UTC, as the API writes times (2026-01-02T03:04:05Z).
  CHECK(std::regex_match(entries["a.deb"]->getValue<std::string>("mtime"),
                         std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")));
  CHECK(entries["sub"]->getValue<std::string>("type") == "directory");
  // The root too; the internal location is not reachable from outside.
  CHECK(s.Get("/?format=json").status == 200);
  CHECK(s.Get("/.json/dpkg/").status == 404);
  // HTML stays the default: the build browser's page (tests/integration/browser_test.cc).
  auto page = s.Get("/dpkg/p/linux/1/");
  CHECK(page.headers["content-type"] == "text/html; charset=utf-8");
  CHECK(page.body.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(page.body.find("href=\"a.deb\"") != std::string::npos);
}

TEST_CASE("revoke seals the build: sha256sum -c passes on the downloaded build", "[integration][lifecycle]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/7"));
  const std::string base = "/dpkg/p/linux/7";
  const std::map<std::string, std::string> files = {
      {"pkg_1.0_amd64.deb", RandomBytes(300000)},
      {"logs/build.log", "log line\n"},
      {"deep/er/x.bin", RandomBytes(1000)},
  };
  for (const char* dir : {"/logs/", "/deep/", "/deep/er/"}) REQUIRE(s.Mkcol(base + dir, t.username, t.password).status == 201);
  for (const auto& [name, data] : files) REQUIRE(s.Put(base + "/" + name, data, t.username, t.password).status == 201);
  // Stated checksums: one right, one wrong.
  REQUIRE(s.Put(base + "/pkg_1.0_amd64.deb.sha256", Sha256Hex(files.at("pkg_1.0_amd64.deb")) + "  pkg_1.0_amd64.deb\n",
                t.username, t.password)
              .status == 201);
  REQUIRE(s.Put(base + "/deep/er/x.bin.sha256", std::string(64, '0') + "\n", t.username, t.password).status == 201);

  auto r = s.Revoke(t.username);
  REQUIRE(r.status == 200);
  auto j = ParseObject(r.body);
  CHECK(j->getValue<std::string>("state") == "done");
  CHECK(j->getValue<int>("files") == 5);
  CHECK(j->getValue<int64_t>("bytes") == 300000 + 9 + 1000 + 64 + 2 + 17 + 1 + 65);
  auto mismatches = j->getArray("mismatches");
  REQUIRE(mismatches->size() == 1);
  CHECK(mismatches->getElement<std::string>(0) == "dpkg/p/linux/7/deep/er/x.bin");
  CHECK(s.WaitForAppLog("seal master=ci username=" + t.username + " files=5"));

  // Download everything into a fresh directory and let coreutils check it.
  auto sums = s.Get(base + "/SHA256SUMS");
  REQUIRE(sums.status == 200);
  const std::string dir = s.state_dir() + "/../download";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/SHA256SUMS", std::ios::binary) << sums.body;
  std::istringstream lines(sums.body);
  std::string digest, name;
  int listed = 0;
  while (lines >> digest >> name) {
    ++listed;
    auto got = s.Get(base + "/" + name);
    REQUIRE(got.status == 200);
    std::filesystem::create_directories(std::filesystem::path(dir + "/" + name).parent_path());
    std::ofstream(dir + "/" + name, std::ios::binary) << got.body;
  }
  CHECK(listed == 5);
  CHECK(std::system(("cd '" + dir + "' && sha256sum --quiet -c SHA256SUMS").c_str()) == 0);
  // And it does catch a corrupted file.
  std::ofstream(dir + "/logs/build.log", std::ios::binary) << "tampered\n";
  CHECK(std::system(("cd '" + dir + "' && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1").c_str()) != 0);

  // The seal status stays readable for the issuing master only.
  CHECK(s.Request("GET", "/token/" + t.username + "/seal", "", {{"Authorization", s.MasterAuth()}}).status == 200);
  s.AddMaster("other", "other-pw");
  CHECK(s.Request("GET", "/token/" + t.username + "/seal", "", {{"Authorization", Servers::Basic("other", "other-pw")}})
            .status == 404);
}

TEST_CASE("a 1 GiB build is sealed in the background while the app keeps answering", "[integration][lifecycle]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/big/linux/1"));
  std::string gib(1 << 30, '\0');
  for (size_t i = 0; i < gib.size(); i += 4096) gib[i] = static_cast<char>(i / 4096);
  REQUIRE(s.Put("/dpkg/big/linux/1/big.img", gib, t.username, t.password).status == 201);
  const std::string expected = Sha256Hex(gib);
  gib.clear();
  gib.shrink_to_fit();

  auto r = s.Revoke(t.username);
  REQUIRE(r.status == 202);
  CHECK(r.headers["location"] == "/token/" + t.username + "/seal");
  CHECK(ParseObject(r.body)->getValue<std::string>("state") == "running");
  // While it hashes, other requests are answered at once.
  auto start = std::chrono::steady_clock::now();
  CHECK(s.Get("/token/healthz").status == 200);
  IssuedToken other = s.Issue(Servers::ScopeBody("dpkg/big/linux/2"));
  auto took = std::chrono::steady_clock::now() - start;
  auto mid = ParseObject(s.Request("GET", "/token/" + t.username + "/seal", "", {{"Authorization", s.MasterAuth()}}).body);
  CHECK(mid->getValue<std::string>("state") == "running");  // so the timing above means something
  CHECK(took < std::chrono::milliseconds(500));

  std::string state;
  Poco::JSON::Object::Ptr done;
  for (int i = 0; i < 1200 && state != "done"; ++i) {  // bounded: 120 s
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    done = ParseObject(s.Request("GET", "/token/" + t.username + "/seal", "", {{"Authorization", s.MasterAuth()}}).body);
    state = done->getValue<std::string>("state");
  }
  REQUIRE(state == "done");
  CHECK(done->getValue<int64_t>("bytes") == (int64_t{1} << 30));
  auto sums = s.Get("/dpkg/big/linux/1/SHA256SUMS");
  CHECK(sums.body == expected.substr(0, 64) + "  big.img\n");
  CHECK(s.Revoke(other.username, "?seal=false").status == 204);
}

TEST_CASE("latest follows successful seals only and cannot escape", "[integration][lifecycle]") {
  Servers s;
  auto publish = [&](const std::string& build, const std::string& result) {
    IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/" + build));
    REQUIRE(s.Put("/dpkg/p/linux/" + build + "/app.txt", "build " + build, t.username, t.password).status == 201);
    REQUIRE(s.Revoke(t.username, "?result=" + result).status == 200);
  };
  CHECK(s.Get("/dpkg/p/linux/latest/app.txt").status == 404);  // nothing sealed yet
  publish("9", "success");
  auto r = s.Get("/dpkg/p/linux/latest/app.txt");
  CHECK(r.status == 302);
  CHECK(r.headers["location"].find("/dpkg/p/linux/9/app.txt") != std::string::npos);
  publish("10", "failure");  // a failed build never becomes latest
  CHECK(s.Get("/dpkg/p/linux/latest/app.txt").headers["location"].find("/dpkg/p/linux/9/") != std::string::npos);
  // A build started before 11 and finishing after it does not move latest
  // back: builds order by when their first token was issued (builds.h).
  IssuedToken slow = s.Issue(Servers::ScopeBody("dpkg/p/linux/slow"));
  REQUIRE(s.Put("/dpkg/p/linux/slow/app.txt", "slow", slow.username, slow.password).status == 201);
  publish("11", "success");
  CHECK(s.Get("/dpkg/p/linux/latest/").headers["location"].find("/dpkg/p/linux/11/") != std::string::npos);
  REQUIRE(s.Revoke(slow.username).status == 200);
  CHECK(s.Get("/dpkg/p/linux/latest/").headers["location"].find("/dpkg/p/linux/11/") != std::string::npos);
  publish("8", "success");  // started last: newest, whatever its name says
  CHECK(s.Get("/dpkg/p/linux/latest/").headers["location"].find("/dpkg/p/linux/8/") != std::string::npos);
  // No build may be called latest, and a tampered pointer leads nowhere.
  CHECK(s.Request("POST", "/token", R"({"scope": "dpkg/p/linux/latest"})",
                  {{"Authorization", s.MasterAuth()}, {"Content-Type", "application/json"}})
            .status == 400);
  std::ofstream(s.artifacts_dir() + "/dpkg/p/linux/.latest", std::ios::trunc) << "../../../../etc\n";
  CHECK(s.Get("/dpkg/p/linux/latest/passwd").status == 404);
  CHECK(s.Get("/dpkg/p/linux/.latest").status == 404);  // never served
}

TEST_CASE("metrics count events and the audit trail names who uploaded what", "[integration][lifecycle]") {
  artifact::testing::ServerOptions opts;
  opts.app_processes = 4;  // the counters add up across the serve processes
  Servers s(opts);
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/1"));
  REQUIRE(s.Put("/dpkg/p/linux/1/pkg.deb", "deb", t.username, t.password).status == 201);
  REQUIRE(s.Revoke(t.username).status == 200);
  CHECK(s.Request("POST", "/token", "{}", {{"Authorization", Servers::Basic("ci", "wrong")},
                                           {"Content-Type", "application/json"}})
            .status == 401);
  auto m = s.Get("/token/metrics");
  REQUIRE(m.status == 200);
  CHECK(m.headers["content-type"].rfind("text/plain", 0) == 0);
  auto value = [&](const std::string& series) {
    auto pos = m.body.find("\n" + series + " ");
    REQUIRE(pos != std::string::npos);
    return std::stod(m.body.substr(pos + series.size() + 2));
  };
  CHECK(value("artifact_tokens_issued_total") == 1);
  CHECK(value("artifact_tokens_revoked_total") == 1);
  CHECK(value("artifact_seals_total") == 1);
  CHECK(value("artifact_seal_bytes_total") == 3);
  CHECK(value("artifact_refusals_total{reason=\"unauthorized\"}") == 1);
  CHECK(value("artifact_live_tokens") == 0);
  // Per-host state never lives on the shared tokens volume: a mapped file
  // there dies of SIGBUS when the volume errors (GlusterFS), and nodes with
  // one hostname would share it.
  CHECK_FALSE(std::filesystem::exists(s.tokens_dir() + "/.metrics"));

  // Who uploaded pkg.deb, from which build: the access log names the token,
  // the app's log names its master and scope.
  CHECK(s.WaitForAccessLog("user=" + t.username + " \"PUT /dpkg/p/linux/1/pkg.deb\" status=201"));
  CHECK(s.AppLog().find("issue master=ci username=" + t.username + " scopes=dpkg/p/linux/1") != std::string::npos);
  CHECK(s.AccessLog().find(t.password) == std::string::npos);
}

TEST_CASE("retention removes old builds but never a pinned or live one", "[integration][lifecycle]") {
  Servers s;
  for (int b = 1; b <= 5; ++b) {
    IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/" + std::to_string(b)));
    REQUIRE(s.Put("/dpkg/p/linux/" + std::to_string(b) + "/f", "x", t.username, t.password).status == 201);
    if (b == 1) REQUIRE(s.Put("/dpkg/p/linux/1/KEEP", "release 1.0", t.username, t.password).status == 201);
    REQUIRE(s.Revoke(t.username).status == 200);
  }
  IssuedToken live = s.Issue(Servers::ScopeBody("dpkg/p/linux/6"));  // still uploading
  const std::string rules = "--retention 'dpkg/:keep=2'";
  auto dry = s.Cli("retention --dry-run " + rules);
  INFO(dry.out);
  CHECK(dry.exit_code == 0);
  CHECK(dry.out.find("would remove 3 of 6 builds in 1 builders") != std::string::npos);
  CHECK(s.Get("/dpkg/p/linux/2/f").status == 200);

  auto real = s.Cli("retention " + rules);
  CHECK(real.exit_code == 0);
  for (const char* gone : {"2", "3", "4"}) {
    CHECK(real.out.find(std::string("removed dpkg/p/linux/") + gone + "\n") != std::string::npos);
    CHECK(s.Get(std::string("/dpkg/p/linux/") + gone + "/f").status == 404);
  }
  CHECK(s.Get("/dpkg/p/linux/1/f").status == 200);  // pinned
  CHECK(s.Get("/dpkg/p/linux/5/f").status == 200);  // among the 2 newest
  CHECK(s.Put("/dpkg/p/linux/6/g", "y", live.username, live.password).status == 201);  // live
  CHECK(s.Get("/dpkg/p/linux/latest/f").headers["location"].find("/dpkg/p/linux/5/f") != std::string::npos);
  CHECK(s.Cli("retention --retention 'dpkg/:keep=x'").exit_code == 2);
}
