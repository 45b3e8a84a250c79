#include "build_tree.h"

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "unit/tar_builder.h"

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

namespace {

using artifact::StagedTree;
using artifact::TarReader;
using namespace artifact::testing;

artifact::ReadFunction Bytes(const std::string& bytes) {
  auto pos = std::make_shared<size_t>(0);
  return [bytes, pos](char* buf, size_t n) -> artifact::Result<size_t> {
    const size_t step = std::min(n, bytes.size() - *pos);
    std::memcpy(buf, bytes.data() + *pos, step);
    *pos += step;
    return step;
  };
}

artifact::Result<StagedTree> Stage(const Tree& t, const std::string& archive,
                                   const std::vector<std::string>& target = {}) {
  TarReader reader(Bytes(archive));
  return StagedTree::Stage(t.root, "a/b/c/d", target, reader);
}

// The hidden names beside the build (its builder directory a/b/c).
std::vector<std::string> Beside(const Tree& t) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(t.root + "/a/b/c")) {
    if (e.path().filename().string()[0] == '.') names.push_back(e.path().filename().string());
  }
  return names;
}

std::string Content(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("ParseArchivePath takes tar's names below the target, nothing else", "[build_tree][upload]") {
  using artifact::ParseArchivePath;
  CHECK(ParseArchivePath("./a/b.txt").value() == std::vector<std::string>{"a", "b.txt"});
  CHECK(ParseArchivePath("a/b/").value() == std::vector<std::string>{"a", "b"});
  CHECK(ParseArchivePath("./").value().empty());
  CHECK(ParseArchivePath(".").value().empty());
  for (const char* bad : {"/etc/passwd", "../x", "a/../../x", "a//b", "./.git/config", "a/./b", "a b", "-x", "a\\b",
                          "x/\n"}) {
    INFO(bad);
    auto r = ParseArchivePath(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kBadRequest);
  }
}

TEST_CASE("a staged tree lands in the build only at its commit, and leaves nothing beside it", "[build_tree][upload]") {
  Tree t;
  const std::string archive = TarDir("./") + TarDir("./empty/") + TarFile("./logs/build.log", "log") +
                              TarFile("./pkg.deb", "old") + TarFile("./pkg.deb", "new") + TarEnd();
  {
    auto staged = Stage(t, archive, {"out"});
    REQUIRE(staged);
    CHECK(staged->count().files == 2);
    CHECK(staged->count().directories == 1);
    CHECK(staged->count().bytes == 9);
    CHECK_FALSE(fs::exists(t.build + "/out"));  // nothing in the build before the commit
    CHECK(Beside(t).size() == 1);
    REQUIRE(staged->Commit());
  }
  CHECK(Content(t.build + "/out/logs/build.log") == "log");
  CHECK(Content(t.build + "/out/pkg.deb") == "new");  // a later entry of a name wins, as tar extracts
  CHECK(fs::is_directory(t.build + "/out/empty"));
  struct stat st{};
  REQUIRE(::stat((t.build + "/out/pkg.deb").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0664);  // as nginx's dav_access writes an upload
  CHECK(Beside(t).empty());             // the staging directory is gone
  // A second upload replaces files, keeps the others.
  {
    auto again = Stage(t, TarFile("pkg.deb", "newer") + TarEnd(), {"out"});
    REQUIRE(again);
    REQUIRE(again->Commit());
  }
  CHECK(Content(t.build + "/out/pkg.deb") == "newer");
  CHECK(Content(t.build + "/out/logs/build.log") == "log");
  // Dropped without a commit (a revoke came first): nothing lands.
  {
    auto dropped = Stage(t, TarFile("late.txt", "x") + TarEnd());
    REQUIRE(dropped);
  }
  CHECK_FALSE(fs::exists(t.build + "/late.txt"));
  CHECK(Beside(t).empty());
}

TEST_CASE("a refused archive stages nothing and leaves nothing", "[build_tree][upload]") {
  Tree t;
  struct Case {
    std::string archive;
    ErrorCode code;
    const char* words;
  };
  std::string deep;
  for (size_t i = 0; i < artifact::kMaxEntriesBelowBuild; ++i) deep += "d/";
  const std::vector<Case> cases = {
      {TarFile("ok", "1") + TarFile("../escape", "x") + TarEnd(), ErrorCode::kBadRequest, "../escape"},
      {TarFile("ok", "1") + TarFile("/etc/cron.d/x", "x") + TarEnd(), ErrorCode::kBadRequest, "/etc/cron.d/x"},
      {TarFile(".hidden", "x") + TarEnd(), ErrorCode::kBadRequest, "not allowed"},
      {TarFile("ok", "1") + TarHeader("link", 0, '2') + TarEnd(), ErrorCode::kBadRequest, "link is a symlink"},
      {TarFile("SHA256SUMS", "forged") + TarEnd(), ErrorCode::kForbidden, "SHA256SUMS"},
      {TarDir("SHA256SUMS/") + TarEnd(), ErrorCode::kForbidden, "SHA256SUMS"},
      {TarFile("x", "1") + TarFile("x/y", "2") + TarEnd(), ErrorCode::kBadRequest, "both as a file and as a directory"},
      {TarFile(deep + "f", "1") + TarEnd(), ErrorCode::kBadRequest, "names deep"},
      {TarFile("./", "1") + TarEnd(), ErrorCode::kBadRequest, "no name"},
      {TarFile("ok", "1") + TarHeader("cut", 100) + "short", ErrorCode::kBadRequest, "ends inside"},
  };
  for (const auto& c : cases) {
    INFO(c.words);
    auto r = Stage(t, c.archive);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == c.code);
    CHECK(r.error().message.find(c.words) != std::string::npos);
    CHECK(Beside(t).empty());
  }
  CHECK(fs::is_empty(t.build));
  // SHA256SUMS deeper in the build is the build's own.
  auto deeper = Stage(t, TarFile("SHA256SUMS", "mine") + TarEnd(), {"sub"});
  REQUIRE(deeper);
  REQUIRE(deeper->Commit());
  CHECK(Content(t.build + "/sub/SHA256SUMS") == "mine");
}

TEST_CASE("a commit never follows a symlink and stops at a directory in a file's place", "[build_tree][upload]") {
  Tree t;
  fs::create_directory_symlink(t.outside, t.build + "/link");
  const size_t outside = t.OutsideCount();
  auto through = Stage(t, TarFile("link/victim", "owned") + TarEnd());
  REQUIRE(through);
  auto r = through->Commit();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::kConflict);
  auto target = Stage(t, TarFile("x", "owned") + TarEnd(), {"link", "sub"});
  REQUIRE(target);
  CHECK_FALSE(target->Commit());
  CHECK(t.OutsideCount() == outside);
  CHECK(Content(t.outside + "/victim") == "precious");
  // A symlink at a file's name is replaced, not followed.
  fs::create_symlink(t.outside + "/victim", t.build + "/file-link");
  auto over = Stage(t, TarFile("file-link", "mine") + TarEnd());
  REQUIRE(over);
  REQUIRE(over->Commit());
  CHECK(Content(t.outside + "/victim") == "precious");
  CHECK_FALSE(fs::is_symlink(t.build + "/file-link"));
  // A directory where the archive has a file: 409, naming it.
  fs::create_directories(t.build + "/dir/inside");
  auto onto = Stage(t, TarFile("dir", "x") + TarEnd());
  REQUIRE(onto);
  auto refused = onto->Commit();
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == ErrorCode::kConflict);
  CHECK(refused.error().message.find("a/b/c/d/dir is a directory") != std::string::npos);
  CHECK(Beside(t).empty() == false);  // still staged until dropped
}

TEST_CASE("a commit checks first: a directory in a file's place changes nothing", "[build_tree][upload]") {
  // Found by the attack review: the first version renamed the files before
  // the conflicting one, then answered 409.
  Tree t;
  std::ofstream(t.build + "/keep.txt") << "kept";
  fs::create_directories(t.build + "/z/inside");
  std::ofstream(t.build + "/file") << "a file";
  for (const std::string& archive :
       {TarFile("keep.txt", "replaced") + TarFile("newdir/new.txt", "x") + TarFile("z", "x") + TarEnd(),
        TarFile("keep.txt", "replaced") + TarFile("file/below.txt", "x") + TarEnd(),
        TarFile("keep.txt", "replaced") + TarDir("file/") + TarEnd()}) {
    auto staged = Stage(t, archive);
    REQUIRE(staged);
    auto r = staged->Commit();
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kConflict);
    CHECK(Content(t.build + "/keep.txt") == "kept");
    CHECK_FALSE(fs::exists(t.build + "/newdir"));
  }
  // Into a target that is a file: the same.
  auto into_file = Stage(t, TarFile("x", "x") + TarEnd(), {"file"});
  REQUIRE(into_file);
  CHECK_FALSE(into_file->Commit());
  CHECK(Content(t.build + "/file") == "a file");
}

TEST_CASE("a commit holds one descriptor per level, whatever the number of directories", "[build_tree][upload]") {
  // Found by the attack review: one descriptor per directory ran out at
  // systemd's default limit of 1,024 (503, 1,015 empty directories left).
  Tree t;
  std::string archive;
  for (int i = 0; i < 300; ++i) archive += TarFile("d" + std::to_string(i) + "/sub/f", "x");
  archive += TarEnd();
  auto staged = Stage(t, archive, {"out"});
  REQUIRE(staged);
  struct rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  struct rlimit low = old;
  low.rlim_cur = 64;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  auto r = staged->Commit();
  ::setrlimit(RLIMIT_NOFILE, &old);
  REQUIRE(r);
  CHECK(Content(t.build + "/out/d299/sub/f") == "x");
}

TEST_CASE("an archive's entries, the directories they make included, are bounded", "[build_tree][upload]") {
  // Each entry makes two directories: 50,001 entries are over the limit of
  // 100,000 (found by the attack review: paths held in full per entry let a
  // 51 MB archive take 1.7 GB).
  Tree t;
  std::string archive;
  archive.reserve(50001 * 512 + 1024);
  for (int i = 0; i <= 50000; ++i) archive += TarDir("a" + std::to_string(i) + "/b/");
  archive += TarEnd();
  auto r = Stage(t, archive);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::kBadRequest);
  CHECK(r.error().message.find("more than 100000") != std::string::npos);
  CHECK(Beside(t).empty());
  // 49,999 such entries are fine.
  archive.clear();
  for (int i = 0; i < 49999; ++i) archive += TarDir("a" + std::to_string(i) + "/b/");
  CHECK(Stage(t, archive + TarEnd()));
}

TEST_CASE("staging directories a crash left are removed when old, nothing else", "[build_tree][upload]") {
  Tree t;
  const std::string builder = t.root + "/a/b/c";
  auto make_old = [](const std::string& path, int64_t age) {
    const timespec times[2] = {{::time(nullptr) - age, 0}, {::time(nullptr) - age, 0}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
  };
  fs::create_directories(builder + "/.d.upload-00112233aabbccdd/0");
  std::ofstream(builder + "/.d.upload-00112233aabbccdd/0/1") << "staged";
  make_old(builder + "/.d.upload-00112233aabbccdd", 7200);
  fs::create_directories(builder + "/.d.upload-fresh");  // an upload staging now
  fs::create_directories(builder + "/.d.frozen-old");     // not a staging directory
  make_old(builder + "/.d.frozen-old", 7200);
  fs::create_directory_symlink(t.outside, builder + "/.d.upload-link");
  make_old(builder + "/.d.upload-link", 7200);
  std::vector<std::string> removed;
  REQUIRE(StagedTree::RemoveStale(t.root, "a/b/c", ::time(nullptr), 3600, &removed));
  CHECK(removed == std::vector<std::string>{"a/b/c/.d.upload-00112233aabbccdd"});
  CHECK_FALSE(fs::exists(builder + "/.d.upload-00112233aabbccdd"));
  CHECK(fs::exists(builder + "/.d.upload-fresh"));
  CHECK(fs::exists(builder + "/.d.frozen-old"));
  CHECK(fs::is_symlink(builder + "/.d.upload-link"));
  CHECK(fs::exists(t.outside + "/victim"));
  CHECK(fs::is_directory(t.build));
}

TEST_CASE("at scope_depth 1 a tree is staged in the artifacts root", "[build_tree][upload]") {
  Tree t;
  fs::create_directories(t.root + "/solo");
  {
    TarReader reader(Bytes(TarFile("f.txt", "solo") + TarEnd()));
    auto staged = StagedTree::Stage(t.root, "solo", {}, reader);
    REQUIRE(staged);
    CHECK(fs::is_empty(t.root + "/solo"));  // staged beside the build, not in it
    REQUIRE(staged->Commit());
  }
  CHECK(Content(t.root + "/solo/f.txt") == "solo");
  std::vector<std::string> removed;
  REQUIRE(StagedTree::RemoveStale(t.root, "", ::time(nullptr) + 7200, 3600, &removed));
  CHECK(removed.empty());  // the upload removed its own
}
