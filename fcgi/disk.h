// The filesystem seam, in the manner of ninja's DiskInterface and leveldb's
// Env: the calls by which the token store and the builds decide (read, lock)
// and act (link, rename, unlink) on files that other processes and nodes
// share. PosixDisk is the real one. A test derives from it to pause an
// operation between its check and its act and run a competing operation
// there, which turns each race into a deterministic test. Everything else
// (temp files, fsync, mkdir) stays plain POSIX in posix_file.h.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <utility>

#include "result.h"

namespace artifact {

// An exclusive lock on a lock file, held until destruction, which first
// unlinks the file (no lock file outlives its operation) and then releases
// the lock. Move-only.
class FileLock {
 public:
  FileLock() = default;
  FileLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~FileLock();
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  void Release();
  int fd_ = -1;
  std::string path_;
};

class Disk {
 public:
  virtual ~Disk() = default;

  // A whole small file; kNotFound when it does not exist. Never follows a
  // symlink.
  virtual Result<std::string> Read(const std::string& path, size_t max_bytes);
  // link(2), rename(2), unlink(2): 0 or the errno.
  virtual int Link(const std::string& from, const std::string& to) = 0;
  virtual int Rename(const std::string& from, const std::string& to) = 0;
  virtual int Unlink(const std::string& path) = 0;
  // Takes the exclusive lock of `path`, creating the file; its directory
  // must exist (kNotFound otherwise). With `wait` false a lock held by
  // anyone else is kConflict at once; with `wait` it blocks until free.
  virtual Result<FileLock> Lock(const std::string& path, bool wait) = 0;

  // The real filesystem; stateless, shared by everything that is not a test.
  static Disk& Default();
};

// The one atomic replace (leveldb's SetCurrentFile): `content` is written to
// a temp file beside `dir`/`name` (mode `mode`, fsynced), renamed over it
// through `disk`, and the directory fsynced; the temp file goes on any
// failure. Readers see the old file or the new one, never a part.
Status ReplaceFile(Disk& disk, const std::string& dir, const std::string& name, const std::string& content,
                   mode_t mode);

class PosixDisk : public Disk {
 public:
  int Link(const std::string& from, const std::string& to) override;
  int Rename(const std::string& from, const std::string& to) override;
  int Unlink(const std::string& path) override;
  Result<FileLock> Lock(const std::string& path, bool wait) override;
};

}  // namespace artifact
