"""Unit tests of worker_upload.py, the upload program the worker runs (no servers)."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'buildbot'))
from artifact_repository import naming, worker_upload as wu  # noqa: E402


class CurlConfig(unittest.TestCase):
    def test_quote(self):
        self.assertEqual(wu.quote('a"b\\c'), '"a\\"b\\\\c"')
        with self.assertRaises(wu.Refusal):
            wu.quote('a\nurl = "http://evil/"')

    def test_collections_are_every_parent_parents_first(self):
        self.assertEqual(wu.collections(['a.deb', 'logs/x/y.log', 'logs/z.log', 'b/c']),
                         ['b/', 'logs/', 'logs/x/'])
        self.assertEqual(wu.collections(['top.bin']), [])

    def test_check_comes_first_then_sequential_mkcols(self):
        text = wu.check_and_mkcol_config('/w/.netrc', 'http://h/s/',
                                         ['http://h/s/a/', 'http://h/s/a/b/'], 5)
        lines = text.splitlines()
        self.assertEqual(lines[:3], ['fail-early', 'head', 'fail'])
        self.assertNotIn('parallel', lines)
        self.assertNotIn('retry-connrefused', lines)
        head = lines.index('url = "http://h/s/"')
        nxt = lines.index('next')
        self.assertLess(head, nxt)
        self.assertLess(nxt, lines.index('request = "MKCOL"'))
        self.assertNotIn('fail', lines[nxt:])  # 405 (exists) is an answer, not an error
        self.assertLess(lines.index('url = "http://h/s/a/"'), lines.index('url = "http://h/s/a/b/"'))
        self.assertNotIn('next', wu.check_and_mkcol_config('/n', 'http://h/s/', [], 5).splitlines())
        # A server that accepts and never answers cannot hang the build.
        self.assertEqual(lines.count('max-time = 10'), 2)

    def test_upload_config_pairs_files_and_urls_and_never_retries_refusals(self):
        text = wu.upload_config('/w/.netrc', [('/w/a', 'http://h/s/a'),
                                              ('/w/b', 'http://h/s/b')], parallel=2)
        lines = text.splitlines()
        for option in ('fail', 'fail-early', 'netrc-file = "/w/.netrc"', 'parallel-max = 2'):
            self.assertIn(option, lines)
        self.assertNotIn('retry-connrefused', lines)
        self.assertIn('speed-time = 60', lines)
        i = lines.index('upload-file = "/w/a"')
        self.assertEqual(lines[i + 1:i + 4],
                         ['url = "http://h/s/a"', 'output = "/dev/null"', 'upload-file = "/w/b"'])
        self.assertNotIn('parallel', wu.upload_config('/n', [('/a', 'http://h/a')],
                                                      parallel=4).splitlines())

    def test_parse_write_out(self):
        self.assertEqual(wu.parse_write_out('201 http://h/a\nnoise\n403 http://h/b\n'),
                         [(201, 'http://h/a'), (403, 'http://h/b')])


class FindTransfers(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.top = self.dir.name
        for path in ('dist/a.deb', 'dist/b.deb', 'tree/x/1.txt', 'tree/2.txt', 'other/2.txt',
                     'bad name.txt'):
            full = os.path.join(self.top, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, 'w') as f:
                f.write(path)
        os.symlink('/etc/passwd', os.path.join(self.top, 'tree', 'link'))

    def tearDown(self):
        self.dir.cleanup()

    def find(self, sources, dest=''):
        return wu.find_transfers(self.top, sources, dest, naming.NAME_RULE)

    def test_glob_file_and_tree_sorted_by_remote_name(self):
        got = self.find(['dist/*.deb', 'tree'], dest='out')
        self.assertEqual([r for _, r in got],
                         ['out/2.txt', 'out/a.deb', 'out/b.deb', 'out/x/1.txt'])
        self.assertEqual(dict((r, l) for l, r in got)['out/x/1.txt'],
                         os.path.join(self.top, 'tree', 'x', '1.txt'))

    def test_symlinks_in_a_tree_are_not_uploaded(self):
        self.assertNotIn('link', [r for _, r in self.find(['tree'])])

    def test_refusals_name_the_problem(self):
        for sources, words in ((['nothing*'], 'nothing matches'), (['missing'], 'missing'),
                               (['bad name.txt'], "'bad name.txt' is not"),
                               (['dist/a.deb', 'tree/x/../../dist/a.deb'], None)):
            if words is None:  # one file named twice is uploaded once
                self.assertEqual(len(self.find(sources)), 1)
                continue
            with self.assertRaises(wu.Refusal) as cm:
                self.find(sources)
            self.assertIn(words, str(cm.exception))

    def test_two_files_for_one_name_are_refused(self):
        with self.assertRaises(wu.Refusal) as cm:
            self.find(['tree/2.txt', 'other/2.txt'])
        self.assertIn('would both be', str(cm.exception))


class Output(unittest.TestCase):
    def test_one_short_line_per_file_then_the_outcome(self):
        # buildbot-worker 3.7 cuts lines over 4096 characters and loses text.
        import contextlib
        import io
        import json
        out = {'files': [[f'/w/{i:03d}.bin', f'http://h/s/{i:03d}.bin', 201] for i in range(300)],
               'error': None}
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            wu._print(out)
        lines = buf.getvalue().splitlines()
        self.assertEqual(len(lines), 301)
        self.assertLess(max(len(line) for line in lines), 200)
        self.assertEqual(json.loads(lines[0]), ['/w/000.bin', 'http://h/s/000.bin', 201])
        self.assertEqual(json.loads(lines[-1]), {'files': 300, 'error': None})


if __name__ == '__main__':
    unittest.main()
