#include <Poco/Base64Encoder.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <catch2/catch.hpp>
#include <crypt.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "api.h"
#include "unit/hooked_disk.h"
#include "unit/tar_builder.h"
#include "unit/test_support.h"

using artifact::Api;
using artifact::Request;
using artifact::Response;
using namespace artifact::testing;

namespace {

std::string Basic(const std::string& user, const std::string& password) {
  std::ostringstream out;
  Poco::Base64Encoder enc(out);
  enc.rdbuf()->setLineLength(0);
  enc << user << ":" << password;
  enc.close();
  return "Basic " + out.str();
}

std::string Bcrypt(const std::string& password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  REQUIRE(crypt_gensalt_rn("$2y$", 4, nullptr, 0, salt, sizeof salt) != nullptr);
  struct crypt_data data {};
  return crypt_r(password.c_str(), salt, &data);
}

Poco::JSON::Object::Ptr Json(const Response& r) {
  Poco::JSON::Parser p;
  return p.parse(r.body).extract<Poco::JSON::Object::Ptr>();
}

struct ApiFixture {
  TempDir dir;
  FakeClock clock;
  CountingRandom random;
  artifact::Config config;
  std::unique_ptr<artifact::TokenStore> store;
  std::unique_ptr<artifact::Builds> builds;
  std::unique_ptr<artifact::MastersFile> masters;
  std::ostringstream log;
  artifact::EventLog event_log{log};
  std::unique_ptr<Api> api;

  ApiFixture() {
    config.tokens_dir = dir.Sub("tokens");
    config.artifacts_dir = dir.Sub("artifacts");
    config.masters_file = dir.path() + "/masters";
    std::ofstream(config.masters_file) << "ci:" << Bcrypt("pw") << "\n"
                                       << "other:" << Bcrypt("pw2") << "\n"
                                       << "narrow:" << Bcrypt("pw3") << ":allow=dpkg/mine/\n";
    store = std::make_unique<artifact::TokenStore>(config.tokens_dir, clock, random);
    builds = std::make_unique<artifact::Builds>(config.artifacts_dir, clock);
    masters = std::make_unique<artifact::MastersFile>(config.masters_file);
    api = std::make_unique<Api>(config, *store, *builds, *masters, clock, event_log);
  }

  Response Call(const std::string& method, const std::string& path, const std::string& body = "",
                const std::string& auth = Basic("ci", "pw"), const std::string& type = "application/json") {
    Request r;
    r.method = method;
    r.path = path;
    auto q = path.find('?');
    if (q != std::string::npos) {
      r.path = path.substr(0, q);
      r.query = path.substr(q + 1);
    }
    r.body = body;
    r.authorization = auth;
    r.content_type = type;
    r.host = "repo.test:8080";
    return api->Handle(r);
  }
};

}  // namespace

TEST_CASE_METHOD(ApiFixture, "POST /token issues and answers with the contract's fields", "[api]") {
  auto r = Call("POST", "/token", R"({"scope": "dpkg/p/linux/1", "ttl": 60})");
  REQUIRE(r.status == 201);
  CHECK(r.Header("Content-Type") == "application/json");
  auto j = Json(r);
  CHECK(j->getValue<std::string>("password").size() == 43);
  CHECK(j->getArray("urls")->getElement<std::string>(0) == "http://repo.test:8080/dpkg/p/linux/1/");
  CHECK(j->getValue<int>("expires_in") == 60);
  CHECK(j->getValue<std::string>("expires_at") == artifact::Rfc3339(clock.Now() + 60));
  // The log has the event, never the password.
  CHECK(log.str().find("issue master=ci") != std::string::npos);
  CHECK(log.str().find(j->getValue<std::string>("password")) == std::string::npos);
}

TEST_CASE_METHOD(ApiFixture, "ttl defaults to default_ttl and is capped by max_ttl", "[api]") {
  auto d = Json(Call("POST", "/token", R"({"scope": "dpkg/p/linux/1"})"));
  CHECK(d->getValue<int64_t>("expires_in") == config.default_ttl);
  auto c = Json(Call("POST", "/token", R"({"scope": "dpkg/p/linux/2", "ttl": 999999999})"));
  CHECK(c->getValue<int64_t>("expires_in") == config.max_ttl);
}

TEST_CASE_METHOD(ApiFixture, "?format=netrc answers a .netrc line", "[api]") {
  auto r = Call("POST", "/token?format=netrc", "scope=dpkg/p/linux/1", Basic("ci", "pw"),
                "application/x-www-form-urlencoded");
  REQUIRE(r.status == 201);
  CHECK(r.Header("Content-Type") == "text/plain");
  CHECK(r.body.rfind("machine repo.test login t", 0) == 0);
  CHECK(r.body.find(" password ") != std::string::npos);
}

TEST_CASE_METHOD(ApiFixture, "master credentials are required and checked", "[api]") {
  for (const std::string& auth : {std::string(), Basic("ci", "wrong"), Basic("nobody", "pw"),
                                  std::string("Basic !!!!"), std::string("Bearer x"), Basic("ci", "")}) {
    INFO(auth);
    auto r = Call("POST", "/token", R"({"scope": "dpkg/p/linux/1"})", auth);
    CHECK(r.status == 401);
    CHECK(r.Header("WWW-Authenticate") == "Basic realm=\"artifact-token\"");
    CHECK(Json(r)->getValue<std::string>("error") == "unauthorized");
  }
  CHECK(Call("GET", "/token", "", "").status == 401);
  CHECK(Call("DELETE", "/token/x", "", "").status == 401);
}

TEST_CASE_METHOD(ApiFixture, "allow= limits a master to its prefixes", "[api]") {
  CHECK(Call("POST", "/token", R"({"scope": "dpkg/other/linux/1"})", Basic("narrow", "pw3")).status == 403);
  CHECK(Call("POST", "/token", R"({"scopes": ["dpkg/mine/linux/1", "dpkg/minex/linux/1"]})", Basic("narrow", "pw3"))
            .status == 403);
  CHECK(Call("POST", "/token", R"({"scope": "dpkg/mine/linux/1"})", Basic("narrow", "pw3")).status == 201);
  CHECK(Call("POST", "/token", R"({"scope": "dpkg/mine/linux/2", "reopen": true})", Basic("narrow", "pw3"))
            .status == 403);
}

TEST_CASE_METHOD(ApiFixture, "a master sees and revokes only its own tokens", "[api]") {
  auto mine = Json(Call("POST", "/token", R"({"scope": "dpkg/p/linux/1"})"));
  auto theirs = Json(Call("POST", "/token", R"({"scope": "dpkg/p/linux/2"})", Basic("other", "pw2")));
  const auto my_user = mine->getValue<std::string>("username");
  const auto their_user = theirs->getValue<std::string>("username");

  auto list = Json(Call("GET", "/token"));
  REQUIRE(list->getArray("tokens")->size() == 1);
  CHECK(list->getArray("tokens")->getObject(0)->getValue<std::string>("username") == my_user);
  CHECK(list->getArray("tokens")->getObject(0)->has("password") == false);

  CHECK(Call("GET", "/token/" + my_user).status == 200);
  CHECK(Call("GET", "/token/" + their_user).status == 404);
  CHECK(Call("DELETE", "/token/" + their_user).status == 404);
  CHECK(store->Get(their_user));
  CHECK(Call("DELETE", "/token/" + my_user).status == 204);
  CHECK(Call("DELETE", "/token/" + my_user).status == 404);
  CHECK(log.str().find("revoke master=ci username=" + my_user) != std::string::npos);
}

TEST_CASE_METHOD(ApiFixture, "invalid input is refused with the contract's statuses", "[api]") {
  CHECK(Call("POST", "/token", R"({"scope": "dpkg/../linux/1"})").status == 400);
  CHECK(Call("POST", "/token", R"({"scope": "dpkg/p/linux/1", "request_id": "healthz/x"})").status == 400);
  CHECK(Call("POST", "/token", R"({"scope": "dpkg/p/linux/1", "request_id": "a:b"})").status == 400);
  CHECK(Call("POST", "/token", "scope=dpkg/p/linux/1", Basic("ci", "pw"), "text/plain").status == 415);
  Request big;
  big.method = "POST";
  big.path = "/token";
  big.authorization = Basic("ci", "pw");
  big.content_type = "application/json";
  big.body_too_large = true;
  CHECK(api->Handle(big).status == 413);
  auto bad = Call("POST", "/token", "{");
  CHECK(bad.status == 400);
  CHECK(Json(bad)->getValue<std::string>("error") == "bad_request");
  CHECK(store->List()->empty());
}

TEST_CASE_METHOD(ApiFixture, "error bodies stay valid JSON whatever the client sent (found by fuzz_api)", "[api]") {
  auto r = Call("POST", "/token", "sco\xff\xfe\x01pe=dpkg/p/linux/1", Basic("ci", "pw"),
                "application/x-www-form-urlencoded");
  CHECK(r.status == 400);
  auto message = Json(r)->getValue<std::string>("message");
  CHECK(message.find("sco???pe") != std::string::npos);
  CHECK(artifact::PrintableAscii(std::string(600, 'x'), 512).size() == 512);
}

TEST_CASE_METHOD(ApiFixture, "routes and methods", "[api]") {
  auto r = Call("PUT", "/token");
  CHECK(r.status == 405);
  CHECK(r.Header("Allow") == "GET, POST");
  CHECK(Call("POST", "/token/someone").Header("Allow") == "GET, DELETE");
  CHECK(Call("POST", "/token/healthz").status == 405);
  CHECK(Call("GET", "/token/a/b").status == 404);
  CHECK(Call("GET", "/elsewhere").status == 404);
  auto h = Call("GET", "/token/healthz", "", "");
  CHECK(h.status == 200);
  CHECK(Json(h)->getValue<std::string>("status") == "ok");
}

TEST_CASE_METHOD(ApiFixture, "methods are compared exactly: a part of a method is 405 on every route", "[api]") {
  // Found by an attack run: "LETE" revoked a token and "T" listed them,
  // because the method was looked up as a substring of the allowed list.
  auto issued = Call("POST", "/token", R"({"scope": "dpkg/p/linux/1"})");
  REQUIRE(issued.status == 201);
  const std::string user = Json(issued)->getValue<std::string>("username");
  const std::vector<std::pair<std::string, std::string>> routes = {
      {"/token", "GET, POST"},           {"/token/" + user, "GET, DELETE"},
      {"/token/" + user + "/renew", "POST"}, {"/token/" + user + "/seal", "GET"},
      {"/token/healthz", "GET, HEAD"},   {"/token/metrics", "GET, HEAD"},
      {"/token/latest/dpkg/p/linux/latest", "GET, HEAD"}};
  for (const auto& [path, allow] : routes) {
    for (const std::string method : {"LETE", "GE", "T", "E", "ET", "POS", "OST", "DELET", "GETS", "get", "Delete", "",
                                     "GET, POST", "PUT"}) {
      INFO(method << " " << path);
      auto r = Call(method, path, R"({"ttl": 60})");
      CHECK(r.status == 405);
      CHECK(r.Header("Allow") == allow);
    }
  }
  // Nothing happened to the token on the way.
  CHECK(Call("GET", "/token/" + user).status == 200);
  CHECK(log.str().find("revoke master=") == std::string::npos);
  CHECK(log.str().find("renew master=") == std::string::npos);
}

TEST_CASE_METHOD(ApiFixture, "request_ids name tokens per master: a retry replaces, no master learns another's",
                 "[api]") {
  auto mine = Call("POST", "/token", R"({"scope": "dpkg/p/linux/1", "request_id": "build-42"})");
  REQUIRE(mine.status == 201);
  const std::string name = Json(mine)->getValue<std::string>("username");
  CHECK(name == artifact::TokenNameFor("ci", "build-42"));
  // The answer was lost; the master asks again: the same token, a new password.
  auto again = Call("POST", "/token", "request_id=build-42&scope=dpkg/p/linux/1",
                    Basic("ci", "pw"), "application/x-www-form-urlencoded");
  REQUIRE(again.status == 201);
  CHECK(Json(again)->getValue<std::string>("username") == name);
  CHECK(Json(again)->getValue<std::string>("password") != Json(mine)->getValue<std::string>("password"));
  CHECK(Json(Call("GET", "/token"))->getArray("tokens")->size() == 1);
  // Another master, the same id: its own token, on its own scope.
  auto theirs = Call("POST", "/token", R"({"scope": "dpkg/p/linux/2", "request_id": "build-42"})", Basic("other", "pw2"));
  REQUIRE(theirs.status == 201);
  CHECK(Json(theirs)->getValue<std::string>("username") != name);
  REQUIRE(Call("DELETE", "/token/" + name + "?seal=false").status == 204);
  // Used and revoked: never again, and the refusal is about the caller's own id.
  auto reused = Call("POST", "/token", R"({"scope": "dpkg/p/linux/1", "request_id": "build-42"})");
  CHECK(reused.status == 409);
  CHECK(Json(reused)->getValue<std::string>("message").find("request_id build-42 was used already") == 0);
  // An empty id is not "no id": a client with an empty variable would journal
  // a name that is never the token's.
  CHECK(Call("POST", "/token", R"({"scope": "dpkg/p/linux/4", "request_id": ""})").status == 400);
  CHECK(Call("POST", "/token", "scope=dpkg/p/linux/4&request_id=", Basic("ci", "pw"),
             "application/x-www-form-urlencoded").status == 400);
  // The log tells a retry from a first issue.
  CHECK(log.str().find("reissue master=ci username=" + name) != std::string::npos);
  // Names are no longer chosen.
  auto chosen = Call("POST", "/token", R"({"scope": "dpkg/p/linux/3", "username": "build-42"})");
  CHECK(chosen.status == 400);
  CHECK(Json(chosen)->getValue<std::string>("message").find("send request_id") != std::string::npos);
}

TEST_CASE_METHOD(ApiFixture, "an unreadable masters file is 503 for everyone, not 401", "[api]") {
  std::remove(config.masters_file.c_str());
  auto r = Call("POST", "/token", R"({"scope": "dpkg/p/linux/1"})");
  CHECK(r.status == 503);
  CHECK(Json(r)->getValue<std::string>("message").find(config.masters_file) == std::string::npos);
}

TEST_CASE_METHOD(ApiFixture, "renew extends, capped by max_ttl from the issue, only for the issuer", "[api]") {
  config.max_ttl = 1000;
  auto t = Json(Call("POST", "/token", R"({"scope": "dpkg/p/linux/1", "ttl": 100})"));
  const auto user = t->getValue<std::string>("username");
  clock.Advance(90);
  auto r = Call("POST", "/token/" + user + "/renew", R"({"ttl": 300})");
  REQUIRE(r.status == 200);
  CHECK(Json(r)->getValue<int64_t>("expires_in") == 300);
  clock.Advance(200);
  auto capped = Call("POST", "/token/" + user + "/renew", R"({"ttl": 5000})");
  REQUIRE(capped.status == 200);
  CHECK(Json(capped)->getValue<int64_t>("expires_in") == 1000 - 290);
  CHECK(Call("POST", "/token/" + user + "/renew", R"({"ttl": 300})", Basic("other", "pw2")).status == 404);
  CHECK(Call("POST", "/token/" + user + "/renew", R"({"ttl": "x"})").status == 400);
  CHECK(Call("GET", "/token/" + user + "/renew").status == 405);
  CHECK(log.str().find("renew master=ci username=" + user) != std::string::npos);
  clock.Advance(1000);
  CHECK(Call("POST", "/token/" + user + "/renew", R"({"ttl": 300})").status == 404);
  CHECK(Call("POST", "/token/nobody/renew", "").status == 404);
}

TEST_CASE_METHOD(ApiFixture, "healthz fails when the artifacts tree cannot take a build directory", "[api]") {
  // What issuing needs, not only the token store: a file where the
  // artifacts root should be makes every issue fail, and healthz too.
  std::filesystem::remove_all(config.artifacts_dir);
  std::ofstream(config.artifacts_dir) << "not a directory";
  auto h = Call("GET", "/token/healthz", "", "");
  CHECK(h.status == 503);
  const std::string message = Json(h)->getValue<std::string>("message");
  CHECK(message.find("artifacts volume") != std::string::npos);
  CHECK(message.find(config.artifacts_dir) == std::string::npos);
  auto issue = Call("POST", "/token", R"({"scope": "dpkg/p/linux/1"})");
  CHECK(issue.status == 503);
  CHECK(Json(issue)->getValue<std::string>("message").find("artifacts volume") != std::string::npos);
  CHECK(log.str().find("outcome=503") != std::string::npos);
}

namespace {

// The Api over a disk whose build lock can be raced (hooked_disk.h).
struct UploadFixture : ApiFixture {
  HookedDisk disk;
  UploadFixture() {
    builds = std::make_unique<artifact::Builds>(config.artifacts_dir, clock, disk);
    api = std::make_unique<Api>(config, *store, *builds, *masters, clock, event_log);
  }
  Response Upload(const std::string& tree_path, const std::string& archive, const std::string& auth,
                  const std::string& type = "application/x-tar") {
    Request r;
    r.method = "POST";
    r.path = "/token/tree/unpack";
    r.tree_path = tree_path;
    r.authorization = auth;
    r.content_type = type;
    auto pos = std::make_shared<size_t>(0);
    r.body_stream = [archive, pos](char* buf, size_t n) -> artifact::Result<size_t> {
      const size_t step = std::min(n, archive.size() - *pos);
      std::memcpy(buf, archive.data() + *pos, step);
      *pos += step;
      return step;
    };
    Response resp = api->Handle(r);
    body_left = archive.size() - *pos;
    return resp;
  }
  size_t body_left = 0;
};

}  // namespace

TEST_CASE_METHOD(UploadFixture, "a tree upload checks the token itself and reads its whole body", "[api][upload]") {
  Response issued = Call("POST", "/token", R"({"scope": "dpkg/p/b/1"})");
  REQUIRE(issued.status == 201);
  const std::string user = Json(issued)->getValue<std::string>("username");
  const std::string auth = Basic(user, Json(issued)->getValue<std::string>("password"));
  const std::string archive = TarFile("./a/x.txt", "x") + TarEnd() + std::string(8192, '\0');
  Response ok = Upload("/dpkg/p/b/1/", archive, auth);
  REQUIRE(ok.status == 201);
  CHECK(ok.body == R"({"bytes":1,"directories":0,"files":1})");
  CHECK(body_left == 0);  // tar's padding after the end too
  CHECK(std::filesystem::exists(config.artifacts_dir + "/dpkg/p/b/1/a/x.txt"));
  // Refusals read the body to its end too: nginx is still sending it.
  CHECK(Upload("/dpkg/p/b/1/", archive, Basic(user, "wrong")).status == 401);
  CHECK(body_left == 0);
  CHECK(Upload("/dpkg/p/b/1/", archive, auth, "application/octet-stream").status == 415);
  CHECK(body_left == 0);
  CHECK(Upload("/dpkg/p/b/1/", TarFile("../x", "x") + TarEnd(), auth).status == 400);
  CHECK(Upload("/dpkg/p/b/2/", archive, auth).status == 401);  // another build's
  CHECK(Upload("/dpkg/p/b/1/.git/", archive, auth).status == 400);
}

TEST_CASE_METHOD(UploadFixture, "a revoke between staging and commit: the upload lands nowhere", "[api][upload][race]") {
  Response issued = Call("POST", "/token", R"({"scope": "dpkg/p/b/1"})");
  REQUIRE(issued.status == 201);
  const std::string user = Json(issued)->getValue<std::string>("username");
  const std::string auth = Basic(user, Json(issued)->getValue<std::string>("password"));
  // The upload has staged its files and is about to take the build's lock:
  // the revoke runs right there (token removed, build frozen).
  disk.CompeteAt("lock", "/dpkg/p/b/.1.lock", "/dpkg/p/b/.1.lock", [&] {
    REQUIRE(store->Revoke(user));
    auto lock = builds->Lock("dpkg/p/b/1");
    REQUIRE(lock);
    REQUIRE(builds->Freeze("dpkg/p/b/1", "ticket"));
  });
  Response late = Upload("/dpkg/p/b/1/", TarFile("late.txt", "x") + TarEnd(), auth);
  disk.Join();
  REQUIRE(disk.competed());
  CHECK(late.status == 409);
  CHECK_FALSE(std::filesystem::exists(config.artifacts_dir + "/dpkg/p/b/1/late.txt"));
  // Nothing staged is left beside the build either.
  for (const auto& e : std::filesystem::directory_iterator(config.artifacts_dir + "/dpkg/p/b")) {
    CHECK(e.path().filename().string().find(".upload-") == std::string::npos);
  }
}

TEST_CASE_METHOD(UploadFixture, "a revoke and a reopen between staging and commit: the old token's upload lands nowhere",
                 "[api][upload][race]") {
  // Found by the attack review: the commit only asked whether the build had
  // a token, not whether it was still the one that sent the archive.
  Response issued = Call("POST", "/token", R"({"scope": "dpkg/p/b/1"})");
  REQUIRE(issued.status == 201);
  const std::string user = Json(issued)->getValue<std::string>("username");
  const std::string auth = Basic(user, Json(issued)->getValue<std::string>("password"));
  REQUIRE(Upload("/dpkg/p/b/1/", TarFile("orig.txt", "original") + TarEnd(), auth).status == 201);
  // The competitor's steps, checked on this thread (Catch2 asserts on one).
  std::vector<bool> steps;
  // The upload waits until the competitor is done (it holds no lock yet).
  disk.CompeteAt("lock", "/dpkg/p/b/.1.lock", "/no-such-lock", [&] {
    steps.push_back(static_cast<bool>(store->Revoke(user)));
    {
      auto lock = builds->Lock("dpkg/p/b/1");
      steps.push_back(lock && builds->Freeze("dpkg/p/b/1", "ticket"));
    }
    steps.push_back(static_cast<bool>(builds->Open("dpkg/p/b/1", /*reopen=*/true, "ci")));
    artifact::IssueRequest again;
    again.scopes = {artifact::Scope::Parse("dpkg/p/b/1", 4).value()};
    again.ttl = 600;
    again.master = "ci";
    again.reopen = true;
    steps.push_back(static_cast<bool>(store->Issue(again)));
  });
  Response late = Upload("/dpkg/p/b/1/", TarFile("orig.txt", "forged") + TarEnd(), auth);
  disk.Join();
  REQUIRE(disk.competed());
  CHECK(steps == std::vector<bool>{true, true, true, true});
  INFO(late.body);
  CHECK(late.status == 409);
  std::ifstream in(config.artifacts_dir + "/dpkg/p/b/1/orig.txt");
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == "original");
}
