// The tree upload on real nginx + app, driven by the real tar and curl: a
// tar archive POSTed to a directory URL of a build is unpacked into it
// (fcgi/build_tree.h StagedTree); every refusal says why and writes nothing.
#include <Poco/JSON/Object.h>
#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "integration/server_fixture.h"
#include "unit/tar_builder.h"

using artifact::testing::HttpResponse;
using artifact::testing::IssuedToken;
using artifact::testing::ParseObject;
using artifact::testing::ReadFile;
using artifact::testing::Servers;
namespace fs = std::filesystem;

namespace {

// A worker's tree: files in directories, one with a name too long for
// ustar's 100-byte name field.
struct WorkerTree {
  fs::path dir;
  std::string long_name = "deep/" + std::string(120, 'n') + ".txt";
  WorkerTree() {
    std::string tmpl = (fs::temp_directory_path() / "tree-upload-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
    fs::create_directories(dir / "logs/sub");
    fs::create_directories(dir / "deep");
    std::ofstream(dir / "pkg.deb", std::ios::binary) << artifact::testing::RandomBytes(200000);
    std::ofstream(dir / "logs/build.log") << "built\n";
    std::ofstream(dir / "logs/sub/empty.txt");
    std::ofstream(dir / long_name) << "long";
  }
  ~WorkerTree() { fs::remove_all(dir); }
};

// tar of `dir` in `format` piped into curl as a POST to `url`:
// "STATUS BODY".
std::string PostTree(const Servers& s, const fs::path& dir, const std::string& format, const std::string& url,
                     const std::string& user, const std::string& password,
                     const std::string& type = "application/x-tar") {
  auto r = artifact::testing::RunShell("tar -C '" + dir.string() + "' -c --format=" + format + " . 2>/dev/null | curl -sS -u '" + user + ":" + password +
                "' -H 'Content-Type: " + type + "' -T - -X POST -w ' %{http_code}' '" + s.BaseUrl() + url + "'");
  return r.out;
}

std::string Status(const std::string& out) { return out.substr(out.rfind(' ') + 1); }

}  // namespace

TEST_CASE("tar | curl uploads a tree into a build, in every format GNU tar writes", "[integration][upload]") {
  Servers s;
  WorkerTree tree;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/tree/amd64/1"));
  for (const char* format : {"gnu", "ustar", "posix"}) {
    INFO(format);
    const std::string dest = std::string("/dpkg/tree/amd64/1/") + format + "/";
    const std::string out = PostTree(s, tree.dir, format, dest, t.username, t.password);
    if (std::string(format) == "ustar") {
      // ustar cannot hold the long name: tar leaves it out, the rest lands.
      CHECK(Status(out) == "201");
      CHECK(s.Get(dest + "pkg.deb").body == ReadFile((tree.dir / "pkg.deb").string()));
      continue;
    }
    REQUIRE(Status(out) == "201");
    auto answer = ParseObject(out.substr(0, out.rfind(' ')));
    CHECK(answer->getValue<int>("files") == 4);
    CHECK(answer->getValue<int>("bytes") == 200000 + 6 + 0 + 4);
    CHECK(s.Get(dest + "pkg.deb").body == ReadFile((tree.dir / "pkg.deb").string()));
    CHECK(s.Get(dest + "logs/build.log").body == "built\n");
    CHECK(s.Get(dest + "logs/sub/empty.txt").status == 200);
    CHECK(s.Get(dest + tree.long_name).body == "long");
  }
  // Into the build itself, and again over what is there.
  REQUIRE(Status(PostTree(s, tree.dir, "gnu", "/dpkg/tree/amd64/1/", t.username, t.password)) == "201");
  REQUIRE(Status(PostTree(s, tree.dir, "gnu", "/dpkg/tree/amd64/1", t.username, t.password)) == "201");
  CHECK(s.Get("/dpkg/tree/amd64/1/logs/build.log").body == "built\n");
  // The seal lists what the archives brought.
  REQUIRE(s.Revoke(t.username, "?result=success").status == 200);
  const std::string manifest = s.Get("/dpkg/tree/amd64/1/SHA256SUMS").body;
  CHECK(manifest.find("  gnu/" + tree.long_name + "\n") != std::string::npos);
  CHECK(manifest.find("  logs/build.log\n") != std::string::npos);
  // The audit trail names the token, no secret.
  CHECK(s.WaitForAppLog("upload_tree"));
  CHECK(s.AppLog().find(t.password) == std::string::npos);
}

TEST_CASE("a refused tree upload says why and writes nothing", "[integration][upload]") {
  using namespace artifact::testing;
  Servers s;
  WorkerTree tree;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/tree/amd64/2"));
  IssuedToken other = s.Issue(Servers::ScopeBody("dpkg/tree/amd64/3"));
  const auto before = s.Snapshot();
  auto post = [&](const std::string& url, const std::string& body, const std::string& auth,
                  const std::string& type = "application/x-tar") {
    return s.Request("POST", url, body, {{"Authorization", auth}, {"Content-Type", type}});
  };
  const std::string auth = Servers::Basic(t.username, t.password);
  const std::string archive = TarFile("x.txt", "x") + TarEnd();
  struct Case {
    HttpResponse r;
    int status;
    const char* error;
  };
  const std::vector<Case> cases = {
      {s.Request("POST", "/dpkg/tree/amd64/2/", archive, {{"Content-Type", "application/x-tar"}}), 401,
       "unauthorized"},
      {post("/dpkg/tree/amd64/2/", archive, Servers::Basic(other.username, other.password)), 401, "unauthorized"},
      {post("/dpkg/tree/amd64/2/", archive, Servers::Basic(t.username, "wrong")), 401, "unauthorized"},
      {post("/dpkg/tree/amd64/9/", archive, auth), 403, "no_live_token"},
      {post("/dpkg/tree/amd64/", archive, auth), 403, "outside_build"},
      {post("/dpkg/tree/amd64/2/SHA256SUMS/", archive, auth), 403, "seal_name"},
      {post("/dpkg/tree/amd64/2/.git/", archive, auth), 404, "hidden"},
      {post("/dpkg/tree/amd64/2/", archive, auth, "application/octet-stream"), 415, "unsupported_media_type"},
      {post("/dpkg/tree/amd64/2/", TarFile("../../3/evil", "x") + TarEnd(), auth), 400, "bad_request"},
      {post("/dpkg/tree/amd64/2/", TarFile("ok", "1") + TarHeader("link", 0, '2') + TarEnd(), auth), 400,
       "bad_request"},
      {post("/dpkg/tree/amd64/2/", TarFile("SHA256SUMS", "forged") + TarEnd(), auth), 403, "forbidden"},
      {post("/dpkg/tree/amd64/2/", "not a tar archive at all", auth), 400, "bad_request"},
  };
  for (const auto& c : cases) {
    INFO(c.r.body);
    CHECK(c.r.status == c.status);
    CHECK(ParseObject(c.r.body)->getValue<std::string>("error") == c.error);
  }
  // Without the request bodies nginx keeps until a connection is done.
  auto settled = [&s] {
    std::vector<std::string> paths;
    for (const auto& p : s.Snapshot()) {
      if (p.find("/.incoming/") == std::string::npos) paths.push_back(p);
    }
    return paths;
  };
  std::vector<std::string> kept;
  for (const auto& p : before) {
    if (p.find("/.incoming/") == std::string::npos) kept.push_back(p);
  }
  CHECK(settled() == kept);
  // A whole archive that is refused leaves nothing, even its good files.
  CHECK(s.Get("/dpkg/tree/amd64/2/ok").status == 404);
}

TEST_CASE("prune removes what a crashed tree upload left staged", "[integration][upload]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/tree/amd64/4"));
  const std::string builder = s.artifacts_dir() + "/dpkg/tree/amd64";
  const std::string left = builder + "/.4.upload-0123456789abcdef";
  fs::create_directories(left);
  std::ofstream(left + "/0") << "staged by a process that died";
  const std::string fresh = builder + "/.4.upload-fedcba9876543210";
  fs::create_directories(fresh);
  // The app's, as its own would be (the test runs as root), and an hour
  // and a bit old.
  struct stat owner{};
  REQUIRE(::stat(builder.c_str(), &owner) == 0);
  for (const std::string& p : {left, left + "/0", fresh}) REQUIRE(::chown(p.c_str(), owner.st_uid, owner.st_gid) == 0);
  fs::last_write_time(left, fs::file_time_type::clock::now() - std::chrono::minutes(61));
  auto pruned = s.Cli("prune");
  INFO(pruned.out);
  CHECK(pruned.exit_code == 0);
  CHECK(pruned.out.find("removed staged upload dpkg/tree/amd64/.4.upload-0123456789abcdef") != std::string::npos);
  CHECK_FALSE(fs::exists(left));
  CHECK(fs::exists(fresh));  // it may be an upload staging now
  CHECK(s.Put("/dpkg/tree/amd64/4/f", "still open", t.username, t.password).status == 201);
}
