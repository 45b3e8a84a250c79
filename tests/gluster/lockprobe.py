"""Open file description locks (F_OFD_SETLK/F_OFD_SETLKW), as the app takes
them (fcgi/disk.cc), for tests/gluster/faults.sh: do they exclude across the
FUSE mounts of several hosts?

  lockprobe.py hold PATH HELD RELEASE   lock, create HELD, wait for RELEASE (60 s at most)
  lockprobe.py try PATH                 exit 0 if the lock was free (then taken and let go),
                                        3 if another holder has it, 1 on any other error
  lockprobe.py wait PATH GOT            block until the lock is free, then create GOT
"""
import errno
import fcntl
import os
import struct
import sys
import time


def lock(fd, wait):
    # struct flock on Linux x86-64: l_type, l_whence, l_start, l_len, l_pid
    # (0 for OFD locks), padded to 32 bytes. The whole file, for writing.
    flock = struct.pack('hhqqi4x', fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, flock)


def main(argv):
    mode, path = argv[1], argv[2]
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if mode == 'hold':
        lock(fd, wait=False)
        open(argv[3], 'w').close()
        deadline = time.monotonic() + 60
        while not os.path.exists(argv[4]) and time.monotonic() < deadline:
            time.sleep(0.05)
        return 0
    if mode == 'try':
        try:
            lock(fd, wait=False)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return 3
            raise
        return 0
    if mode == 'wait':
        lock(fd, wait=True)
        open(argv[3], 'w').close()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
