"""relay.py: the master's reading of the worker's archive and its bounded buffer.

Archives are made the way the worker's uploadDirectory makes them (Python's
tarfile, ``add(directory, '')``) in each of tarfile's formats, and compared with
tarfile's own full parse.
"""

import io
import os
import signal
import sys
import tarfile
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'buildbot'))
from artifact_repository import relay  # noqa: E402

LONG = 'a' * 60 + '/' + 'b' * 70 + '/' + 'c' * 90  # over ustar's 100-byte name field


def archive(top, fmt=tarfile.PAX_FORMAT, path=None):
    """What uploadDirectory sends for ``path`` (default: the directory ``top``)."""
    out = io.BytesIO()
    with tarfile.open(mode='w', fileobj=out, format=fmt) as tar:
        tar.add(path or top, '')
    return out.getvalue()


class Scan(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.top = tmp.name

    def put(self, name, data=b'x'):
        path = os.path.join(self.top, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)
        return path

    def test_every_tarfile_format_with_long_names_reads_as_tarfile_reads_it(self):
        self.put('index.html', b'<h1>x</h1>')
        self.put('docs/part1.dat', os.urandom(3000))
        self.put(LONG + '/deep.txt', b'deep')
        os.makedirs(os.path.join(self.top, 'empty'))
        for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
            with self.subTest(format=fmt):
                data = archive(self.top, fmt)
                members = tarfile.open(fileobj=io.BytesIO(data)).getmembers()
                tree = relay.scan(data)
                self.assertIsNone(tree.reason)
                self.assertEqual(tree.files, [m.name for m in members if m.isreg()])
                self.assertIn(LONG + '/deep.txt', tree.files)
                self.assertEqual(tree.directories, sum(1 for m in members[1:] if m.isdir()))
                # The body is the archive without the directory's own entry
                # (named '/', which the server refuses as absolute).
                self.assertEqual(tree.body, data[members[1].offset:])
                rest = tarfile.open(fileobj=io.BytesIO(tree.body)).getmembers()
                self.assertEqual([m.name for m in rest], [m.name for m in members[1:]])
                self.assertEqual(rest[0].name.strip('/'), rest[0].name)

    def test_a_symlink_or_hard_link_goes_by_the_worker(self):
        self.put('a.txt')
        os.symlink('a.txt', os.path.join(self.top, 'link'))
        self.assertEqual(relay.scan(archive(self.top)).reason,
                         'link is not a regular file or a directory')
        os.unlink(os.path.join(self.top, 'link'))
        os.link(os.path.join(self.top, 'a.txt'), os.path.join(self.top, 'b.txt'))
        self.assertRegex(relay.scan(archive(self.top)).reason,
                         r'^[ab]\.txt is not a regular file or a directory$')

    def test_a_name_outside_the_rule_goes_by_the_worker(self):
        self.put('ok.txt')
        self.put('.hidden')
        self.assertEqual(relay.scan(archive(self.top)).reason, "name not allowed: '.hidden'")
        os.unlink(os.path.join(self.top, '.hidden'))
        self.put('sub dir/x.txt')
        self.assertEqual(relay.scan(archive(self.top)).reason, "name not allowed: 'sub dir'")

    def test_a_file_an_empty_tree_and_bad_bytes_are_not_relayed(self):
        path = self.put('one.bin')
        self.assertEqual(relay.scan(archive(self.top, path=path)).reason, 'not a directory')
        os.unlink(path)
        os.makedirs(os.path.join(self.top, 'only/dirs'))
        self.assertEqual(relay.scan(archive(self.top)).reason, 'no files')
        self.assertRegex(relay.scan(b'').reason, '^unreadable archive')
        self.put('only/f.txt')
        data = archive(self.top)
        self.assertRegex(relay.scan(data[:1024 + 512 + 100]).reason, '^unreadable archive')
        broken = bytearray(data)
        broken[124:136] = b'zzzzzzzzzzz\0'  # the size of the first header
        self.assertRegex(relay.scan(bytes(broken)).reason, '^unreadable archive')


def header(name, size=0, kind=b'0', magic=b'ustar\x0000', prefix=b'', size_field=None):
    block = bytearray(512)
    block[0:len(name)] = name
    block[124:136] = size_field if size_field is not None else b'%011o\0' % size
    block[156:157] = kind
    block[257:265] = magic
    block[345:345 + len(prefix)] = prefix
    block[148:156] = b' ' * 8
    block[148:156] = b'%06o\0 ' % sum(block)
    return bytes(block)


def crafted(*members):
    """A root directory entry, ``members`` (header, data) and the end blocks."""
    out = header(b'/', kind=b'5')
    for head, data in members:
        out += head + data + bytes(-len(data) % 512)
    return out + bytes(1024)


class HostileWorker(unittest.TestCase):
    """Bytes a worker could send instead of tarfile's: the master must end,
    decline or read them as the server reads them (fcgi/tar_reader.cc)."""

    def test_a_negative_or_signed_size_is_refused_not_looped_on(self):
        def hung(*_):
            raise AssertionError('scan() did not end: it loops on a size that does not advance')
        self.addCleanup(signal.signal, signal.SIGALRM, signal.signal(signal.SIGALRM, hung))
        signal.alarm(10)
        self.addCleanup(signal.alarm, 0)
        for kind in (b'g', b'x', b'L', b'0'):
            for field in (b'-1000\0', b'+1\0', b'1_0\0', b'0o17\0', b'\x80' + bytes(10) + b'\x01'):
                with self.subTest(kind=kind, field=field):
                    data = crafted((header(b'a', kind=kind, size_field=field.ljust(12, b'\0')), b''))
                    self.assertRegex(relay.scan(data).reason, '^unreadable archive')

    def test_extended_headers_over_the_servers_bounds_are_refused(self):
        records = b''.join(b'%d path=x\n' % len(b'00 path=x\n') for _ in range(7000))
        self.assertGreater(len(records), 64 * 1024)
        data = crafted((header(b'p', len(records), b'x'), records), (header(b'f', 1), b'x'))
        self.assertRegex(relay.scan(data).reason, '^unreadable archive')
        name = b'n' * (16 * 1024 + 1)
        data = crafted((header(b'././@LongLink', len(name), b'L', magic=b'ustar  \0'), name),
                       (header(b'f', 1, magic=b'ustar  \0'), b'x'))
        self.assertRegex(relay.scan(data).reason, '^unreadable archive')

    def test_the_prefix_field_counts_only_in_posix_headers(self):
        gnu = crafted((header(b'name1', 1, magic=b'ustar  \0', prefix=b'pfx'), b'x'))
        self.assertEqual(relay.scan(gnu).files, ['name1'])
        posix = crafted((header(b'name1', 1, prefix=b'pfx'), b'x'))
        self.assertEqual(relay.scan(posix).files, ['pfx/name1'])

    def test_a_name_sent_twice_is_one_file_as_on_the_server(self):
        data = crafted((header(b'a', 1), b'x'), (header(b'a', 1), b'y'))
        self.assertEqual(relay.scan(data).files, ['a'])

    def test_types_the_server_refuses_are_declined(self):
        for kind in (b'7', b'K', b'1', b'2', b'3', b'6'):
            with self.subTest(kind=kind):
                data = crafted((header(b'a', 0, kind), b''), (header(b'b', 1), b'x'))
                self.assertIsNotNone(relay.scan(data).reason)

    def test_a_name_both_file_and_directory_is_declined(self):
        data = crafted((header(b'a', 1), b'x'), (header(b'a/', 0, b'5'), b''))
        self.assertEqual(relay.scan(data).reason, 'a name that is both a file and a directory')


class Buffer(unittest.TestCase):
    def test_holds_what_fits_and_drops_everything_past_the_limit(self):
        buf = relay.ArchiveBuffer(10)
        buf.remote_write(b'12345')
        buf.remote_write('67890')  # a Python 2 worker's str
        self.assertEqual(buf.data(), b'1234567890')
        self.assertFalse(buf.overflow)
        buf.remote_write(b'!')
        self.assertTrue(buf.overflow)
        self.assertEqual(buf.data(), b'')
        buf.remote_write(b'x')
        self.assertEqual(buf.data(), b'', 'nothing is kept once over the limit')
        self.assertFalse(buf.complete)
        buf.remote_unpack()
        self.assertTrue(buf.complete)

    def test_cancel_drops_the_bytes(self):
        buf = relay.ArchiveBuffer(100)
        buf.remote_write(b'abc')
        buf.cancel()
        self.assertEqual(buf.data(), b'')


if __name__ == '__main__':
    unittest.main()
