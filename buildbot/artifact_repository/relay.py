"""Small trees relayed by the master (pure: no buildbot here but its writer base).

Why (issue 17, bench/RESULTS-buildbot.md): any upload that starts a program
on the worker pays 20-40 ms for the start alone (curl's start is 19 ms on the
bench machine), more than buildbot's own ``DirectoryUpload`` needs for 32
small files. So a small directory goes the way ``DirectoryUpload`` sends it:
the worker's own process archives it (buildbot's ``uploadDirectory``
command, no program start), the master keeps the archive in memory, up to a
bound, and POSTs it to the build as one tree upload (docs/api.md "Tree
upload") with the build's token. Larger trees, links and anything unusual
go by the worker's curl, where the bytes do not pass through the master.
"""

from buildbot.worker.protocols import base

from . import naming

BLOCK_SIZE = 512 * 1024  # per PB message; Twisted's banana refuses strings over 640 KiB


class ArchiveBuffer(base.FileWriterImpl):
    """The writer end of ``uploadDirectory``: the archive's bytes, in memory.

    Holds at most ``limit`` bytes: past it, ``overflow`` is set and the data
    is dropped (the worker is also told ``maxsize`` and stops by itself).
    """

    def __init__(self, limit):
        self.limit = limit
        self.size = 0
        self.overflow = False
        self.complete = False
        self._chunks = []

    def remote_write(self, data):
        if isinstance(data, str):  # a worker on Python 2 sends str
            data = data.encode('latin-1')
        self.size += len(data)
        if self.size > self.limit:
            self.overflow = True
            self._chunks = []
        elif not self.overflow:
            self._chunks.append(data)

    def remote_utime(self, accessed_modified):
        pass

    def remote_close(self):
        pass

    def remote_unpack(self):
        self.complete = True

    def cancel(self):
        self._chunks = []

    def data(self):
        return b''.join(self._chunks)


class Tree:
    """What a relayable archive holds: ``files`` (names below the directory,
    in archive order), ``directories`` and ``body`` (the archive to POST,
    without the entry of the directory itself). ``reason`` is None, or why
    this archive should go by the worker's curl instead."""

    def __init__(self, files=(), directories=0, body=b'', reason=None):
        self.files = list(files)
        self.directories = directories
        self.body = body
        self.reason = reason


_POSIX_MAGIC = b'ustar\0'
_GNU_MAGIC = b'ustar  \0'
_MAX_PAX_HEADER = 64 * 1024  # the server's bounds (fcgi/tar_reader.cc)
_MAX_LONG_NAME = 16 * 1024


def _field(block, start, end):
    return block[start:end].split(b'\0', 1)[0]


def _size(block):
    """The size field as the server reads it: optional leading spaces, 1 to
    11 octal digits, then NULs or spaces. Anything else (GNU's base-256 form,
    signs, underscores: Python's int() takes them) is refused."""
    field = block[124:136].lstrip(b' ')
    digits = field.rstrip(b'\0 ')
    if not 1 <= len(digits) <= 11 or digits.strip(b'01234567'):
        raise ValueError('a size that is not 1 to 11 octal digits')
    return int(digits, 8)


def _pax_path(records):
    """The ``path`` of a pax extended header's records, or None."""
    path, pos = None, 0
    while pos < len(records):
        length, _, _ = records[pos:pos + 20].partition(b' ')
        if not length.isdigit() or int(length) <= len(length) + 1:
            raise ValueError('bad pax record')
        record = records[pos:pos + int(length)]
        key, _, value = record[len(length) + 1:].rstrip(b'\n').partition(b'=')
        if key == b'path':
            path = value
        pos += int(length)
    return path


def _members(data):
    """(offset of its first header, name, typeflag) per member of ``data``,
    read the way the server reads it (fcgi/tar_reader.cc) but from the
    headers only: tarfile's full parse costs about 60 us a member, most of a
    small tree's budget. A member type the server refuses is returned as
    such, and scan() declines the archive."""
    pos, long_name, end = 0, None, len(data)
    while pos + 512 <= end:
        block = data[pos:pos + 512]
        if block == bytes(512):
            if long_name is not None:
                raise ValueError('an extended header without its entry')
            return
        start = pos
        while True:  # extended headers, then the member's own header
            magic = block[257:265]
            if magic[:6] != _POSIX_MAGIC and magic != _GNU_MAGIC:
                raise ValueError('not a ustar header')
            size = _size(block)
            kind = block[156:157]
            pos += 512 + (size + 511) // 512 * 512
            if kind not in (b'x', b'L', b'g'):
                break
            if kind != b'g' and size > (_MAX_PAX_HEADER if kind == b'x' else _MAX_LONG_NAME):
                raise ValueError('an extended header over the server\'s bound')
            body = data[pos - (size + 511) // 512 * 512:][:size]
            if kind == b'x':
                path = _pax_path(body)
                long_name = path if path is not None else long_name
            elif kind == b'L':
                long_name = body.split(b'\0', 1)[0]
            if pos + 512 > end:
                raise ValueError('archive cut short')
            block = data[pos:pos + 512]
        name = long_name
        if name is None:
            name = _field(block, 0, 100)
            prefix = _field(block, 345, 500) if block[257:263] == _POSIX_MAGIC else b''
            if prefix:
                name = prefix + b'/' + name
        long_name = None
        if pos > end:
            raise ValueError('archive cut short')
        yield start, name.decode('utf-8'), kind
    raise ValueError('archive cut short: no end-of-archive block')


def scan(data):
    """The Tree in ``data``, an archive as ``uploadDirectory`` writes it
    (Python's tarfile, ``add(directory, '')``: the directory itself first,
    named '' or '/', then what is below it).

    Only regular files and directories whose every name follows the
    repository's rule are relayed; the server would refuse the rest, where
    the worker's curl skips links and names the bad name before any request.
    """
    try:
        members = list(_members(data))
    except (ValueError, UnicodeDecodeError, IndexError) as e:
        return Tree(reason=f'unreadable archive from the worker: {e}')
    if not members or members[0][2] != b'5' or members[0][1].strip('/.') != '':
        return Tree(reason='not a directory')
    files, directories = {}, set()  # a later entry of a name wins, as on the server
    for _, name, kind in members[1:]:
        name = name.rstrip('/')
        try:
            naming.check_remote_path(name)
        except naming.NameError_:
            return Tree(reason=f'name not allowed: {name!r}')
        if kind == b'5':
            directories.add(name)
        elif kind in (b'0', b'\0'):
            files[name] = None
        else:
            return Tree(reason=f'{name} is not a regular file or a directory')
    if not files:
        return Tree(reason='no files')
    if directories & set(files):
        return Tree(reason='a name that is both a file and a directory')
    return Tree(files, len(directories), data[members[1][0]:])
