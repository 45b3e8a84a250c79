#include "posix_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace artifact {

Error ErrnoError(const std::string& what, const std::string& path, int err) {
  ErrorCode code = (err == ENOSPC || err == EDQUOT) ? ErrorCode::kInsufficientStorage : ErrorCode::kUnavailable;
  // The cause in words for the client: the class of failure, never the path.
  const char* cause = "the storage reported an error";
  switch (err) {
    case EACCES:
    case EPERM: cause = "permission denied"; break;
    case EROFS: cause = "the filesystem is read-only"; break;
    case ENOENT:
    case ENOTDIR: cause = "a directory is missing"; break;
    case ENOSPC:
    case EDQUOT: cause = "no space left"; break;
    default: break;
  }
  return Error{code, what + " " + path + ": " + std::strerror(err), cause};
}

bool StderrIsJournal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr) return false;
  struct stat st{};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  const std::string expected = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  return expected == env;
}

Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes, bool follow_symlinks) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (follow_symlinks ? 0 : O_NOFOLLOW));
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return Error{ErrorCode::kNotFound, path + " does not exist"};
    return ErrnoError("open", path, err);
  }
  std::string data;
  std::vector<char> buf(4096);
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoError("read", path, err);
    }
    if (n == 0) break;
    data.append(buf.data(), static_cast<size_t>(n));
    if (data.size() > max_bytes) {
      ::close(fd);
      return Error{ErrorCode::kUnavailable, path + " is larger than expected"};
    }
  }
  ::close(fd);
  return data;
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync", dir, err);
  return Ok{};
}

Status MakeDirs(const std::string& base, const std::string& rel, mode_t mode, MkdirFunction make_dir) {
  std::string path = base;
  std::string::size_type start = 0;
  while (start < rel.size()) {
    auto slash = rel.find('/', start);
    std::string seg = rel.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    start = slash == std::string::npos ? rel.size() : slash + 1;
    if (seg.empty()) continue;
    path += "/" + seg;
    int made_rc = make_dir(path.c_str(), mode & 0777);
    for (int wait_ms = 10; made_rc != 0 && errno == EACCES && wait_ms <= 320; wait_ms *= 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
      made_rc = make_dir(path.c_str(), mode & 0777);
    }
    if (made_rc == 0) {
      struct stat made{};
      if (::lstat(path.c_str(), &made) != 0) return ErrnoError("stat", path, errno);
      if ((made.st_mode & 0777) != (mode & 0777)) {
        const mode_t wanted = (mode & 0777) | (made.st_mode & S_ISGID);
        if (::chmod(path.c_str(), wanted) != 0) return ErrnoError("chmod", path, errno);
      }
      // The new entry must survive a crash like the files that go in it.
      if (auto st = FsyncDir(path.substr(0, path.rfind('/'))); !st) return st;
      continue;
    }
    if (errno != EEXIST) return ErrnoError("mkdir", path, errno);
    struct stat st{};
    // lstat: a symlink planted in the tree is never followed.
    if (::lstat(path.c_str(), &st) != 0) return ErrnoError("stat", path, errno);
    if (!S_ISDIR(st.st_mode)) return Error{ErrorCode::kConflict, path + " exists and is not a directory"};
  }
  return Ok{};
}

Result<std::string> WriteTempFile(const std::string& dir, const std::string& content, mode_t mode) {
  std::string path = dir + "/" + kTempPrefix + "XXXXXX";
  int fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoError("create", dir + "/" + kTempPrefix + "*", errno);
  auto fail = [&](const char* what) -> Error {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return ErrnoError(what, path, err);
  };
  if (::fchmod(fd, mode) != 0) return fail("fchmod");
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    return ErrnoError("close", path, err);
  }
  return path;
}

Result<std::vector<ListedName>> ListDirAt(int fd, const std::string& path) {
  // fdopendir takes the descriptor over: a duplicate, so `fd` stays the caller's.
  int listing = ::dup(fd);
  if (listing < 0) return ErrnoError("dup", path, errno);
  DIR* d = ::fdopendir(listing);
  if (d == nullptr) {
    int err = errno;
    ::close(listing);
    return ErrnoError("opendir", path, err);
  }
  // The duplicate shares the directory offset with `fd`: from the start,
  // even when `fd` was listed before.
  ::rewinddir(d);
  std::vector<ListedName> out;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back({std::move(name), e->d_type});
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoError("readdir", path, err);
  return out;
}

}  // namespace artifact
