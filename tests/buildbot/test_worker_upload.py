"""Unit tests of the worker's upload command: worker_upload.py (the master's
half) and worker_upload.sh, run for real with sh, find and awk and a stub curl
that records its config and answers every URL (no servers)."""

import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'buildbot'))
from artifact_repository import worker_upload as wu  # noqa: E402

# Records its config (from stdin, or from the file named by --config while
# stdin carries the archive, which it records too), then answers each
# transfer as curl's write-out would: the HEAD check with 200, the rest with
# $STATUS; the archive's POST also as the server would, on stderr.
STUB_CURL = r'''#!/bin/sh
if [ "$2" = - ]; then
  cat >"$CONFIG_COPY"
else
  cat "$2" >"$CONFIG_COPY"
  cat >"$TAR_COPY"
fi
awk -v status="$STATUS" '
  /^head$/ { method = "HEAD" }
  /^request = "POST"$/ { method = "POST" }
  /^next$/ { method = "" }
  /^url = "/ {
    url = substr($0, 8, length($0) - 8)
    m = method ? method : "PUT"
    print (m == "HEAD" ? 200 : status) " " m " " url
  }' "$CONFIG_COPY"
if [ "$2" != - ]; then
  case $STATUS in
    2*) printf '{"bytes":1,"directories":0,"files":%s}\n' "$(tar -tf "$TAR_COPY" | wc -l)" >&2 ;;
    *) printf '{"error": "refused", "message": "the stub refuses"}\n' >&2 ;;
  esac
fi
exit "$EXIT"
'''
BASE = 'http://h/t/p/b/1/'


class CurlConfig(unittest.TestCase):
    def test_quote(self):
        self.assertEqual(wu.quote('a"b\\c'), '"a\\"b\\\\c"')
        with self.assertRaises(wu.Refusal):
            wu.quote('a\nurl = "http://evil/"')

    def test_header_checks_the_server_first_then_the_options_of_each_group(self):
        lines = wu.config_header('/w/.netrc', BASE, parallel=8, connect_timeout=5).splitlines()
        self.assertEqual(lines[:3], ['fail-early', 'parallel', 'parallel-max = 8'])
        head, nxt = lines.index('head'), lines.index('next')
        self.assertLess(head, lines.index(f'url = "{BASE}"'))
        self.assertLess(lines.index(f'url = "{BASE}"'), nxt)
        # A server that accepts and never answers cannot hang the build: the
        # check has a time limit and no retry.
        self.assertIn('max-time = 10', lines[head:nxt])
        self.assertNotIn('retry = 3', lines[head:nxt])
        self.assertEqual(nxt, len(lines) - 1)
        put = wu.put_options('/w/.netrc', retries=3).splitlines()
        for option in ('fail', 'netrc-file = "/w/.netrc"', 'retry = 3', 'speed-time = 60'):
            self.assertIn(option, put)
        # The archive is read from a pipe: it cannot be sent twice. The
        # server's reason for a refusal is shown (fail-with-body).
        post = wu.post_options('/w/.netrc').splitlines()
        for option in ('fail-with-body', 'request = "POST"', 'header = "Content-Type: application/x-tar"',
                       'output = "/dev/stderr"', 'netrc-file = "/w/.netrc"'):
            self.assertIn(option, post)
        self.assertFalse([line for line in post if line.startswith(('retry', 'fail ')) or line == 'fail'])
        self.assertNotIn('retry-connrefused', lines + put)
        self.assertFalse([line for line in lines + put + post if 'password' in line])
        self.assertNotIn('parallel', wu.config_header('/n', BASE, parallel=1).splitlines())

    def test_source_arguments_normalise_and_quote(self):
        self.assertEqual(wu.source_arguments(['dist/./a"b', 'tree/x/../y/'], 'out/sub'),
                         ['path', 'dist/a"b', 'dist/a\\"b', 'out/sub/',
                          'path', 'tree/y', 'tree/y', 'out/sub/'])
        self.assertEqual(wu.source_arguments(['t'], '')[3], '')
        with self.assertRaises(wu.Refusal):
            wu.source_arguments(['dist/a\nb'], '')


class Outcome(unittest.TestCase):
    def test_every_file_answered_2xx_is_success(self):
        out = wu.parse(BASE, 0, f'200 HEAD {BASE}\n201 PUT {BASE}b\n204 PUT {BASE}a\n',
                       f'= {BASE}a\t/w/a\n= {BASE}b\t/w/b\n')
        self.assertIsNone(out['error'])
        self.assertEqual(out['files'], [('/w/a', BASE + 'a', 204), ('/w/b', BASE + 'b', 201)])

    def test_the_files_of_the_archive_have_its_status(self):
        stderr = (f'=t {BASE}out/t/1\t/w/t/1\n=t {BASE}out/t/2\t/w/t/2\n= {BASE}out/big\t/w/big\n'
                  '{"bytes":2,"directories":0,"files":2}\n')
        out = wu.parse(BASE, 0, f'200 HEAD {BASE}\n201 POST {BASE}out/\n201 PUT {BASE}out/big\n', stderr)
        self.assertIsNone(out['error'])
        self.assertEqual([code for _, _, code in out['files']], [201, 201, 201])
        self.assertEqual(out['curl_errors'], [])
        # The server unpacked fewer files than were listed: a file vanished
        # while tar read it.
        short = stderr.replace('"files":2', '"files":1')
        out = wu.parse(BASE, 0, f'200 HEAD {BASE}\n201 POST {BASE}out/\n201 PUT {BASE}out/big\n', short)
        self.assertEqual(out['error'], 'the server unpacked 1 of the 2 files sent in the archive: '
                                       'did a file vanish while tar read it?')
        # A refused archive: its files are not uploaded, the server says why.
        refused = stderr.replace('{"bytes":2,"directories":0,"files":2}',
                                 '{"error": "bad_request", "message": "a symlink"}')
        out = wu.parse(BASE, 22, f'200 HEAD {BASE}\n400 POST {BASE}out/\n', refused)
        self.assertEqual(out['error'], '0 of 3 files uploaded (curl exit 22)')
        self.assertEqual(out['curl_errors'], ['{"error": "bad_request", "message": "a symlink"}'])
        self.assertEqual([code for _, _, code in out['files']], [0, 400, 400])

    def test_a_refused_put_fails_and_names_its_file(self):
        out = wu.parse(BASE, 22, f'200 HEAD {BASE}\n201 PUT {BASE}a\n403 PUT {BASE}b\n',
                       f'= {BASE}a\t/w/a\n= {BASE}b\t/w/b\n= {BASE}c\t/w/c\n'
                       'curl: (22) The requested URL returned error: 403\n')
        self.assertEqual(out['error'], '1 of 3 files uploaded (curl exit 22)')
        self.assertFalse(out['unreachable'])
        self.assertEqual([code for _, _, code in out['files']], [201, 403, 0])
        self.assertEqual(out['curl_errors'], ['curl: (22) The requested URL returned error: 403'])

    def test_a_put_failing_before_the_check_answers_is_no_unreachable_server(self):
        out = wu.parse(BASE, 22, f'409 PUT {BASE}a\n', f'= {BASE}a\t/w/a\n')
        self.assertFalse(out['unreachable'])
        self.assertIn('0 of 1', out['error'])

    def test_dead_silent_or_failing_servers_are_unreachable(self):
        for rc, stdout, err in ((7, f'000 HEAD {BASE}\n000 PUT {BASE}a\n', 'curl: (7) Failed to connect'),
                                (7, f'000 HEAD {BASE}\n000 POST {BASE}\n', 'curl: (7) Failed to connect'),
                                (28, f'000 HEAD {BASE}\n', 'curl: (28) Operation timed out'),
                                (22, f'503 HEAD {BASE}\n', 'HTTP 503'),
                                (7, '', 'curl: (7) Failed to connect')):
            out = wu.parse(BASE, rc, stdout, f'= {BASE}a\t/w/a\n' + err.split(' ', 1)[-1] + '\n')
            self.assertTrue(out['unreachable'], (rc, stdout))
            self.assertIn('cannot reach the artifact server', out['error'])

    def test_a_502_of_the_check_or_the_archive_is_the_token_service_down(self):
        # nginx answers, its token service does not (restarting): the step
        # sends the upload again (steps.SERVICE_DOWN_DELAYS).
        files = f'= {BASE}a\t/w/a\n=t {BASE}t/1\t/w/t/1\n'
        for rc, stdout in ((22, f'502 HEAD {BASE}\n'),
                           (22, f'200 HEAD {BASE}\n502 POST {BASE}t/\n201 PUT {BASE}a\n')):
            self.assertTrue(wu.parse(BASE, rc, stdout, files)['token_service_down'], stdout)
        for rc, stdout in ((0, f'200 HEAD {BASE}\n201 POST {BASE}t/\n201 PUT {BASE}a\n'),
                           (22, f'503 HEAD {BASE}\n'), (22, f'200 HEAD {BASE}\n500 POST {BASE}t/\n'),
                           (7, f'000 HEAD {BASE}\n'), (22, f'200 HEAD {BASE}\n502 PUT {BASE}a\n')):
            self.assertFalse(wu.parse(BASE, rc, stdout, files)['token_service_down'], stdout)
        self.assertFalse(wu.parse(BASE, wu.REFUSED_EXIT, '', 'error: bad\n')['token_service_down'])

    def test_a_server_lost_midway(self):
        out = wu.parse(BASE, 56, f'200 HEAD {BASE}\n201 PUT {BASE}a\n000 PUT {BASE}b\n',
                       f'= {BASE}a\t/w/a\n= {BASE}b\t/w/b\n')
        self.assertTrue(out['unreachable'])
        self.assertTrue(out['error'].startswith('lost the artifact server: 1 of 2'))

    def test_a_refused_job_sent_nothing(self):
        out = wu.parse(BASE, wu.REFUSED_EXIT, '', 'error: name not allowed: ./bad name\n')
        self.assertEqual(out['error'], 'nothing was uploaded: name not allowed: ./bad name')
        self.assertFalse(out['unreachable'])
        out = wu.parse(BASE, 127, '', 'sh: 1: curl: not found\n')
        self.assertIn('exit 127', out['error'])


class WorkerProgram(unittest.TestCase):
    """worker_upload.sh run by sh in a temporary workdir."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.top = self.dir.name
        for path in ('dist/a.deb', 'dist/b.deb', 'tree/x/1.txt', 'tree/2.txt', 'other/2.txt',
                     'bad name.txt', 'badtree/ok.txt', 'badtree/sub dir/x.txt',
                     'hidden/.git/config', 'nl/a\nb', 'q"uote/x.txt', 'back\\slash/y.txt',
                     "it's $HOME/z.txt"):
            full = os.path.join(self.top, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, 'w') as f:
                f.write(path)
        os.symlink('/etc/passwd', os.path.join(self.top, 'tree', 'link'))
        self.curl = os.path.join(self.top, 'stub-curl')
        with open(self.curl, 'w') as f:
            f.write(STUB_CURL)
        os.chmod(self.curl, stat.S_IRWXU)
        self.config = os.path.join(self.top, 'config-copy')
        self.archive = os.path.join(self.top, 'archive-copy')

    def tearDown(self):
        self.dir.cleanup()

    def run_job(self, paths, dest='', status=201, exit_code=0):
        argv = wu.command(self.curl, '/w/.netrc', BASE, paths, dest)
        env = dict(os.environ, CONFIG_COPY=self.config, TAR_COPY=self.archive, STATUS=str(status),
                   EXIT=str(exit_code))
        for copy in (self.config, self.archive):
            if os.path.exists(copy):
                os.unlink(copy)
        proc = subprocess.run(argv, cwd=self.top, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, check=False)
        return proc, wu.parse(BASE, proc.returncode, proc.stdout, proc.stderr)

    def config_lines(self):
        with open(self.config) as f:
            return f.read().splitlines()

    def archive_members(self):
        """{name: content} of the archive curl was given, or None."""
        if not os.path.exists(self.archive):
            return None
        with tarfile.open(self.archive) as tar:
            return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}

    def test_files_and_trees_in_one_curl_run_sorted_by_name(self):
        proc, out = self.run_job(['dist/a.deb', 'dist/b.deb', 'tree'], dest='out')
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIsNone(out['error'])
        self.assertEqual([(local, url) for local, url, _ in out['files']],
                         [('tree/2.txt', BASE + 'out/2.txt'), ('dist/a.deb', BASE + 'out/a.deb'),
                          ('dist/b.deb', BASE + 'out/b.deb'),
                          ('tree/x/1.txt', BASE + 'out/x/1.txt')])
        lines = self.config_lines()
        self.assertEqual(lines[:len(wu.config_header('/w/.netrc', BASE).splitlines())],
                         wu.config_header('/w/.netrc', BASE).splitlines())
        # The tree's files in one archive, POSTed to the destination; the
        # file sources PUT.
        i = lines.index('upload-file = "-"')
        self.assertEqual(lines[i + 1], f'url = "{BASE}out/"')
        self.assertEqual(self.archive_members(), {'./2.txt': 'tree/2.txt', './x/1.txt': 'tree/x/1.txt'})
        j = lines.index('upload-file = "dist/a.deb"')
        self.assertEqual(lines[j + 1:j + 3], [f'url = "{BASE}out/a.deb"', 'output = "/dev/null"'])
        self.assertNotIn('link', ' '.join(lines))  # symlinks are neither listed nor followed
        self.assertEqual(sum(1 for line in lines if line.startswith('upload-file')), 3)

    def test_small_tree_files_go_in_the_archive_large_ones_and_file_sources_are_put(self):
        os.makedirs(os.path.join(self.top, 'mixed'))
        with open(os.path.join(self.top, 'mixed', 'big.bin'), 'wb') as f:
            f.truncate((1 << 20) + 1)
        with open(os.path.join(self.top, 'mixed', 'edge.bin'), 'wb') as f:
            f.truncate(1 << 20)
        proc, out = self.run_job(['mixed', 'dist/a.deb'])
        self.assertIsNone(out['error'], proc.stderr)
        self.assertEqual([code for _, _, code in out['files']], [201, 201, 201])
        lines = self.config_lines()
        second = len(lines) - 1 - lines[::-1].index('next')
        self.assertEqual(lines.count('next'), 2)
        self.assertLess(lines.index('upload-file = "-"'), second)
        self.assertEqual(list(self.archive_members()), ['./edge.bin'])
        for large in ('upload-file = "mixed/big.bin"', 'upload-file = "dist/a.deb"'):
            self.assertGreater(lines.index(large), second)
        self.assertEqual(lines[second + 1:second + 1 + len(wu.put_options('/w/.netrc').splitlines())],
                         wu.put_options('/w/.netrc').splitlines())
        # Only small files: the archive alone. Only a file source: PUTs alone.
        self.run_job(['tree'])
        self.assertEqual(self.config_lines().count('next'), 1)
        self.assertNotIn('retry = 3', self.config_lines())
        self.run_job(['dist/a.deb'])
        self.assertEqual(self.config_lines().count('next'), 1)
        self.assertNotIn('upload-file = "-"', self.config_lines())
        self.assertIsNone(self.archive_members())

    def test_the_first_large_file_of_each_directory_goes_first(self):
        for path in ('two/a/1', 'two/a/2', 'two/b/1', 'two/b/2', 'two/top'):
            os.makedirs(os.path.dirname(os.path.join(self.top, path)), exist_ok=True)
            with open(os.path.join(self.top, path), 'wb') as f:
                f.truncate((1 << 20) + 1)
        proc, out = self.run_job(['two'])
        self.assertIsNone(out['error'], proc.stderr)
        order = [line[len('upload-file = "two/'):-1] for line in self.config_lines()
                 if line.startswith('upload-file')]
        self.assertEqual(sorted(order), ['a/1', 'a/2', 'b/1', 'b/2', 'top'])
        # (in find's order within that rule)
        self.assertEqual(sorted(os.path.dirname(name) for name in order[:3]), ['', 'a', 'b'])

    def test_hard_links_go_as_files(self):
        # Found by the attack review: tar wrote the second name as a hard
        # link, which the server refuses (files and directories only).
        os.link(os.path.join(self.top, 'tree', '2.txt'), os.path.join(self.top, 'tree', 'x', 'hard.txt'))
        proc, out = self.run_job(['tree'])
        self.assertIsNone(out['error'], proc.stderr)
        with tarfile.open(self.archive) as tar:
            self.assertEqual({m.name for m in tar.getmembers() if not m.isfile()}, set())
        self.assertEqual(self.archive_members()['./x/hard.txt'], 'tree/2.txt')

    def test_one_file_named_twice_is_uploaded_once(self):
        proc, out = self.run_job(['dist/a.deb', 'tree/x/../../dist/a.deb'])
        self.assertIsNone(out['error'], proc.stderr)
        self.assertEqual(len(out['files']), 1)

    def test_refusals_name_the_problem_and_send_nothing(self):
        for paths, words in ((['missing'], 'no such file or directory: missing'),
                             (['bad name.txt'], 'name not allowed: ./bad name.txt'),
                             (['badtree'], 'name not allowed: ./sub dir'),
                             (['hidden'], 'name not allowed: ./.git'),
                             (['nl'], 'name not allowed: ./a'),
                             (['tree/2.txt', 'other/2.txt'], 'would both be 2.txt')):
            proc, out = self.run_job(paths)
            self.assertEqual(proc.returncode, wu.REFUSED_EXIT, (paths, proc.stderr))
            self.assertFalse(os.path.exists(self.config), f'{paths}: curl ran')
            self.assertIn(words, out['error'], paths)

    def test_quotes_and_backslashes_in_a_local_path_are_escaped(self):
        proc, out = self.run_job(["it's $HOME"])
        self.assertIsNone(out['error'], proc.stderr)
        self.assertEqual(self.archive_members(), {'./z.txt': "it's $HOME/z.txt"})
        proc, out = self.run_job(['q"uote', 'back\\slash'])
        self.assertIsNone(out['error'], proc.stderr)
        # tar reads each directory where it is, taking its name literally.
        self.assertEqual(self.archive_members(), {'./x.txt': 'q"uote/x.txt', './y.txt': 'back\\slash/y.txt'})
        # The log shows each local path as the config spells it.
        self.assertEqual(sorted(local for local, _, _ in out['files']),
                         ['back\\\\slash/y.txt', 'q\\"uote/x.txt'])

    def test_a_failed_put_fails_the_job(self):
        _, out = self.run_job(['tree'], status=403, exit_code=22)
        self.assertEqual(out['error'], '0 of 2 files uploaded (curl exit 22)')
        self.assertEqual({code for _, _, code in out['files']}, {403})


if __name__ == '__main__':
    unittest.main()
