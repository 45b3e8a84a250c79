"""Unit tests of the pending-revoke journal (pure, no servers)."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'buildbot'))
from artifact_repository.journal import Journal, backoff  # noqa: E402


class Backoff(unittest.TestCase):
    def test_doubles_up_to_the_cap(self):
        self.assertEqual([backoff(n, 30) for n in range(1, 8)], [1, 2, 4, 8, 16, 30, 30])
        self.assertEqual(backoff(10 ** 6, 5), 5)


class JournalFile(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, 'j.json')

    def tearDown(self):
        self.dir.cleanup()

    def test_survives_a_reload_and_holds_no_secret_fields(self):
        j = Journal(self.path)
        j.add('t1', 'http://h', ['a/b/c/1'], buildid=7, expires=100.0)
        j.entries['t1']['result'] = 'failure'
        j.save()
        again = Journal(self.path)
        self.assertEqual(again.load(), [])
        self.assertEqual(again.entries['t1']['scopes'], ['a/b/c/1'])
        self.assertEqual(again.entries['t1']['result'], 'failure')
        self.assertEqual(set(again.entries['t1']),
                         {'username', 'url', 'scopes', 'buildid', 'expires', 'result',
                          'attempts', 'next_try', 'error'})
        self.assertEqual(os.listdir(self.dir.name), ['j.json'])  # no temp file left

    def test_due_only_when_owed_and_time_has_come(self):
        j = Journal(self.path)
        j.add('running', 'http://h', [], buildid=1)
        j.add('owed', 'http://h', [], buildid=2)
        j.entries['owed'].update(result='success', next_try=50.0)
        self.assertEqual(j.due(now=49), [])
        self.assertEqual(j.due(now=50), ['owed'])
        self.assertEqual(j.next_due(), 50.0)
        self.assertIsNone(j.next_due(exclude={'owed'}))

    def test_a_corrupt_file_is_kept_aside_and_reported(self):
        with open(self.path, 'w') as f:
            f.write('{not json')
        j = Journal(self.path)
        problems = j.load()
        self.assertEqual(len(problems), 1)
        self.assertTrue(os.path.exists(self.path + '.corrupt'))
        self.assertEqual(j.entries, {})

    def test_an_entry_that_cannot_be_saved_is_not_kept(self):
        j = Journal(os.path.join(self.dir.name, 'missing', 'j.json'))
        with self.assertRaises(OSError):
            j.add('t1', 'http://h', [])
        self.assertEqual(j.entries, {})

    def test_remove(self):
        j = Journal(self.path)
        j.add('t1', 'http://h', [])
        j.remove('t1')
        self.assertEqual(Journal(self.path).load(), [])
        self.assertEqual(j.entries, {})


if __name__ == '__main__':
    unittest.main()
