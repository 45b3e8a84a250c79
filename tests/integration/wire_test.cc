// What a person at a terminal sees of the API: reason phrases from the table,
// JSON answers that end with a newline, and a latest redirect that keeps the
// query (issue 20).
#include <Poco/JSON/Object.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>

#include "integration/server_fixture.h"

using artifact::testing::HttpResponse;
using artifact::testing::IssuedToken;
using artifact::testing::ParseObject;
using artifact::testing::Servers;

namespace {

bool EndsWithOneNewline(const std::string& body) {
  return body.size() >= 2 && body.back() == '\n' && body[body.size() - 2] != '\n';
}

}  // namespace

TEST_CASE("API answers: reason phrases from the table, JSON ended by a newline", "[integration][wire]") {
  Servers s;
  HttpResponse health = s.Get("/token/healthz");
  CHECK(health.reason == "OK");
  CHECK(health.body == "{\"status\":\"ok\"}\n");

  HttpResponse denied = s.IssueRaw(Servers::ScopeBody("dpkg/p/linux/1"), Servers::Basic("ci", "wrong"));
  CHECK(denied.status == 401);
  CHECK(denied.reason == "Unauthorized");
  CHECK(EndsWithOneNewline(denied.body));

  HttpResponse issued = s.IssueRaw(Servers::ScopeBody("dpkg/p/linux/1"));
  REQUIRE(issued.status == 201);
  CHECK(issued.reason == "Created");
  CHECK(EndsWithOneNewline(issued.body));
  auto token = ParseObject(issued.body);
  const std::string user = token->getValue<std::string>("username");
  const std::string pass = token->getValue<std::string>("password");
  HttpResponse listed = s.Request("GET", "/token", "", {{"Authorization", s.MasterAuth()}});
  CHECK(EndsWithOneNewline(listed.body));
  REQUIRE(s.Put("/dpkg/p/linux/1/app.txt", "one", user, pass).status == 201);

  HttpResponse revoked = s.Revoke(user);
  REQUIRE(revoked.status == 200);
  CHECK(revoked.reason == "OK");
  CHECK(EndsWithOneNewline(revoked.body));
  CHECK(std::stoul(revoked.headers["content-length"]) == revoked.body.size());

  // A build over 16 MiB is sealed in the background: 202.
  IssuedToken big = s.Issue(Servers::ScopeBody("dpkg/p/linux/2"));
  REQUIRE(s.Put("/dpkg/p/linux/2/big.img", std::string(17 << 20, 'x'), big.username, big.password).status == 201);
  HttpResponse background = s.Revoke(big.username);
  CHECK(background.status == 202);
  CHECK(background.reason == "Accepted");
  CHECK(EndsWithOneNewline(background.body));
  std::string state;
  for (int i = 0; i < 300 && state != "done"; ++i) {  // bounded: 30 s
    HttpResponse seal = s.Request("GET", "/token/" + big.username + "/seal", "", {{"Authorization", s.MasterAuth()}});
    CHECK(EndsWithOneNewline(seal.body));
    state = ParseObject(seal.body)->getValue<std::string>("state");
    if (state != "done") std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(state == "done");

  IssuedToken unsealed = s.Issue(Servers::ScopeBody("dpkg/p/other/1"));
  HttpResponse no_seal = s.Revoke(unsealed.username, "?seal=false");
  CHECK(no_seal.status == 204);
  CHECK(no_seal.reason == "No Content");
}

TEST_CASE("the latest redirect keeps the query string", "[integration][wire]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/7"));
  REQUIRE(s.Put("/dpkg/p/linux/7/app.txt", "seven", t.username, t.password).status == 201);
  REQUIRE(s.Revoke(t.username).status == 200);

  HttpResponse r = s.Get("/dpkg/p/linux/latest/?format=json");
  CHECK(r.status == 302);
  CHECK(r.reason == "Found");
  const std::string location = r.headers["location"];
  const std::string want = "/dpkg/p/linux/7/?format=json";
  INFO(location);
  CHECK((location.size() >= want.size() && location.compare(location.size() - want.size(), want.size(), want) == 0));
  HttpResponse listing = s.Get("/dpkg/p/linux/7/?format=json");
  CHECK(listing.status == 200);
  CHECK(listing.body.find("\"app.txt\"") != std::string::npos);
  // Without a query, none is added; a file below latest keeps its path.
  CHECK(s.Get("/dpkg/p/linux/latest/app.txt").headers["location"].find('?') == std::string::npos);
}
