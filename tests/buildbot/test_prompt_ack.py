"""The upload step's prompt acknowledgement of the worker (steps.report_promptly).

A short worker command reported its end about 40 ms late: the master's kernel
delayed its ACK of the worker's answer and the worker's kernel held the result
behind it (Nagle). These tests pin what the step does about it on a real TCP
connection; bench/buildbot_compare.py measures the effect against buildbot.
"""

import os
import socket
import sys
import unittest
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'buildbot'))
from twisted.internet import defer  # noqa: E402

from artifact_repository import steps  # noqa: E402


def pb_connection(sock):
    """What buildbot's PB connection looks like to the step, around ``sock``."""
    transport = SimpleNamespace(getHandle=lambda: sock)
    return SimpleNamespace(mind=SimpleNamespace(broker=SimpleNamespace(transport=transport)))


def quickack(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK)


def nodelay(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@unittest.skipUnless(hasattr(socket, 'TCP_QUICKACK'), 'TCP_QUICKACK is Linux only')
class PromptAck(unittest.TestCase):
    def setUp(self):
        listener = socket.create_server(('127.0.0.1', 0))
        self.addCleanup(listener.close)
        self.master = socket.create_connection(listener.getsockname())
        self.addCleanup(self.master.close)
        self.worker, _ = listener.accept()
        self.addCleanup(self.worker.close)
        # The state the stall needs: ACKs delayed (Linux's "pingpong" mode).
        self.master.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
        self.assertEqual(quickack(self.master), 0)
        self.assertEqual(nodelay(self.master), 0)

    def test_the_ack_is_pushed_out_on_a_tcp_connection(self):
        self.assertTrue(steps.ack_worker_promptly(pb_connection(self.master)))
        self.assertEqual(quickack(self.master), 1)

    def command(self, answer):
        """A RemoteCommand as report_promptly sees it: run() sets the
        connection, starts, and fires when the command ends (``ended``)."""
        cmd = SimpleNamespace(conn=None, ended=defer.Deferred(), sent=[])

        def start():
            cmd.sent.append(nodelay(self.master))
            return answer

        def run(*_):
            cmd.conn = pb_connection(self.master)
            cmd._start().addErrback(cmd.ended.errback)
            return cmd.ended
        cmd._start, cmd.run = start, run
        self.assertIs(steps.report_promptly(cmd), cmd)
        return cmd

    def test_the_ack_is_pushed_when_the_worker_answers_the_start_not_before(self):
        answer = defer.Deferred()
        cmd = self.command(answer)
        results = []
        cmd.run().addCallback(results.append)
        self.assertEqual(quickack(self.master), 0, 'pushed before the worker answered')
        answer.callback('the answer')
        self.assertEqual(quickack(self.master), 1)
        cmd.ended.callback('the result')
        self.assertEqual(results, ['the result'], 'the result must pass through unchanged')

    def test_the_command_leaves_without_a_nagle_wait_and_buildbot_gets_its_socket_back(self):
        cmd = self.command(defer.Deferred())
        cmd.run()
        self.assertEqual(len(cmd.sent), 1, 'the command was not started')
        self.assertNotEqual(cmd.sent[0], 0, 'TCP_NODELAY must be on before the command is sent')
        self.assertNotEqual(nodelay(self.master), 0)
        cmd.ended.callback(None)
        self.assertEqual(nodelay(self.master), 0, 'TCP_NODELAY left on after the command')

    def test_overlapping_commands_keep_it_until_the_last_one_ends(self):
        first, second = self.command(defer.Deferred()), self.command(defer.Deferred())
        first.run()
        second.run()
        first.ended.callback(None)
        self.assertNotEqual(nodelay(self.master), 0, 'turned off under a running command')
        second.ended.callback(None)
        self.assertEqual(nodelay(self.master), 0)

    def test_a_socket_that_had_it_on_keeps_it_on(self):
        self.master.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cmd = self.command(defer.Deferred())
        cmd.run()
        cmd.ended.callback(None)
        self.assertNotEqual(nodelay(self.master), 0)

    def test_a_refused_start_passes_its_failure_on_and_restores_the_socket(self):
        answer = defer.Deferred()
        cmd = self.command(answer)
        failures = []
        cmd.run().addErrback(failures.append)
        answer.errback(RuntimeError('worker refused'))
        self.assertEqual(len(failures), 1)
        self.assertEqual(quickack(self.master), 0)
        self.assertEqual(nodelay(self.master), 0)


class NotTcp(unittest.TestCase):
    def test_a_connection_of_another_kind_changes_nothing(self):
        self.assertFalse(steps.ack_worker_promptly(SimpleNamespace()))
        self.assertFalse(steps.ack_worker_promptly(SimpleNamespace(mind=None)))
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        self.assertFalse(steps.ack_worker_promptly(pb_connection(a)))
        self.assertFalse(steps.send_to_worker_promptly(pb_connection(a)))

    def test_an_unexpected_error_is_swallowed_not_passed_to_the_command(self):
        def broken():
            raise TypeError('a transport of another kind')
        transport = SimpleNamespace(getHandle=broken)
        conn = SimpleNamespace(mind=SimpleNamespace(broker=SimpleNamespace(transport=transport)))
        self.assertFalse(steps.ack_worker_promptly(conn))
        self.assertFalse(steps.send_to_worker_promptly(conn))

    def test_a_closed_socket_changes_nothing(self):
        sock = socket.socket()
        sock.close()
        self.assertFalse(steps.ack_worker_promptly(pb_connection(sock)))


if __name__ == '__main__':
    unittest.main()
