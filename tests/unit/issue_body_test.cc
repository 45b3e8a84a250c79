#include <catch2/catch.hpp>

#include "issue_body.h"

using artifact::ErrorCode;
using artifact::ParseIssueBody;

TEST_CASE("JSON issue bodies", "[body]") {
  auto one = ParseIssueBody("application/json", R"({"scope": "a/b/c/d", "ttl": 60})");
  REQUIRE(one);
  CHECK(one->scopes == std::vector<std::string>{"a/b/c/d"});
  CHECK(one->ttl == 60);
  auto many = ParseIssueBody("application/json; charset=utf-8",
                             R"({"scopes": ["a/b/c/d", "e/f/g/h"], "request_id": "u1", "reopen": true})");
  REQUIRE(many);
  CHECK(many->scopes.size() == 2);
  CHECK(many->request_id == "u1");
  CHECK(many->reopen);
  CHECK_FALSE(many->ttl);
}

TEST_CASE("form issue bodies, as curl -d sends them", "[body]") {
  auto b = ParseIssueBody("application/x-www-form-urlencoded", "scope=a%2Fb/c/d&scope=e/f/g/h&ttl=30&reopen=false");
  REQUIRE(b);
  CHECK(b->scopes == std::vector<std::string>{"a/b/c/d", "e/f/g/h"});
  CHECK(b->ttl == 30);
}

TEST_CASE("bad issue bodies are 400 or 415", "[body]") {
  const std::pair<std::string, std::string> bad[] = {
      {"application/json", ""},
      {"application/json", "[]"},
      {"application/json", R"({"scope": 5})"},
      {"application/json", R"({"scope": "a/b/c/d", "scopes": ["e/f/g/h"]})"},
      {"application/json", R"({"scopes": []})"},
      {"application/json", R"({"scopes": [1]})"},
      {"application/json", R"({"scope": "a/b/c/d", "username": "u1"})"},  // names are the server's
      {"application/json", R"({"scope": "a/b/c/d", "request_id": 7})"},
      {"application/json", R"({"scope": "a/b/c/d", "ttl": "60"})"},
      {"application/json", R"({"scope": "a/b/c/d", "ttl": 1.5})"},
      {"application/json", R"({"scope": "a/b/c/d", "ttl": -1})"},
      {"application/json", R"({"scope": "a/b/c/d", "ttl": 0})"},
      {"application/json", R"({"scope": "a/b/c/d", "ttl": true})"},
      {"application/json", R"({"scope": "a/b/c/d", "reopen": "yes"})"},
      {"application/json", R"({"scope": "a/b/c/d", "extra": 1})"},
      {"application/json", R"({"scope": "a/b/c/d")"},
      {"application/json", R"({"ttl": 5})"},
      {"application/json", R"({"scope": "a/b/c/d", "scope": "e/f/g/h"})"},
      {"application/json", R"({"scope": "a/b/c/d", "ttl": 5, "ttl": 6})"},
      {"application/json", R"({"scope": "a/b/c/d", "x": {"y": 1, "y": 2}})"},
      {"application/json", R"({"scope": "a/b/c/d", "x": )" + std::string(10000, '[') + std::string(10000, ']') + "}"},
      {"application/json", std::string(100000, '[')},
      {"application/json", R"({"scope": "a/b/c/d"} trailing)"},
      {"application/json", "{\"scope\": \"a/b/c/d\u0000\"}"},
      {"application/x-www-form-urlencoded", "ttl=5"},
      {"application/x-www-form-urlencoded", "scope=a/b/c/d&ttl=5&ttl=6"},
      {"application/x-www-form-urlencoded", "scope=a/b/c/d&ttl=5s"},
      {"application/x-www-form-urlencoded", "scope=a/b/c/d&color=red"},
      {"application/x-www-form-urlencoded", "scope=a/b/c/d&scopes=e/f/g/h"},
  };
  for (const auto& [type, body] : bad) {
    INFO(type << " " << body);
    auto r = ParseIssueBody(type, body);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kBadRequest);
  }
  CHECK(ParseIssueBody("text/plain", "scope=a/b/c/d").error().code == ErrorCode::kUnsupportedMediaType);
  CHECK(ParseIssueBody("", "scope=a/b/c/d").error().code == ErrorCode::kUnsupportedMediaType);
}
