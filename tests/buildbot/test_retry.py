"""steps._through_restarts: what a step sends again after nginx's 502 (the
token service restarting), on a fake clock."""

import os
import sys
import unittest
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'buildbot'))
from twisted.internet import defer, task  # noqa: E402

from artifact_repository import steps  # noqa: E402
from artifact_repository.client import TokenServiceError  # noqa: E402


def error(status):
    return TokenServiceError('POST', 'http://repo/token', status, 'token_service_down: ...')


class ThroughRestarts(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.saved = steps.asyncSleep
        steps.asyncSleep = lambda delay: task.deferLater(self.clock, delay, lambda: None)
        self.step = SimpleNamespace(stopped=False)
        self.sent = []

    def tearDown(self):
        steps.asyncSleep = self.saved

    def run_with(self, answers, down=steps._service_down, stop_at=None):
        """Runs _through_restarts over ``answers`` (one per attempt; an
        exception is the request's failure) and returns its result."""
        answers = list(answers)

        def attempt():
            self.sent.append(self.clock.seconds())
            a = answers.pop(0)
            return steps._answer(defer.fail(a) if isinstance(a, Exception) else defer.succeed(a))
        result = []
        steps._through_restarts(self.step, attempt, down).addBoth(result.append)
        for _ in range(200):  # 20 s of fake time, in 0.1 s steps
            if result:
                break
            if stop_at is not None and self.clock.seconds() >= stop_at:
                self.step.stopped = True
            self.clock.advance(0.1)
        self.assertTrue(result, 'still waiting after 20 s')
        return result[0]

    def test_sent_again_after_1_then_2_s_until_answered(self):
        answer, notes = self.run_with([error(502), error(502), {'files': 3}])
        self.assertEqual(answer, {'files': 3})
        self.assertEqual([round(t, 1) for t in self.sent], [0, 1, 3])
        self.assertEqual(len(notes), 2)
        self.assertIn('HTTP 502 from the artifact server', notes[0])
        self.assertIn('sent again after 2 s', notes[1])

    def test_three_retries_then_the_last_answer(self):
        answer, notes = self.run_with([error(502)] * 4)
        self.assertEqual(answer.status, 502)
        self.assertEqual([round(t, 1) for t in self.sent], [0, 1, 3, 7])
        self.assertEqual(len(notes), 3)

    def test_any_other_answer_is_final(self):
        for first in (error(403), error(503), error(504), error(None), {'files': 1}):
            self.sent = []
            answer, notes = self.run_with([first, {'files': 1}])
            self.assertIs(answer, first)
            self.assertEqual((len(self.sent), notes), (1, []))

    def test_the_issue_also_sends_again_after_a_504(self):
        answer, _ = self.run_with([error(504), error(502), {'username': 'r1'}],
                                  down=steps._issue_unanswered)
        self.assertEqual(answer, {'username': 'r1'})
        self.assertEqual(len(self.sent), 3)

    def test_a_stop_during_the_wait_sends_nothing_more(self):
        answer, notes = self.run_with([error(502), error(502), {'files': 1}], stop_at=1.5)
        # Sent at 0 and 1; stopped 1.5 s in, during the 2 s wait: nothing more.
        self.assertEqual([round(t, 1) for t in self.sent], [0, 1])
        self.assertEqual(answer.status, 502)
        self.assertLess(self.clock.seconds(), 1.8)

    def test_a_failure_that_is_no_answer_of_the_server_passes_through(self):
        def attempt():
            return steps._answer(defer.fail(ValueError('a bug')))
        result = []
        steps._through_restarts(self.step, attempt, steps._service_down).addBoth(result.append)
        self.assertIsInstance(result[0].value, ValueError)
        result[0].trap(ValueError)


if __name__ == '__main__':
    unittest.main()
