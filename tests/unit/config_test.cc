#include <catch2/catch.hpp>

#include <fstream>

#include "config.h"
#include "unit/test_support.h"

using artifact::LoadConfig;

namespace {

std::string WriteConfig(const artifact::testing::TempDir& dir, const std::string& text) {
  std::string path = dir.path() + "/artifact-token.conf";
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST_CASE("config precedence: defaults < file < environment < flags", "[config]") {
  artifact::testing::TempDir dir;
  auto path = WriteConfig(dir, "scope_depth = 3\nmax_ttl = 100\ndefault_ttl = 50\ntokens_dir = /srv/t\n");
  auto c = LoadConfig({"--config", path}, {});
  REQUIRE(c);
  CHECK(c->config.scope_depth == 3);
  CHECK(c->config.tokens_dir == "/srv/t");
  CHECK(c->config.artifacts_dir == "/var/lib/artifact-repository/artifacts");
  c = LoadConfig({"--config=" + path}, {{"ARTIFACT_SCOPE_DEPTH", "5"}, {"ARTIFACT_TOKENS_DIR", "/env/t"}});
  REQUIRE(c);
  CHECK(c->config.scope_depth == 5);
  CHECK(c->config.tokens_dir == "/env/t");
  c = LoadConfig({"--config", path, "--scope-depth", "6", "extra"}, {{"ARTIFACT_SCOPE_DEPTH", "5"}});
  REQUIRE(c);
  CHECK(c->config.scope_depth == 6);
  CHECK(c->rest == std::vector<std::string>{"extra"});
  c = LoadConfig({}, {{"ARTIFACT_CONFIG", path}});
  REQUIRE(c);
  CHECK(c->path == path);
}

TEST_CASE("config errors name the key and the source", "[config]") {
  artifact::testing::TempDir dir;
  auto unknown = LoadConfig({"--config", WriteConfig(dir, "scope_dept = 3\n")}, {});
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().message.find("unknown key scope_dept") != std::string::npos);

  struct Case {
    const char* key;
    const char* value;
  };
  for (auto [key, value] : {Case{"scope_depth", "0"}, Case{"scope_depth", "9"}, Case{"scope_depth", "four"},
                            Case{"default_ttl", "0"}, Case{"max_ttl", "-5"}, Case{"tokens_dir", "relative/path"},
                            Case{"artifacts_dir", "/with space"}, Case{"masters_file", ""},
                            Case{"public_url", "ftp://x"}, Case{"public_url", "https://x/"}}) {
    INFO(key << " = " << value);
    auto r = LoadConfig({"--config", WriteConfig(dir, std::string(key) + " = " + value + "\n")}, {});
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find(key) != std::string::npos);
  }
  auto env = LoadConfig({"--config", WriteConfig(dir, "")}, {{"ARTIFACT_MAX_TTL", "x"}});
  REQUIRE_FALSE(env);
  CHECK(env.error().message.find("ARTIFACT_MAX_TTL") != std::string::npos);
  auto flag = LoadConfig({"--config", WriteConfig(dir, ""), "--max-ttl"}, {});
  REQUIRE_FALSE(flag);
  CHECK(flag.error().message.find("--max-ttl") != std::string::npos);
  CHECK_FALSE(LoadConfig({"--config", dir.path() + "/missing.conf"}, {}));
  CHECK_FALSE(LoadConfig({"--config", WriteConfig(dir, "default_ttl = 100\nmax_ttl = 50\n")}, {}));
}
