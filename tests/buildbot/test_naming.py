"""Unit tests of naming and the .netrc text (pure, no servers)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'buildbot'))
from artifact_repository import curlconfig, naming  # noqa: E402


class TokenName(unittest.TestCase):
    def test_the_servers_name(self):
        # The vector of tests/unit/password_file_test.cc (TokenNameFor).
        self.assertEqual(naming.token_name('ci', 'build-42'), 'r5d0287dd16876bbd8554f15bef31c7751ed1063f')
        self.assertNotEqual(naming.token_name('other', 'build-42'), naming.token_name('ci', 'build-42'))

    def test_refuses_what_the_server_refuses(self):
        for bad in ('', 'a/b', '.x', 'a b', 'x' * 129):
            with self.assertRaises(naming.NameError_):
                naming.token_name('ci', bad)


class SanitizeSegment(unittest.TestCase):
    def test_keeps_valid_segments(self):
        self.assertEqual(naming.sanitize_segment('linux-amd64_1.2'), 'linux-amd64_1.2')

    def test_replaces_runs_of_other_characters(self):
        self.assertEqual(naming.sanitize_segment('my proj / x:y'), 'my-proj-x-y')

    def test_never_hidden_dot_or_empty(self):
        for value in ('.', '..', '.hidden', '', None, '///'):
            segment = naming.sanitize_segment(value)
            naming.parse_scope('/'.join([segment] * 4))  # valid
            self.assertFalse(segment.startswith('.'))

    def test_non_ascii_and_length(self):
        self.assertEqual(naming.sanitize_segment('bäh'), 'b-h')
        self.assertEqual(len(naming.sanitize_segment('x' * 500)), 128)

    def test_default_scope(self):
        self.assertEqual(naming.default_scope('dpkg', 'My Proj', 'linux amd64', 42),
                         'dpkg/My-Proj/linux-amd64/42')


class ParseScope(unittest.TestCase):
    def test_valid(self):
        self.assertEqual(naming.parse_scope('/a/b/c/d/'), 'a/b/c/d')

    def test_invalid(self):
        for scope in ('a/b/c', 'a/b/c/d/e', 'a/../c/d', 'a/.b/c/d', 'a/b c/c/d', 'a//c/d', 42):
            with self.assertRaises(naming.NameError_, msg=repr(scope)):
                naming.parse_scope(scope)


class RemotePath(unittest.TestCase):
    def test_valid(self):
        self.assertEqual(naming.check_remote_path('docs/a+b~1.html'), 'docs/a+b~1.html')

    def test_invalid(self):
        for path in ('', '.hidden', 'a/../b', 'a b', 'x/%2e', 'ä'):
            with self.assertRaises(naming.NameError_, msg=repr(path)):
                naming.check_remote_path(path)


class CurlConfig(unittest.TestCase):
    def test_netrc_uses_host_only(self):
        self.assertEqual(curlconfig.netrc_text('http://repo.example:8080/a/b/c/d/', 'u', 'p'),
                         'machine repo.example login u password p\n')

    def test_netrc_refuses_whitespace(self):
        with self.assertRaises(ValueError):
            curlconfig.netrc_text('http://h/', 'u', 'p q')


if __name__ == '__main__':
    unittest.main()
