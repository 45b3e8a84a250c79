"""The repository as a buildbot service: makes the steps, owes every revoke.

``ArtifactRepository`` goes into ``c['services']``. It keeps a journal of
the tokens this master issued (``<basedir>/<name>.pending-revokes.json``) and
makes sure each is revoked: by the revoke step, when the build finishes
without one (a lost worker runs no further step), and after a failure or a
master restart, retried with backoff until the server confirms it or the
token has expired anyway. Stopping the master never waits for the server:
what is owed stays in the journal for the next start.
"""

import os
import re
import time

from twisted.internet import defer, reactor
from twisted.python import log as twlog
from twisted.web.client import Agent, HTTPConnectionPool

from buildbot import config
from buildbot.process.properties import Properties
from buildbot.process.results import SUCCESS, WARNINGS
from buildbot.util import service

from .client import TokenServiceClient, TokenServiceError
from .journal import Journal, backoff

# A token the server already expired needs no revoke; allow its expiry timer a margin.
EXPIRY_MARGIN = 120
# While the master shuts down a revoke waits at most this long (seconds): what
# does not get through stays in the journal, and `buildbot stop` stays prompt.
SHUTDOWN_HTTP_TIMEOUT = 5


class ArtifactRepository(service.BuildbotService):
    """One repository and the master's credentials for it.

    ``url`` is the repository root as the master reaches it; ``master_user``
    and ``master_password`` are usually ``util.Secret(...)``, rendered at
    each call (a changed secret is used without a restart).
    ``retry_max_interval`` caps the backoff between revoke retries (seconds).
    Add the object to ``c['services']``; the steps find it by ``name``.
    """

    name = 'artifact-repository'

    def __init__(self, url, master_user, master_password, http_timeout=30,
                 retry_max_interval=30, name=None):
        kwargs = {'http_timeout': http_timeout, 'retry_max_interval': retry_max_interval}
        if name is not None:
            kwargs['name'] = name
        super().__init__(url, master_user, master_password, **kwargs)
        self._settings(url, master_user, master_password, http_timeout, retry_max_interval)
        self.journal = None
        self._consumer = None
        self._timer = None
        self._inflight = {}  # username -> [Deferred waiting for the running try]
        # What UploadArtifacts found a source to be, by (builder, workdir,
        # source, bounds): the next build skips asking the worker (steps.py).
        self.relay_hints = {}
        self._tree_agent = self._tree_pool = None

    def checkConfig(self, url, master_user, master_password, http_timeout=30,
                    retry_max_interval=30):
        # The name is part of the journal's file name in the master's basedir.
        if not re.fullmatch(r'[A-Za-z0-9_][A-Za-z0-9._-]{0,100}', self.name or ''):
            config.error(f'ArtifactRepository: name {self.name!r} must match '
                         '[A-Za-z0-9_][A-Za-z0-9._-]{0,100}')
        if isinstance(url, str) and not url.startswith(('http://', 'https://')):
            config.error(f'ArtifactRepository: url must be http:// or https://, got {url!r}')
        for label, value in (('http_timeout', http_timeout),
                             ('retry_max_interval', retry_max_interval)):
            if not isinstance(value, (int, float)) or value <= 0:
                config.error(f'ArtifactRepository: {label} must be a positive number')

    def reconfigService(self, url, master_user, master_password, http_timeout=30,
                        retry_max_interval=30):
        self._settings(url, master_user, master_password, http_timeout, retry_max_interval)

    def _settings(self, url, master_user, master_password, http_timeout, retry_max_interval):
        self.url = url
        self.master_user = master_user
        self.master_password = master_password
        self.http_timeout = http_timeout
        self.retry_max_interval = retry_max_interval

    # --- the steps -------------------------------------------------------------

    def issue(self, **kwargs):
        from .steps import IssueArtifactToken
        return IssueArtifactToken(repository=self.name, **kwargs)

    def upload(self, sources, **kwargs):
        from .steps import UploadArtifacts
        return UploadArtifacts(sources, **kwargs)

    def revoke(self, **kwargs):
        from .steps import RevokeArtifactToken
        return RevokeArtifactToken(repository=self.name, **kwargs)

    # --- the service -----------------------------------------------------------

    @defer.inlineCallbacks
    def startService(self):
        yield super().startService()
        self.journal = Journal(os.path.join(self.master.basedir,
                                            f'{self.name}.pending-revokes.json'))
        for problem in self.journal.load():
            twlog.msg(f'artifact-repository: {problem}')
        # Builds of an earlier run of this master are over: revoke their tokens,
        # and try what was owed at once (the server may well be back).
        for entry in self.journal.entries.values():
            if entry['result'] is None:
                entry['result'] = 'failure'
            entry['next_try'] = time.time()
        if self.journal.entries:
            self._save()
        if self.journal.entries:
            twlog.msg(f'artifact-repository: {len(self.journal.entries)} token(s) from an '
                      f'earlier run to revoke: {", ".join(sorted(self.journal.entries))}')
        # One consumer for the life of the service. Never stop consuming from
        # inside a callback: SimpleMQ.produce iterates the consumer list, and
        # removing an entry there skips the next one (buildbot's own
        # waitUntilFinished, which made `buildbot stop` hang).
        self._consumer = yield self.master.mq.startConsuming(
            self._build_finished, ('builds', None, 'finished'))
        self._schedule()

    @defer.inlineCallbacks
    def stopService(self):
        if self._consumer is not None:
            self._consumer.stopConsuming()
            self._consumer = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._tree_pool is not None:
            yield self._tree_pool.closeCachedConnections()
            self._tree_agent = self._tree_pool = None
        pending = sorted(u for u, e in (self.journal.entries.items() if self.journal else ())
                         if e['result'] is not None)
        if pending:
            twlog.msg(f'artifact-repository: stopping with {len(pending)} revoke(s) owed, '
                      f'kept in {self.journal.path} for the next start: {", ".join(pending)}')
        yield super().stopService()

    @defer.inlineCallbacks
    def client(self, url=None, timeout=None):
        """A TokenServiceClient with the master credentials rendered now."""
        props = Properties()
        props.master = self.master
        user, password = yield defer.gatherResults(
            [props.render(self.master_user), props.render(self.master_password)],
            consumeErrors=True)
        return TokenServiceClient(url or self.url, user, password,
                                  timeout=timeout or self.http_timeout)

    def remember_relay(self, key, hint):
        """Keeps (or with None drops) UploadArtifacts' hint for a source. At
        most 1,000 are kept: a source rendered per build (a build number in
        its path) must not grow the master's memory for its lifetime."""
        if hint is None:
            self.relay_hints.pop(key, None)
            return
        if key not in self.relay_hints and len(self.relay_hints) >= 1000:
            self.relay_hints.clear()
        self.relay_hints[key] = hint

    def upload_tree(self, path, username, password, archive):
        """POSTs a tar archive to ``path`` below the repository's URL with a
        build token (TokenServiceClient.upload_tree), on kept-alive
        connections: a relayed tree upload pays no connect or TLS handshake."""
        if self._tree_agent is None:
            self._tree_pool = HTTPConnectionPool(reactor, persistent=True)
            self._tree_pool.maxPersistentPerHost = 4
            self._tree_agent = Agent(reactor, connectTimeout=self.http_timeout,
                                     pool=self._tree_pool)
        client = TokenServiceClient(self.url, None, None, timeout=self.http_timeout,
                                    agent=self._tree_agent)
        return client.upload_tree(path, username, password, archive)

    def forget(self, username):
        """Drops a journal entry whose token was never issued."""
        self._forget(username)

    def track(self, username, scopes, buildid, expires_in=None, url=None):
        """Journals a token about to be issued (or just issued): from now on its
        revoke is owed once its build ends. Raises OSError if it cannot be written."""
        expires = time.time() + float(expires_in) if expires_in else None
        self.journal.add(username, url or self.url, scopes, buildid=buildid, expires=expires)

    def revoke_token(self, username, success):
        """Revokes now. Returns a Deferred RevokeAnswer; on failure it errbacks
        with TokenServiceError and the revoke stays owed (retried in the
        background, across restarts, until confirmed or the token expired)."""
        entry = self.journal.entries.get(username)
        if entry is None:  # not journaled (e.g. revoke_when_build_finishes=False)
            self.journal.entries[username] = entry = {
                'username': username, 'url': self.url, 'scopes': [], 'buildid': None,
                'expires': None, 'attempts': 0, 'next_try': 0.0, 'error': ''}
        entry['result'] = 'success' if success else 'failure'
        entry['next_try'] = time.time()
        self._save()
        return self._try(username)

    # --- internals -------------------------------------------------------------

    def _build_finished(self, _key, build):
        buildid = build.get('buildid')
        results = build.get('results')
        for username, entry in list(self.journal.entries.items()):
            if entry['buildid'] == buildid and entry['result'] is None:
                # No revoke step ran (lost worker, halted before it): revoke now.
                entry['result'] = 'success' if results in (SUCCESS, WARNINGS) else 'failure'
                entry['next_try'] = time.time()
                self._save()
                d = self._try(username)
                d.addCallbacks(lambda answer, u=username: twlog.msg(
                    f'artifact-repository: revoked token {u} at the end of build {buildid}'),
                    lambda _failure: None)

    def _try(self, username):
        """One revoke attempt, shared by everyone who asks while it runs."""
        waiter = defer.Deferred()
        if username in self._inflight:
            self._inflight[username].append(waiter)
            return waiter
        self._inflight[username] = [waiter]
        d = self._attempt(username)

        def done(outcome):
            for w in self._inflight.pop(username, []):
                w.callback(outcome) if not isinstance(outcome, Exception) else w.errback(outcome)
            self._schedule()
        d.addCallbacks(done, lambda failure: done(failure.value))
        return waiter

    @defer.inlineCallbacks
    def _attempt(self, username):
        entry = self.journal.entries.get(username)
        if entry is None:
            return None
        now = time.time()
        if entry['expires'] is not None and now > entry['expires'] + EXPIRY_MARGIN:
            twlog.msg(f'artifact-repository: token {username} expired before its revoke was '
                      f'confirmed; the server ended it (last error: {entry["error"]})')
            self._forget(username)
            return None
        try:
            shutting_down = getattr(self.master.botmaster, 'shuttingDown', False)
            client = yield self.client(entry['url'], timeout=min(
                self.http_timeout, SHUTDOWN_HTTP_TIMEOUT) if shutting_down else None)
            answer = yield client.revoke(username, success=entry['result'] == 'success')
        except Exception as e:  # not only TokenServiceError: a secret that does not
            # render must back off too, never spin the reactor on an immediate retry
            if not isinstance(e, TokenServiceError):
                e = TokenServiceError('DELETE', entry['url'] + '/token/' + username, None,
                                      f'{type(e).__name__}: {e}')
            entry['attempts'] += 1
            delay = backoff(entry['attempts'], self.retry_max_interval)
            entry['next_try'] = time.time() + delay
            entry['error'] = str(e)
            self._save()
            twlog.msg(f'artifact-repository: revoke of token {username} failed (try '
                      f'{entry["attempts"]}), next try in {delay:g} s: {e}')
            raise e from None
        if entry['attempts']:
            twlog.msg(f'artifact-repository: token {username} revoked after '
                      f'{entry["attempts"]} failed tries (HTTP {answer.status})')
        self._forget(username)
        return answer

    def _forget(self, username):
        self.journal.entries.pop(username, None)
        self._save()

    def _save(self):
        try:
            self.journal.save()
        except OSError as e:  # the in-memory state still drives the retries
            twlog.msg(f'artifact-repository: cannot write {self.journal.path}: {e}')

    def _schedule(self):
        if not self.running or self.journal is None:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        when = self.journal.next_due(exclude=self._inflight)
        if when is None:
            return
        reactor = self.master.reactor
        self._timer = reactor.callLater(max(0.0, when - time.time()), self._retry_due)

    def _retry_due(self):
        self._timer = None
        for username in self.journal.due():
            if username not in self._inflight:
                self._try(username).addErrback(lambda _failure: None)
        self._schedule()
