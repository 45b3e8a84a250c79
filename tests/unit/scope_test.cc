#include <catch2/catch.hpp>

#include <regex>

#include "scope.h"

using artifact::Scope;

TEST_CASE("Scope::Parse accepts exactly depth valid segments", "[scope]") {
  auto s = Scope::Parse("dpkg/myproj/linux-amd64/42", 4);
  REQUIRE(s);
  CHECK(s->str() == "dpkg/myproj/linux-amd64/42");
  CHECK(s->segments().size() == 4);
  CHECK(Scope::Parse("a", 1));
  CHECK(Scope::Parse("a/b/c/d/e/f/g/h", 8));
  CHECK(Scope::Parse("_x/v1.2_3-4/A/0", 4));
}

TEST_CASE("Scope::Parse refuses every invalid form", "[scope]") {
  const char* bad[] = {
      "",        "dpkg/myproj/linux",  "dpkg/myproj/linux/42/extra", "dpkg/myproj/linux/..",
      "dpkg/../linux/42", "dpkg/myproj/./42",   "/dpkg/myproj/linux/42",      "dpkg/myproj/linux/42/",
      "dpkg//linux/42",   "dpkg/myproj/linux/%2e%2e", "dpkg/my proj/linux/42", "dpkg/my:proj/linux/42",
      "dpkg/myproj/linux/4\n2", "dpkg/.hidden/linux/42", "dpkg/-dash/linux/42", "dpkg/caf\xc3\xa9/linux/42",
      "token/myproj/linux/42", "dpkg/myproj/linux/latest",
  };
  for (const char* text : bad) {
    INFO("scope: " << text);
    auto s = Scope::Parse(text, 4);
    REQUIRE_FALSE(s);
    CHECK(s.error().code == artifact::ErrorCode::kBadRequest);
  }
  std::string with_nul("dpkg/my\0proj/linux/42", 21);
  CHECK_FALSE(Scope::Parse(with_nul, 4));
  CHECK_FALSE(Scope::Parse("dpkg/" + std::string(129, 'a') + "/linux/42", 4));
  CHECK(Scope::Parse("dpkg/" + std::string(128, 'a') + "/linux/42", 4));
}

TEST_CASE("Scope::IsUnder compares whole segments", "[scope]") {
  auto s = Scope::Parse("dpkg/myproj/linux/42", 4).value();
  CHECK(s.IsUnder("dpkg/"));
  CHECK(s.IsUnder("dpkg/myproj"));
  CHECK(s.IsUnder("dpkg/myproj/"));
  CHECK(s.IsUnder("dpkg/myproj/linux/42"));
  CHECK_FALSE(s.IsUnder("dpkg/my"));
  CHECK_FALSE(s.IsUnder("dpkg/myproj/linux/4"));
  CHECK_FALSE(s.IsUnder("appimage/"));
  CHECK_FALSE(s.IsUnder(""));
}

TEST_CASE("the nginx map has one segment pattern per scope level", "[scope]") {
  for (int depth = 1; depth <= 8; ++depth) {
    std::string snippet = artifact::NginxMapSnippet(depth, "/srv/tokens", "/srv/artifacts");
    size_t count = 0;
    for (auto pos = snippet.find(artifact::kSegmentRegex); pos != std::string::npos;
         pos = snippet.find(artifact::kSegmentRegex, pos + 1)) {
      ++count;
    }
    // The file, build-file and directory maps, both patterns of the place
    // map and the seal-name map have `depth` segments, the latest map one
    // fewer.
    CHECK(count == static_cast<size_t>(6 * depth + (depth >= 2 ? depth - 1 : 0)));
    CHECK(snippet.find("\"/srv/tokens/$artifact_scope.htpasswd\"") != std::string::npos);
    CHECK(snippet.find("\"/srv/artifacts/$artifact_scope$artifact_parent\"") != std::string::npos);
  }
}

TEST_CASE("the nginx map's regex accepts exactly the scopes the app accepts", "[scope]") {
  // nginx uses PCRE; the pattern uses nothing beyond what std::regex
  // (ECMAScript) reads once the named group is made a plain group.
  for (int depth : {1, 2, 4, 8}) {
    std::string snippet = artifact::NginxMapSnippet(depth, "/t", "/a");
    auto start = snippet.find("\"~") + 2;
    std::string pattern = snippet.substr(start, snippet.find("\" \"", start) - start);
    pattern.replace(pattern.find("(?<artifact_scope>"), 18, "(");
    pattern.replace(pattern.find("\\z"), 2, "$");  // ECMAScript $ is PCRE \z
    std::regex re(pattern);
    std::vector<std::string> candidates = {"a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e", "a/b/c/d/e/f/g/h",
                                           "a/b/c/d/e/f/g/h/i", "a/../c/d", "a/./c/d", "a/.b/c/d", "a/b c/c/d",
                                           "a/b%2e/c/d", "a/b:c/c/d", "a//c/d", "-a/b/c/d", "A_1/b-2/c.3/d_4",
                                           std::string(128, 'x') + "/b/c/d", std::string(129, 'x') + "/b/c/d"};
    for (const auto& c : candidates) {
      INFO("depth " << depth << " scope " << c);
      bool app = static_cast<bool>(Scope::Parse(c, depth));
      const std::string uri = "/" + c + "/file.deb";
      std::smatch m;
      bool nginx = std::regex_match(uri, m, re);
      // Whatever nginx takes as the scope of a URI, the app accepts as a scope...
      if (nginx) {
        CHECK(Scope::Parse(m[1].str(), depth));
      }
      // ...and every scope the app accepts is what nginx finds below it.
      if (app) {
        REQUIRE(nginx);
        CHECK(m[1].str() == c);
        CHECK_FALSE(std::regex_match("/" + c, re));  // never the scope root itself
      } else {
        CHECK_FALSE((nginx && m[1].str() == c));
      }
    }
  }
}

TEST_CASE("the nginx map's parent directory is the URI's last entry's directory", "[scope]") {
  // The directory nginx checks for symlinks before a write: it must be the
  // one the write changes, never a directory above the scope.
  std::string snippet = artifact::NginxMapSnippet(2, "/t", "/a");
  auto map = snippet.find("$artifact_parent_dir {");
  REQUIRE(map != std::string::npos);
  auto start = snippet.find("\"~", map) + 2;
  std::string pattern = snippet.substr(start, snippet.find("\" \"", start) - start);
  pattern.replace(pattern.find("(?<artifact_scope>"), 18, "(");
  pattern.replace(pattern.find("(?<artifact_parent>"), 19, "(");
  pattern.replace(pattern.find("\\z"), 2, "$");
  std::regex re(pattern);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/p/1/f", "/p/1"},         {"/p/1/d/", "/p/1"},         {"/p/1/d/f", "/p/1/d"},
      {"/p/1/d/e/", "/p/1/d"},    {"/p/1/d/e/f.tar.gz", "/p/1/d/e"},
  };
  for (const auto& [uri, parent] : cases) {
    INFO(uri);
    std::smatch m;
    REQUIRE(std::regex_match(uri, m, re));
    CHECK("/" + m[1].str() + m[2].str() == parent);
  }
  for (const char* outside : {"/p/1", "/p/1/", "/p", "/p/1//f", "/p/1/../f", "/p/1/.f"}) {
    INFO(outside);
    CHECK_FALSE(std::regex_match(std::string(outside), re));
  }
}

TEST_CASE("the nginx map reserves the seal's names at a scope's root only", "[scope]") {
  for (int depth : {1, 2, 4}) {
    std::string snippet = artifact::NginxMapSnippet(depth, "/t", "/a");
    auto map = snippet.find("$artifact_seal_name {");
    REQUIRE(map != std::string::npos);
    auto start = snippet.find("\"~", map) + 2;
    std::string pattern = snippet.substr(start, snippet.find("\" 1;", start) - start);
    pattern.replace(pattern.find("\\z"), 2, "$");
    std::regex re(pattern);
    std::string scope = "s";
    for (int i = 1; i < depth; ++i) scope += "/s" + std::to_string(i);
    INFO("depth " << depth << " pattern " << pattern);
    for (const char* reserved : {"/SHA256SUMS", "/SHA256SUMS/", "/SHA256SUMS/x", "/SHA256SUMS/x/y/"}) {
      INFO(reserved);
      CHECK(std::regex_search("/" + scope + reserved, re));
    }
    for (const char* own : {"/d/SHA256SUMS", "/d/e/SHA256SUMS/", "/SHA256SUMS.asc", "/SHA256SUMSx",
                                   "/sha256sums", "/x.SHA256SUMS"}) {
      INFO(own);
      CHECK_FALSE(std::regex_search("/" + scope + own, re));
    }
    // A build named SHA256SUMS is a build, not the seal's file.
    CHECK_FALSE(std::regex_search("/SHA256SUMS", re));
    if (depth >= 2) CHECK_FALSE(std::regex_search("/" + scope.substr(0, scope.rfind('/')) + "/SHA256SUMS/f", re));
  }
}
