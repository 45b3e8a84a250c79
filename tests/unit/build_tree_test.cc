#include "build_tree.h"

#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using artifact::BuildPath;
using artifact::ErrorCode;
using artifact::MakeBuildDirs;
using artifact::ParseBuildPath;
using artifact::RemoveBuildDir;

namespace {

namespace fs = std::filesystem;

bool Live() { return true; }

// An artifacts root with the build a/b/c/d, and a directory outside it.
struct Tree {
  std::string root, build, outside;
  Tree() {
    std::string tmpl = (fs::temp_directory_path() / "build-tree-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    root = tmpl + "/artifacts";
    build = root + "/a/b/c/d";
    outside = tmpl + "/outside";
    fs::create_directories(build);
    fs::create_directories(outside + "/sub");
    std::ofstream(outside + "/victim") << "precious";
    std::ofstream(outside + "/sub/victim") << "precious";
  }
  ~Tree() { fs::remove_all(fs::path(root).parent_path()); }
  size_t OutsideCount() const {
    size_t n = 0;
    for (auto it = fs::recursive_directory_iterator(outside); it != fs::recursive_directory_iterator(); ++it) ++n;
    return n;
  }
};

}  // namespace

TEST_CASE("ParseBuildPath splits a URI into the build and the names below it", "[build_tree]") {
  auto p = ParseBuildPath("/a/b/c/d/logs/x.log", 4);
  REQUIRE(p);
  CHECK(p->scope == "a/b/c/d");
  CHECK(p->entries == std::vector<std::string>{"logs", "x.log"});
  auto dir = ParseBuildPath("/a/b/c/d/logs/", 4);
  REQUIRE(dir);
  CHECK(dir->entries == std::vector<std::string>{"logs"});
  CHECK(ParseBuildPath("/a/b/c/d/pkg_1.0+dfsg~1.deb", 4));
  for (const char* bad : {"", "a/b/c/d/x", "/a/b/c/d", "/a/b/c/d/", "/a/b/c/d/../x", "/a/b/c/d/./x",
                          "/a/b/c/d/.hidden", "/a/b/c/d//x", "/a/b/c/d/a b", "/a/b/c/d/x%2f", "/a/b/../d/x",
                          "/token/b/c/d/x", "/a/b/c/d/-x", "/a/b/c/d/x:y"}) {
    INFO(bad);
    auto r = ParseBuildPath(bad, 4);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kBadRequest);
  }
}

TEST_CASE("MakeBuildDirs makes the missing directories below a build only", "[build_tree]") {
  Tree t;
  REQUIRE(::chmod(t.build.c_str(), 02775) == 0);  // a build directory under a setgid root
  const mode_t umask = ::umask(027);                // narrower than the mode asked for
  auto made = MakeBuildDirs(t.root, "a/b/c/d", {"x", "y", "z"}, 0775, Live);
  ::umask(umask);
  REQUIRE(made);
  CHECK(fs::is_directory(t.build + "/x/y/z"));
  struct stat st{};
  REQUIRE(::stat((t.build + "/x/y/z").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 02775);  // widened past the umask, setgid inherited
  CHECK(MakeBuildDirs(t.root, "a/b/c/d", {"x", "y"}, 0775, Live));  // existing: fine
  // A missing build is not made.
  auto missing = MakeBuildDirs(t.root, "a/b/c/e", {"x"}, 0775, Live);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == ErrorCode::kNotFound);
  CHECK_FALSE(fs::exists(t.root + "/a/b/c/e"));
}

TEST_CASE("MakeBuildDirs never follows a symlink or passes a file", "[build_tree]") {
  Tree t;
  fs::create_directory_symlink(t.outside, t.build + "/link");
  std::ofstream(t.build + "/file") << "f";
  const size_t outside = t.OutsideCount();
  for (const auto& dirs : std::vector<std::vector<std::string>>{
           {"link"}, {"link", "new"}, {"link", "sub", "new"}, {"file"}, {"file", "new"}}) {
    auto r = MakeBuildDirs(t.root, "a/b/c/d", dirs, 0775, Live);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kConflict);
  }
  CHECK(t.OutsideCount() == outside);
  // The build directory itself replaced by a link: no build.
  fs::rename(t.build, t.build + "-real");
  fs::create_directory_symlink(t.outside, t.build);
  auto r = MakeBuildDirs(t.root, "a/b/c/d", {"new"}, 0775, Live);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::kNotFound);
  CHECK(t.OutsideCount() == outside);
  // Names are checked here too, not only by nginx.
  CHECK_FALSE(MakeBuildDirs(t.root, "a/b/c/d-real", {".."}, 0775, Live));
  CHECK_FALSE(MakeBuildDirs(t.root, "a/b/c/d-real", {"x/../../y"}, 0775, Live));
}

TEST_CASE("RemoveBuildDir deletes a tree and unlinks, never follows, its symlinks", "[build_tree]") {
  Tree t;
  fs::create_directories(t.build + "/made/deeper");
  std::ofstream(t.build + "/made/deeper/f") << "f";
  std::ofstream(t.build + "/keep") << "k";
  fs::create_directory_symlink(t.outside, t.build + "/made/deeper/link-dir");
  fs::create_symlink(t.outside + "/victim", t.build + "/made/link-file");
  const size_t outside = t.OutsideCount();
  REQUIRE(RemoveBuildDir(t.root, "a/b/c/d", {"made"}, Live));
  CHECK_FALSE(fs::exists(fs::symlink_status(t.build + "/made")));
  CHECK(fs::exists(t.build + "/keep"));
  CHECK(t.OutsideCount() == outside);
  std::ifstream in(t.outside + "/victim");
  std::string content;
  in >> content;
  CHECK(content == "precious");
}

TEST_CASE("RemoveBuildDir refuses a link, a file, the build itself and a missing directory", "[build_tree]") {
  Tree t;
  fs::create_directory_symlink(t.outside, t.build + "/link");
  std::ofstream(t.build + "/file") << "f";
  const size_t outside = t.OutsideCount();
  for (const auto& dir : std::vector<std::vector<std::string>>{{"link"}, {"link", "sub"}, {"file"}}) {
    auto r = RemoveBuildDir(t.root, "a/b/c/d", dir, Live);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kConflict);
  }
  auto missing = RemoveBuildDir(t.root, "a/b/c/d", {"none"}, Live);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == ErrorCode::kNotFound);
  auto build = RemoveBuildDir(t.root, "a/b/c/d", {}, Live);
  REQUIRE_FALSE(build);
  CHECK(build.error().code == ErrorCode::kForbidden);
  CHECK(fs::is_directory(t.build));
  CHECK(fs::is_symlink(t.build + "/link"));
  CHECK(t.OutsideCount() == outside);
}

TEST_CASE("a revoke during a directory operation stops it where it is", "[build_tree]") {
  Tree t;
  fs::create_directories(t.build + "/made");
  for (int i = 0; i < 5; ++i) std::ofstream(t.build + "/made/f" + std::to_string(i)) << i;
  int allowed = 2;  // the token is revoked after two removals
  auto r = RemoveBuildDir(t.root, "a/b/c/d", {"made"}, [&] { return allowed-- > 0; });
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::kConflict);
  size_t left = 0;
  for (auto it = fs::directory_iterator(t.build + "/made"); it != fs::directory_iterator(); ++it) ++left;
  CHECK(left == 3);
  auto made = MakeBuildDirs(t.root, "a/b/c/d", {"new"}, 0775, [] { return false; });
  REQUIRE_FALSE(made);
  CHECK(made.error().code == ErrorCode::kConflict);
  CHECK_FALSE(fs::exists(t.build + "/new"));
}
