"""Unit tests of the master-side pieces that need buildbot but no servers."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'buildbot'))
from buildbot.config import ConfigErrors  # noqa: E402

from artifact_repository import ArtifactRepository, steps  # noqa: E402


class RepositoryConfig(unittest.TestCase):
    def test_defaults(self):
        repo = ArtifactRepository('https://repo.example', 'ci', 'pw')
        self.assertEqual(repo.name, 'artifact-repository')
        self.assertEqual(repo.issue().repository, repo.name)
        self.assertEqual(repo.revoke().repository, repo.name)

    def test_refusals(self):
        for args, kwargs in ((('ftp://h', 'ci', 'pw'), {}),
                             (('http://h', 'ci', 'pw'), {'name': '../journal'}),
                             (('http://h', 'ci', 'pw'), {'retry_max_interval': 0}),
                             (('http://h', 'ci', 'pw'), {'http_timeout': -1})):
            with self.assertRaises(ConfigErrors, msg=repr((args, kwargs))):
                ArtifactRepository(*args, **kwargs)


class UploadOutcome(unittest.TestCase):
    def test_files_then_outcome(self):
        out = steps._parse_outcome('["/w/a", "http://h/a", 201]\n["/w/b", "http://h/b", 0]\n'
                                   '{"files": 2, "error": "x", "unreachable": true}\n')
        self.assertEqual(out['files'], [('/w/a', 'http://h/a', 201), ('/w/b', 'http://h/b', 0)])
        self.assertTrue(out['unreachable'])

    def test_lost_or_broken_lines_are_no_outcome(self):
        for text in ('', '["/w/a", "http://h/a", 201]\n{"files": 2}\n',
                     '["/w/a", "http://h/a"\n{"files": 1}\n', 'Traceback ...\n'):
            self.assertIsNone(steps._parse_outcome(text), repr(text))


if __name__ == '__main__':
    unittest.main()
