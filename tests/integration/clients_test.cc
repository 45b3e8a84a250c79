// Real WebDAV clients against a live scope on the shipped nginx site: the
// litmus suites, rclone, cadaver and wget. The client commands are those of
// docs/clients.md, run as written (the test checks that the page still holds
// each of them).
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Parser.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>

#include "integration/server_fixture.h"

using artifact::testing::IssuedToken;
using artifact::testing::RandomBytes;
using artifact::testing::ReadFile;
using artifact::testing::Servers;

namespace {

struct Run {
  int exit_code = -1;
  std::string out;  // stdout and stderr
};

// Runs `commands` with bash in `dir`, the variables exported first; bounded
// by `seconds`.
Run Shell(const std::string& dir, const std::map<std::string, std::string>& vars, const std::string& commands,
          int seconds = 120) {
  const std::string script = dir + "/step.sh";
  {
    std::ofstream out(script, std::ios::trunc);
    out << "set -euo pipefail\ncd '" << dir << "'\n";
    for (const auto& [k, v] : vars) out << "export " << k << "='" << v << "'\n";
    out << commands << "\n";
  }
  Run r;
  FILE* p = ::popen(("timeout " + std::to_string(seconds) + " bash '" + script + "' 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// docs/clients.md must show the command the test runs, character for character.
void RequireInClientsDoc(const std::string& command) {
  static const std::string page = ReadFile(std::string(ARTIFACT_SOURCE_DIR) + "/docs/clients.md");
  INFO("docs/clients.md is missing: " << command);
  REQUIRE(page.find(command) != std::string::npos);
}

// A temporary directory for a client's files, removed at the end.
struct WorkDir {
  std::string path;
  explicit WorkDir(const Servers& s) : path(s.state_dir() + "/../client") {
    std::filesystem::create_directories(path);
    path = std::filesystem::canonical(path).string();
  }
};

class Stopwatch {
 public:
  explicit Stopwatch(std::string what) : what_(std::move(what)) {}
  ~Stopwatch() {
    std::chrono::duration<double> d = std::chrono::steady_clock::now() - start_;
    std::cout << "duration: " << what_ << " " << d.count() << " s" << std::endl;
  }

 private:
  std::string what_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

struct LitmusResult {
  int run = -1, passed = -1, failed = -1;
  std::set<std::string> failures;
};

LitmusResult ParseLitmus(const std::string& suite, const std::string& out) {
  LitmusResult r;
  std::smatch m;
  if (std::regex_search(out, m,
                        std::regex("summary for `" + suite + "': of ([0-9]+) tests run: ([0-9]+) passed, ([0-9]+) failed"))) {
    r.run = std::stoi(m[1]);
    r.passed = std::stoi(m[2]);
    r.failed = std::stoi(m[3]);
  }
  static const std::regex fail("([a-z0-9_]+)\\.* FAIL");
  for (std::sregex_iterator it(out.begin(), out.end(), fail), end; it != end; ++it) r.failures.insert((*it)[1]);
  return r;
}

}  // namespace

TEST_CASE("litmus basic, props and http pass but for the tests that fail by design", "[integration][clients]") {
  Servers s;
  WorkDir work(s);
  Stopwatch watch("litmus basic+props+http");
  struct Expected {
    std::string suite;
    int run, passed;
    // Each failure by design, with its reason.
    std::map<std::string, std::string> failures;
  };
  const std::vector<Expected> expected = {
      {"basic", 16, 15,
       {{"put_get_utf8_segment", "names below a build are ASCII only ([A-Za-z0-9_+][A-Za-z0-9._+~-]*)"}}},
      {"props", 14, 10,
       {{"propset", "PROPPATCH is 405: no dead properties are stored"},
        {"propmanyns", "PROPPATCH again"},
        {"propget", "reads back what propset would have stored"},
        {"propfind_invalid2", "the dav_ext module's XML parser accepts an undeclared namespace prefix"}}},
      {"http", 4, 4, {}},
  };
  for (const auto& e : expected) {
    // litmus starts by making its own collection: a fresh build per suite.
    IssuedToken t = s.Issue(Servers::ScopeBody("litmus/" + e.suite + "/linux/1"));
    Run r = Shell(work.path, {{"TESTS", e.suite}},
                  "litmus -k '" + s.BaseUrl() + "/litmus/" + e.suite + "/linux/1/' '" + t.username + "' '" +
                      t.password + "' || true");
    INFO(r.out);
    LitmusResult got = ParseLitmus(e.suite, r.out);
    std::cout << "litmus " << e.suite << ": " << got.passed << " of " << got.run << " passed" << std::endl;
    CHECK(got.run == e.run);
    CHECK(got.passed == e.passed);
    std::set<std::string> by_design;
    for (const auto& [name, why] : e.failures) {
      by_design.insert(name);
      UNSCOPED_INFO("fails by design: " << e.suite << " " << name << ": " << why);
    }
    CHECK(got.failures == by_design);
    CHECK(got.failed == static_cast<int>(by_design.size()));
  }
}

TEST_CASE("rclone copies, checks and lists a build, and shows why it is refused after the revoke",
          "[integration][clients]") {
  Servers s;
  WorkDir work(s);
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/myproj/linux-amd64/42"));
  // 200 files in 20 directories (four chains nested five deep), and one 50 MB file.
  const std::string tree = work.path + "/out";
  int files = 0;
  for (int top = 0; top < 4; ++top) {
    std::string dir = tree + "/part" + std::to_string(top);
    for (int level = 0; level < 5; ++level) {
      if (level > 0) dir += "/level" + std::to_string(level);
      std::filesystem::create_directories(dir);
      for (int i = 0; i < 10; ++i, ++files) {
        std::ofstream(dir + "/file" + std::to_string(i) + ".txt") << RandomBytes(512 + 97 * static_cast<size_t>(files));
      }
    }
  }
  REQUIRE(files == 200);
  std::ofstream(tree + "/big.bin") << RandomBytes(50 * 1000 * 1000);
  const std::map<std::string, std::string> vars = {
      {"BUILD_URL", s.BaseUrl() + "/dpkg/myproj/linux-amd64/42"},
      {"TOKEN_USER", t.username},
      {"TOKEN_PASS", t.password},
      {"RCLONE_CONFIG", work.path + "/rclone.conf"},
  };
  const std::string create =
      R"(rclone config create art webdav url="$BUILD_URL" vendor=other user="$TOKEN_USER" pass="$TOKEN_PASS" --obscure)";
  const std::string copy = "rclone copy ./out art:";
  const std::string check = "rclone check ./out art:";
  const std::string lsjson = "rclone lsjson -R art:";
  for (const auto& command : {create, copy, check, lsjson}) RequireInClientsDoc(command);

  // Without --obscure rclone takes the password for an obscured one and
  // sends something else: refused, and the refusal says what to do.
  std::filesystem::create_directories(work.path + "/one");
  std::ofstream(work.path + "/one/f.txt") << "f";
  Run plain = Shell(work.path, vars,
                    "export RCLONE_CONFIG=./plain.conf\n"
                    R"(rclone config create plain webdav url="$BUILD_URL" vendor=other user="$TOKEN_USER" )"
                    R"(pass="$TOKEN_PASS" >/dev/null && rclone copy ./one plain: --retries 1 --low-level-retries 1)");
  INFO(plain.out);
  CHECK(plain.exit_code != 0);
  CHECK(plain.out.find("--obscure") != std::string::npos);

  Run configured = Shell(work.path, vars, create + " >/dev/null");
  REQUIRE(configured.exit_code == 0);
  // The password is stored obscured, never in clear.
  CHECK(ReadFile(work.path + "/rclone.conf").find(t.password) == std::string::npos);
  {
    Stopwatch watch("rclone copy of 200 files in 20 directories and 50 MB");
    Run r = Shell(work.path, vars, copy);
    INFO(r.out);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("ERROR") == std::string::npos);
  }
  {
    Stopwatch watch("rclone check");
    Run r = Shell(work.path, vars, check + " --download");
    INFO(r.out);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("ERROR") == std::string::npos);
    CHECK(r.out.find("0 differences found") != std::string::npos);
  }
  {
    Run r = Shell(work.path, vars, lsjson + " >listing.json");
    INFO(r.out);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("ERROR") == std::string::npos);
    Poco::JSON::Parser parser;
    auto entries = parser.parse(ReadFile(work.path + "/listing.json")).extract<Poco::JSON::Array::Ptr>();
    int listed_files = 0, listed_dirs = 0;
    for (size_t i = 0; i < entries->size(); ++i) {
      auto entry = entries->getObject(static_cast<unsigned>(i));
      (entry->getValue<bool>("IsDir") ? listed_dirs : listed_files) += 1;
    }
    CHECK(listed_files == 201);
    CHECK(listed_dirs == 20);
  }
  CHECK(std::filesystem::file_size(s.artifacts_dir() + "/dpkg/myproj/linux-amd64/42/big.bin") == 50 * 1000 * 1000);

  // After the revoke, an upload is refused and rclone shows the reason.
  // (A build this large is sealed in the background: 202.)
  const int revoked = s.Revoke(t.username).status;
  REQUIRE((revoked == 200 || revoked == 202));
  std::ofstream(tree + "/late.txt") << "late";
  Run late = Shell(work.path, vars, copy + " --retries 1 --low-level-retries 1");
  INFO(late.out);
  CHECK(late.exit_code != 0);
  CHECK(late.out.find("no live token for this build (dpkg/myproj/linux-amd64/42)") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(s.artifacts_dir() + "/dpkg/myproj/linux-amd64/42/late.txt"));
}

TEST_CASE("cadaver and curl upload and list a build, wget fetches the sealed build whole",
          "[integration][clients]") {
  Servers s;
  WorkDir work(s);
  Stopwatch watch("cadaver, curl and wget");
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/myproj/linux-amd64/43"));
  std::ofstream(work.path + "/pkg.deb") << RandomBytes(100000);
  std::ofstream(work.path + "/notes.txt") << "release notes\n";
  const std::map<std::string, std::string> vars = {
      {"BUILD_URL", s.BaseUrl() + "/dpkg/myproj/linux-amd64/43"},
      {"TOKEN_USER", t.username},
      {"TOKEN_PASS", t.password},
      {"HOME", work.path},  // cadaver reads ~/.netrc
  };
  const std::string curl_put = R"(curl --fail-with-body -u "$TOKEN_USER:$TOKEN_PASS" -T pkg.deb "$BUILD_URL/pkg.deb")";
  const std::string netrc = R"(printf 'machine %s login %s password %s\n' 127.0.0.1 "$TOKEN_USER" "$TOKEN_PASS" >~/.netrc)";
  const std::string cadaver_put = R"(printf 'mkcol docs\nput notes.txt docs/notes.txt\nls docs\n' | cadaver "$BUILD_URL/")";
  const std::string cadaver_ls = R"(echo ls | cadaver "$BUILD_URL/")";
  const std::string wget = R"(wget -q -r -np -nH --cut-dirs=4 -R 'index.html*' "$BUILD_URL/")";
  for (const auto& command : {curl_put, cadaver_put, cadaver_ls, wget}) RequireInClientsDoc(command);

  Run put = Shell(work.path, vars, curl_put);
  INFO(put.out);
  REQUIRE(put.exit_code == 0);
  Run refused = Shell(work.path, vars, R"(curl --fail-with-body -sS -u "$TOKEN_USER:$TOKEN_PASS" -T pkg.deb "$BUILD_URL/a%20b.deb")");
  INFO(refused.out);
  CHECK(refused.exit_code != 0);
  CHECK(refused.out.find("name_not_allowed") != std::string::npos);  // the body, not only "403"

  Run uploaded = Shell(work.path, vars, netrc + "\nchmod 600 ~/.netrc\n" + cadaver_put);
  INFO(uploaded.out);
  CHECK(uploaded.exit_code == 0);
  CHECK(uploaded.out.find("notes.txt") != std::string::npos);
  CHECK(ReadFile(s.artifacts_dir() + "/dpkg/myproj/linux-amd64/43/docs/notes.txt") == "release notes\n");

  REQUIRE(s.Revoke(t.username).status == 200);
  Run listed = Shell(work.path, {{"BUILD_URL", vars.at("BUILD_URL")}, {"HOME", work.path + "/nobody"}}, cadaver_ls);
  INFO(listed.out);
  CHECK(listed.exit_code == 0);
  for (const char* name : {"pkg.deb", "SHA256SUMS", "docs"}) CHECK(listed.out.find(name) != std::string::npos);
  CHECK(listed.out.find("Could not") == std::string::npos);

  std::filesystem::create_directories(work.path + "/fetched");
  Run fetched = Shell(work.path + "/fetched", vars, wget + "\nsha256sum -c SHA256SUMS");
  INFO(fetched.out);
  CHECK(fetched.exit_code == 0);
  CHECK(fetched.out.find("pkg.deb: OK") != std::string::npos);
  CHECK(fetched.out.find("docs/notes.txt: OK") != std::string::npos);
}

TEST_CASE("rclone mount: a build is written through a mounted directory, then read and verified",
          "[integration][clients]") {
  Servers s;
  WorkDir work(s);
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/myproj/linux-amd64/43"));
  const std::string mnt = work.path + "/mnt";
  std::filesystem::create_directories(mnt);
  std::filesystem::create_directories(work.path + "/out/deb");
  std::ofstream(work.path + "/out/deb/pkg.deb") << RandomBytes(300000);
  std::ofstream(work.path + "/out/notes.txt") << "built\n";
  const std::map<std::string, std::string> vars = {
      {"BUILD_URL", s.BaseUrl() + "/dpkg/myproj/linux-amd64/43"},
      {"TOKEN_USER", t.username},
      {"TOKEN_PASS", t.password},
      {"RCLONE_CONFIG", work.path + "/rclone.conf"},
  };
  const std::string create =
      R"(rclone config create art webdav url="$BUILD_URL" vendor=other user="$TOKEN_USER" pass="$TOKEN_PASS" --obscure)";
  const std::string mount = "rclone mount art: ./mnt --daemon";
  const std::string unmount = "fusermount -u ./mnt";
  for (const auto& command : {mount, unmount}) RequireInClientsDoc(command);
  REQUIRE(Shell(work.path, vars, create + " >/dev/null").exit_code == 0);

  // --daemon returns once the mount is up. Without a VFS cache each file is
  // streamed as one PUT while cp writes it (with --vfs-cache-mode writes
  // rclone 1.60 uploads after the unmount returned, or never). The cache
  // directory is the test's own: a stale cache of an earlier run made
  // rclone refuse to create files.
  {
    Stopwatch watch("rclone mount, copy through it, unmount");
    Run r = Shell(work.path, vars,
                  "trap '" + unmount + " 2>/dev/null || true' EXIT\n" + mount +
                      " --cache-dir ./cache --daemon-timeout 20s\n"
                      "mountpoint -q ./mnt\n"
                      "cp -r ./out/. ./mnt/\n",
                  90);
    INFO(r.out);
    CHECK(r.exit_code == 0);
  }
  CHECK(s.Get("/dpkg/myproj/linux-amd64/43/notes.txt").body == "built\n");
  CHECK(s.Get("/dpkg/myproj/linux-amd64/43/deb/pkg.deb").body.size() == 300000);
  REQUIRE(s.Revoke(t.username).status == 200);

  // The sealed build, mounted read-only like any public tree, verifies.
  Run read = Shell(work.path, vars,
                   "trap '" + unmount + " 2>/dev/null || true' EXIT\n"
                   "rclone config create pub webdav url=\"$BUILD_URL\" vendor=other >/dev/null\n"
                   "rclone mount pub: ./mnt --read-only --cache-dir ./cache --daemon --daemon-timeout 20s\n"
                   "mountpoint -q ./mnt\n"
                   "(cd ./mnt && sha256sum -c SHA256SUMS)\n",
                   90);
  INFO(read.out);
  CHECK(read.exit_code == 0);
  CHECK(read.out.find("deb/pkg.deb: OK") != std::string::npos);
  CHECK(read.out.find("notes.txt: OK") != std::string::npos);
  // Never leave a mount behind, whatever failed above.
  (void)Shell(work.path, vars, "! mountpoint -q ./mnt || fusermount -uz ./mnt");
}
