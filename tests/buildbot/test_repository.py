"""Unit tests of the master-side pieces that need buildbot but no servers."""

import json
import os
import sys
import tempfile
import unittest
import unittest.mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'buildbot'))
from buildbot.config import ConfigErrors  # noqa: E402
from buildbot.process.results import FAILURE, SUCCESS, WARNINGS  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from artifact_repository import ArtifactRepository, repository, steps  # noqa: E402
from artifact_repository.client import RevokeAnswer, TokenServiceError  # noqa: E402


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


class FakeLog:
    def __init__(self):
        self.stdout, self.stderr = '', ''

    def addStdout(self, text):
        self.stdout += text
        return defer.succeed(None)

    def addStderr(self, text):
        self.stderr += text
        return defer.succeed(None)


class SealServer:
    """GET /token/<u>/seal: answers in turn, the last one for ever."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.polls = 0

    def seal_status(self, username):
        self.polls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)


class SealPolling(unittest.TestCase):
    """The revoke step after a 202: it polls /seal, bounded in time and count,
    and turns what the seal found into the step's result, naming the files.
    A fake clock: asyncSleep only moves it."""

    def setUp(self):
        self.now = 1000.0

        def sleep(seconds, reactor=None):
            self.now += seconds
            return defer.succeed(None)
        for patch in (unittest.mock.patch.object(steps, 'asyncSleep', sleep),
                      unittest.mock.patch.object(steps.time, 'monotonic', lambda: self.now)):
            patch.start()
            self.addCleanup(patch.stop)

    def report(self, server, seal_timeout=60, shutting_down=False, first=None):
        step = steps.RevokeArtifactToken(seal_timeout=seal_timeout)
        step.username = 'tok1'
        step.master = type('Master', (), {'botmaster': type('BotMaster', (), {
            'shuttingDown': shutting_down})()})()
        repo = type('Repo', (), {'client': lambda _self: defer.succeed(server)})()
        log = FakeLog()
        started = self.now
        got = []
        step._report(repo, RevokeAnswer(202, first or {'state': 'running'}), True,
                     log).addBoth(got.append)
        self.assertEqual(len(got), 1, 'the step did not finish on the fake clock')
        if not isinstance(got[0], tuple):
            got[0].raiseException()
        return got[0], log, self.now - started

    def test_polls_until_done_and_fails_naming_every_mismatch(self):
        server = SealServer({'state': 'running'}, {'state': 'running'},
                            {'state': 'done', 'files': 3, 'bytes': 17000000,
                             'mismatches': ['tree/big.bin', 'a.bin']})
        (result, summary), log, _ = self.report(server)
        self.assertEqual(server.polls, 3)
        self.assertEqual(result, FAILURE)
        self.assertEqual(summary, 'checksum mismatch: a.bin, tree/big.bin')
        self.assertIn('checksum mismatch: a.bin', log.stderr)
        self.assertIn('checksum mismatch: tree/big.bin', log.stderr)
        self.assertIn('sealed: 3 files, 17000000 bytes, state done', log.stdout)

    def test_a_clean_background_seal_is_success(self):
        server = SealServer({'state': 'running'}, {'state': 'done', 'files': 1, 'bytes': 5})
        (result, _), _, _ = self.report(server)
        self.assertEqual((result, server.polls), (SUCCESS, 2))

    def test_a_failed_seal_fails_the_step_with_its_reason(self):
        server = SealServer({'state': 'failed', 'error': 'read error: x.bin'})
        (result, summary), log, _ = self.report(server)
        self.assertEqual((result, summary), (FAILURE, 'seal failed'))
        self.assertIn('seal failed: read error: x.bin', log.stderr)

    def test_a_seal_that_never_ends_is_a_warning_within_the_bound(self):
        server = SealServer({'state': 'running'})
        (result, summary), log, waited = self.report(server, seal_timeout=30)
        self.assertEqual((result, summary), (WARNINGS, 'seal not confirmed'))
        self.assertLessEqual(waited, 30)
        self.assertLessEqual(server.polls, 30 / 0.2 + 2)
        self.assertGreater(server.polls, 3)  # it backs off, but keeps asking
        self.assertIn('still running after 30 s', log.stderr)

    def test_an_unreadable_seal_status_gives_up_after_five_errors(self):
        error = TokenServiceError('GET', 'http://h/token/tok1/seal', 500, 'HTTP 500')
        server = SealServer(error)
        (result, _), log, _ = self.report(server)
        self.assertEqual((result, server.polls), (WARNINGS, 5))
        self.assertIn('cannot read the seal status', log.stderr)

    def test_a_master_shutting_down_does_not_wait(self):
        server = SealServer({'state': 'done'})
        (result, summary), _, _ = self.report(server, shutting_down=True)
        self.assertEqual((result, summary, server.polls),
                         (WARNINGS, 'seal not awaited (master shutdown)', 0))


class FakeServer:
    """Answers revokes like the token service, or fails while ``down``."""

    def __init__(self):
        self.down = False
        self.revoked = []

    def revoke(self, username, success=True):
        if self.down:
            return defer.fail(TokenServiceError('DELETE', 'http://h/token/' + username, None,
                                                'cannot reach the token service: refused'))
        self.revoked.append((username, success))
        return defer.succeed(RevokeAnswer(200, {'state': 'done'}))


class FakeMaster:
    def __init__(self, basedir, clock):
        self.basedir = basedir
        self.reactor = clock
        self.consumers = []
        self.botmaster = type('BotMaster', (), {'shuttingDown': False})()
        self.master = self

    def startConsuming(self, callback, filter):
        self.consumers.append(callback)
        return defer.succeed(type('Qref', (), {'stopConsuming': lambda _self: None})())

    @property
    def mq(self):
        return self


class RevokeRetries(unittest.TestCase):
    """The journal and retry logic of the service, on a fake clock and server."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.server = FakeServer()
        self.patch_time = unittest.mock.patch.object(
            repository.time, 'time', side_effect=lambda: self.clock.seconds())
        self.patch_time.start()

    def tearDown(self):
        self.patch_time.stop()
        self.dir.cleanup()

    def start(self):
        master = FakeMaster(self.dir.name, self.clock)
        repo = ArtifactRepository('http://h', 'ci', 'pw', retry_max_interval=8)
        repo.parent = master
        repo.client = lambda url=None, timeout=None: defer.succeed(self.server)
        repo.startService()
        return repo, master

    def journal(self):
        with open(os.path.join(self.dir.name, 'artifact-repository.pending-revokes.json')) as f:
            return json.load(f)['entries']

    def test_a_failed_revoke_is_retried_with_backoff_until_it_succeeds(self):
        repo, _ = self.start()
        repo.track('t1', ['a/b/c/1'], 7, expires_in=3600)
        self.server.down = True
        failures = []
        repo.revoke_token('t1', True).addErrback(failures.append)
        self.assertEqual(len(failures), 1)
        attempts = 1
        for delay in (1, 2, 4, 8, 8):  # tries 2..6 on the backoff, capped at 8 s
            self.clock.advance(delay - 0.01)
            self.assertEqual(self.journal()['t1']['attempts'], attempts)
            self.clock.advance(0.01)
            attempts += 1
            self.assertEqual(self.journal()['t1']['attempts'], attempts)
        self.server.down = False
        self.clock.advance(8)
        self.assertEqual(self.server.revoked, [('t1', True)])
        self.assertEqual(self.journal(), {})

    def test_a_restart_revokes_what_the_last_run_owed_and_left_open(self):
        repo, _ = self.start()
        repo.track('running', ['a/b/c/1'], 7, expires_in=3600)
        repo.track('owed', ['a/b/c/2'], 8, expires_in=3600)
        self.server.down = True
        repo.revoke_token('owed', True).addErrback(lambda _: None)
        repo.stopService()
        self.server.down = False
        self.start()  # a new master process on the same basedir
        self.clock.advance(0)
        self.assertEqual(sorted(self.server.revoked), [('owed', True), ('running', False)])
        self.assertEqual(self.journal(), {})

    def test_a_build_that_ends_without_its_revoke_step_is_revoked(self):
        repo, master = self.start()
        repo.track('t1', ['a/b/c/1'], 7, expires_in=3600)
        repo.track('t2', ['a/b/c/2'], 8, expires_in=3600)
        for callback in master.consumers:
            callback(('builds', '7', 'finished'), {'buildid': 7, 'results': 4})
        self.assertEqual(self.server.revoked, [('t1', False)])
        self.assertEqual(list(self.journal()), ['t2'])

    def test_an_expired_token_is_dropped_not_retried_forever(self):
        repo, _ = self.start()
        repo.track('t1', ['a/b/c/1'], 7, expires_in=60)
        self.server.down = True
        repo.revoke_token('t1', True).addErrback(lambda _: None)
        self.clock.advance(60 + repository.EXPIRY_MARGIN + 10)
        self.clock.pump([8] * 10)
        self.assertEqual(self.journal(), {})
        self.assertEqual(self.clock.getDelayedCalls(), [])


if __name__ == '__main__':
    unittest.main()
