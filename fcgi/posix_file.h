// Thin, errno-preserving wrappers over the POSIX calls the token store needs.
// Failures come back as Errors whose code reflects errno: ENOSPC/EDQUOT are
// 507 (disk full), everything else unexpected is 503 (store unusable).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "result.h"

namespace artifact {

// An owned descriptor, closed on every path out.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

Error ErrnoError(const std::string& what, const std::string& path, int err);

// Reads a whole small file (password files are a few hundred bytes). A
// symlink is refused unless `follow_symlinks` (token files are never links;
// a masters file may be, e.g. a mounted secret).
Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 65536, bool follow_symlinks = false);

// True when stderr is the stream systemd connected to journald
// ($JOURNAL_STREAM names its device and inode; a redirect elsewhere differs).
bool StderrIsJournal();

// fsync of a directory, so a create/link/rename/unlink in it is durable.
Status FsyncDir(const std::string& dir);

// The entries of the open directory `fd` (`path` names it in errors), without
// "." and "..": each name with its dirent type (DT_UNKNOWN where the
// filesystem does not say). `fd` stays open and is not moved.
struct ListedName {
  std::string name;
  unsigned char type;
};
Result<std::vector<ListedName>> ListDirAt(int fd, const std::string& path);

// mkdir -p of `rel` below the existing directory `base`; each directory it
// creates gets the permission bits `mode` (0777 at most: no setuid/setgid/
// sticky) and its parent is fsynced. A setgid bit is never asked for, only
// inherited from a setgid parent, as the kernel does on mkdir: systemd's
// RestrictSUIDSGID= refuses every mkdir or chmod whose mode carries S_ISGID
// (EPERM), so asking for it makes a hardened service unable to create a
// build. Only when the umask narrowed `mode` is it widened by chmod, keeping
// the inherited setgid bit (then a hardened service fails; its unit sets
// UMask=0002 so that never happens).
// A mkdir refused with EACCES is tried again for about 0.6 s: on GlusterFS
// replica 3 a directory that another node has just made is, for a moment,
// not yet its owner's on one brick (seen in make test-gluster: every issue
// of one builder made at once from three nodes answered 503). `make_dir` is
// the seam a test uses to be refused.
using MkdirFunction = int (*)(const char* path, mode_t mode);
Status MakeDirs(const std::string& base, const std::string& rel, mode_t mode, MkdirFunction make_dir = ::mkdir);

// A new file of `content` next to its final names: mkstemp in `dir`, fchmod,
// write, fsync, close. Returns the temp path; the caller links or renames it.
Result<std::string> WriteTempFile(const std::string& dir, const std::string& content, mode_t mode);

// Temp files are named with this prefix so prune can find leftovers.
inline constexpr const char* kTempPrefix = ".tmp-";

}  // namespace artifact
