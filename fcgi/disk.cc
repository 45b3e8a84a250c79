#include "disk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "posix_file.h"

namespace artifact {

FileLock::~FileLock() { Release(); }

FileLock::FileLock(FileLock&& other) noexcept : fd_(other.fd_), path_(std::move(other.path_)) { other.fd_ = -1; }

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    Release();
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    other.fd_ = -1;
  }
  return *this;
}

void FileLock::Release() {
  if (fd_ < 0) return;
  // Unlink while still holding: a process waiting on this inode finds, once
  // it has the lock, that the path names another inode (or none) and tries
  // again (PosixDisk::Lock), so two holders can never coexist.
  ::unlink(path_.c_str());
  ::close(fd_);
  fd_ = -1;
}

Result<std::string> Disk::Read(const std::string& path, size_t max_bytes) { return ReadSmallFile(path, max_bytes); }

int PosixDisk::Link(const std::string& from, const std::string& to) {
  return ::link(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

int PosixDisk::Rename(const std::string& from, const std::string& to) {
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

int PosixDisk::Unlink(const std::string& path) { return ::unlink(path.c_str()) == 0 ? 0 : errno; }

// Open file description locks (F_OFD_SETLK): owned by the open file, not the
// process, so two threads of one process exclude each other (classic fcntl
// locks would not), released by the kernel when the holder dies (no stale
// lock after a SIGKILL), and byte-range locks, which NFS and GlusterFS carry
// to the other nodes of a shared volume.
Result<FileLock> PosixDisk::Lock(const std::string& path, bool wait) {
  while (true) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT) return Error{ErrorCode::kNotFound, "no directory for lock " + path};
      return ErrnoError("open", path, err);
    }
    struct flock fl{};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    int rc;
    do {
      rc = ::fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      int err = errno;
      ::close(fd);
      if (err == EAGAIN || err == EACCES) return Error{ErrorCode::kConflict, path + " is locked"};
      return ErrnoError("lock", path, err);
    }
    // The holder before us may have unlinked the file on release: then the
    // lock we got is on an inode nobody else will ever see; start over.
    struct stat held{}, named{};
    if (::fstat(fd, &held) == 0 && ::lstat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
        held.st_ino == named.st_ino) {
      return FileLock(fd, path);
    }
    ::close(fd);
  }
}

Status ReplaceFile(Disk& disk, const std::string& dir, const std::string& name, const std::string& content,
                   mode_t mode) {
  auto temp = WriteTempFile(dir, content, mode);
  if (!temp) return temp.error();
  const std::string path = dir + "/" + name;
  if (int err = disk.Rename(temp.value(), path); err != 0) {
    ::unlink(temp->c_str());
    return ErrnoError("rename", path, err);
  }
  return FsyncDir(dir);
}

Disk& Disk::Default() {
  static PosixDisk disk;
  return disk;
}

}  // namespace artifact
