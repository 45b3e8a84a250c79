"""Build steps: issue a token, upload with it from the worker, revoke it.

The password lives in three places only: the token service's response (in
memory on the master), buildbot's redaction table (so a log that prints it
shows ``<artifact-token>`` instead), and a 0600 .netrc in the builder's
directory on the worker, which the revoke step deletes. It is never in a
property (properties go to the database), a command line, an environment or
a log.
"""

import stat

from twisted.internet import defer
from twisted.python import log as twlog

from buildbot.process import buildstep, remotecommand
from buildbot.process.properties import Property
from buildbot.process.results import (CANCELLED, FAILURE, SKIPPED, SUCCESS, WARNINGS,
                                      Results)
from buildbot.steps.worker import CompositeStepMixin

from . import curlconfig, naming
from .client import TokenServiceClient, TokenServiceError

REDACTED_NAME = 'artifact-token'  # logs show <artifact-token> instead of the password
_GLOB_CHARS = set('*?[')


def _client(step):
    return TokenServiceClient(step.token_url, step.master_user, step.master_password,
                              timeout=step.http_timeout)


def _summary(step, text):
    step.descriptionDone = [text]


class IssueArtifactToken(buildstep.BuildStep, CompositeStepMixin):
    """Issues a token for this build and puts its .netrc on the worker.

    Sets the properties ``artifact_username``, ``artifact_scopes``,
    ``artifact_url`` (base URL of the first scope, ending in '/'),
    ``artifact_expires_at`` and ``artifact_netrc`` (the .netrc's path on the
    worker). The scope defaults to ``<artifact_type>/<project>/<buildername>/
    <buildnumber>``, each part sanitized to the scope grammar; ``scope`` (one
    string or a list) replaces it and is checked, not rewritten.
    """

    name = 'issue artifact token'
    renderables = ['token_url', 'master_user', 'master_password', 'artifact_type',
                   'project', 'scope', 'ttl', 'public_url']

    def __init__(self, token_url, master_user, master_password, artifact_type='files',
                 project=Property('project'), scope=None, ttl=3600, public_url=None,
                 http_timeout=30, revoke_when_build_finishes=True, **kwargs):
        kwargs.setdefault('haltOnFailure', True)
        super().__init__(**kwargs)
        self.token_url = token_url
        self.master_user = master_user
        self.master_password = master_password
        self.artifact_type = artifact_type
        self.project = project
        self.scope = scope
        self.ttl = ttl
        self.public_url = public_url
        self.http_timeout = http_timeout
        self.revoke_when_build_finishes = revoke_when_build_finishes

    def _scopes(self):
        if self.scope:
            wanted = [self.scope] if isinstance(self.scope, str) else list(self.scope)
            return [naming.parse_scope(s) for s in wanted]
        if not self.project:
            raise naming.NameError_("no project: pass project= or set the 'project' property")
        return [naming.default_scope(self.artifact_type, self.project,
                                     self.build.builder.name, self.build.number)]

    def _netrc_path(self):
        builddir = self.getProperty('builddir')
        return self.build.path_module.join(
            builddir, f'.artifact-token-{self.build.number}.netrc')

    @defer.inlineCallbacks
    def run(self):
        log = yield self.addLog('token')
        try:
            scopes = self._scopes()
            ttl = int(self.ttl)
        except (naming.NameError_, ValueError, TypeError) as e:
            yield log.addStderr(f'artifact-token: {e}\n')
            _summary(self, 'bad scope')
            return FAILURE
        yield log.addStdout(f"issuing a token for {', '.join(scopes)} (ttl {ttl} s)\n")
        client = _client(self)
        try:
            doc = yield client.issue(scopes, ttl)
        except TokenServiceError as e:
            yield log.addStderr(str(e) + '\n')
            _summary(self, f'token refused (HTTP {e.status})' if e.status
                     else 'token service unreachable')
            return FAILURE

        password = doc['password']
        # From here on any output that contains the password is redacted.
        self.build.properties.useSecret(password, REDACTED_NAME)
        username = doc['username']
        urls = [u if u.endswith('/') else u + '/' for u in doc['urls']]
        if self.public_url:
            base = self.public_url.rstrip('/') + '/'
            urls = [base + s + '/' for s in doc.get('scopes', scopes)]
        netrc_path = self._netrc_path()
        source = 'IssueArtifactToken'
        # Set before anything else can fail, so the revoke step always finds it.
        self.setProperty('artifact_username', username, source, runtime=True)
        self.setProperty('artifact_scopes', list(doc.get('scopes', scopes)), source, runtime=True)
        self.setProperty('artifact_url', urls[0], source, runtime=True)
        self.setProperty('artifact_expires_at', doc.get('expires_at'), source, runtime=True)
        self.setProperty('artifact_netrc', netrc_path, source, runtime=True)
        if self.revoke_when_build_finishes:
            yield self._revoke_when_build_finishes(client, username)
        yield log.addStdout(f"token {username} for {urls[0]} expires {doc.get('expires_at')}\n")

        try:
            text = curlconfig.netrc_text(urls[0], username, password)
        except ValueError as e:
            yield log.addStderr(f'artifact-token: unusable token response: {e}\n')
            return FAILURE
        res = yield self.downloadFileContentToWorker(
            netrc_path, text, mode=stat.S_IRUSR | stat.S_IWUSR, workdir='.')
        if res is None:
            yield log.addStderr(f'could not write {netrc_path} on the worker\n')
            _summary(self, 'netrc not written')
            return FAILURE
        yield log.addStdout(f'credential written to {netrc_path} (mode 0600)\n')
        yield self.addURL('artifacts', urls[0])
        _summary(self, f'token {username}')
        return SUCCESS

    @defer.inlineCallbacks
    def _revoke_when_build_finishes(self, client, username):
        """Safety net: revoke when the build ends even if no revoke step runs.

        buildbot runs no further step, alwaysRun or not, once the worker is
        lost (Build.getNextStep returns None without a connection); the token
        would then live until its ttl. A 404 here means the step did its job.
        """
        build = self.build
        consumer = None

        @defer.inlineCallbacks
        def finished(_key, _msg):
            if consumer is not None:
                consumer.stopConsuming()
            if username in getattr(build, 'artifact_tokens_revoked', ()):
                return
            try:
                revoked = yield client.revoke(
                    username, success=getattr(build, 'results', FAILURE) in (SUCCESS, WARNINGS))
                if revoked is not None:
                    twlog.msg(f'artifact-repository: revoked token {username} at build end')
            except TokenServiceError as e:
                twlog.msg(str(e))

        buildid = getattr(build, 'buildid', None)
        if buildid is None:
            return
        consumer = yield self.master.mq.startConsuming(
            finished, ('builds', str(buildid), 'finished'))


class UploadArtifacts(buildstep.ShellMixin, CompositeStepMixin, buildstep.BuildStep):
    """PUTs files from the worker into the build's scope with curl.

    ``sources`` is one path or a list, relative to the step's workdir; each is
    a file, a shell glob (``**`` recurses) or a directory. A file goes to
    ``<url><dest>/<basename>``; a directory's tree goes to ``<url><dest>/<its
    relative path>``. Uploads run ``parallel`` at a time, each retried
    ``retries`` times on transient errors; any HTTP error fails the step. Each
    uploaded URL (up to ``max_links``) becomes a link on the build page.
    """

    name = 'upload artifacts'
    renderables = ['sources', 'dest', 'url', 'netrc']

    def __init__(self, sources, dest='', url=Property('artifact_url'),
                 netrc=Property('artifact_netrc'), parallel=4, retries=3,
                 connect_timeout=10, max_links=20, curl='curl', **kwargs):
        kwargs.setdefault('logEnviron', False)
        kwargs = self.setupShellMixin(kwargs, prohibitArgs=['command', 'initialStdin'])
        super().__init__(**kwargs)
        self.sources = sources
        self.dest = dest
        self.url = url
        self.netrc = netrc
        self.parallel = parallel
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.max_links = max_links
        self.curl = curl

    @defer.inlineCallbacks
    def _stat(self, path):
        cmd = remotecommand.RemoteCommand('stat', {'file': path, 'workdir': '.'})
        yield self.runCommand(cmd)
        if cmd.didFail():
            return None
        return cmd.updates['stat'][-1][stat.ST_MODE]

    @defer.inlineCallbacks
    def _files_below(self, directory):
        cmd = yield self.makeRemoteShellCommand(
            collectStdout=True, stdioLogName=None,
            command=['find', '.', '-type', 'f'], workdir=directory)
        yield self.runCommand(cmd)
        if cmd.didFail():
            return None
        return sorted(line[2:] for line in cmd.stdout.splitlines() if line.startswith('./'))

    @defer.inlineCallbacks
    def _transfers(self, log):
        """[(absolute worker path, remote path)] or None after logging why."""
        pm = self.build.path_module
        workdir = pm.join(self.getProperty('builddir'), self.workdir)
        sources = [self.sources] if isinstance(self.sources, str) else list(self.sources)
        prefix = self.dest.strip('/')
        found = []
        for source in sources:
            pattern = pm.join(workdir, source)
            if _GLOB_CHARS & set(source):
                matches = yield self.runGlob(pattern, abandonOnFailure=False)
                matches = sorted(matches or [])
            else:
                matches = [pattern]
            if not matches:
                yield log.addStderr(f'nothing matches {source!r} in {workdir}\n')
                return None
            for match in matches:
                mode = yield self._stat(match)
                if mode is None:
                    yield log.addStderr(f'{source}: {match} does not exist on the worker\n')
                    return None
                if stat.S_ISDIR(mode):
                    below = yield self._files_below(match)
                    if below is None:
                        yield log.addStderr(f'could not list {match} on the worker\n')
                        return None
                    found += [(pm.join(match, rel), rel) for rel in below]
                elif stat.S_ISREG(mode):
                    found.append((match, pm.basename(match)))
                # Anything else (sockets, a glob's directories' siblings) is skipped.
        transfers, seen = [], {}
        for local, rel in found:
            remote = f'{prefix}/{rel}' if prefix else rel
            try:
                remote = naming.check_remote_path(remote)
            except naming.NameError_ as e:
                yield log.addStderr(f'{local}: {e}\n')
                return None
            if remote in seen and seen[remote] != local:
                yield log.addStderr(f'{seen[remote]} and {local} would both be {remote}\n')
                return None
            if remote not in seen:
                seen[remote] = local
                transfers.append((local, remote))
        return transfers

    @defer.inlineCallbacks
    def _make_collections(self, log, base, remotes):
        """MKCOLs the directories the files go into; False after logging why."""
        urls = [base + d for d in curlconfig.collections(remotes)]
        if not urls:
            return True
        config = curlconfig.mkcol_config(self.netrc, urls, retries=self.retries,
                                         connect_timeout=self.connect_timeout)
        cmd = yield self.makeRemoteShellCommand(
            collectStdout=True, command=[self.curl, '--config', '-'], initialStdin=config)
        yield self.runCommand(cmd)
        results = curlconfig.parse_write_out(cmd.stdout)
        # 201 made, 405 there already (from an earlier upload step).
        bad = [f'{status} {url}' for status, url in results if status not in (201, 405)]
        if cmd.didFail() or bad or len(results) != len(urls):
            yield log.addStderr(f'creating {len(urls)} directories failed (curl exit {cmd.rc})\n')
            for line in bad:
                yield log.addStderr(f'  HTTP {line}\n')
            return False
        return True

    @defer.inlineCallbacks
    def run(self):
        log = yield self.addLog('files')
        if not self.url or not self.netrc:
            yield log.addStderr('no artifact token: run IssueArtifactToken first '
                                '(properties artifact_url and artifact_netrc are unset)\n')
            _summary(self, 'no token')
            return FAILURE
        transfers = yield self._transfers(log)
        if transfers is None:
            _summary(self, 'nothing uploaded')
            return FAILURE
        base = self.url if self.url.endswith('/') else self.url + '/'
        pairs = [(local, base + remote) for local, remote in transfers]
        # One log write for the whole list: each addStdout is a database
        # round trip, which dominated a 500-file upload (bench/RESULTS-buildbot.md).
        yield log.addStdout(''.join(f'{local} -> {url}\n' for local, url in pairs))
        made = yield self._make_collections(log, base, [remote for _, remote in transfers])
        if not made:
            _summary(self, 'could not create directories')
            return CANCELLED if self.stopped else FAILURE
        config = curlconfig.upload_config(self.netrc, pairs, parallel=self.parallel,
                                          retries=self.retries,
                                          connect_timeout=self.connect_timeout)
        cmd = yield self.makeRemoteShellCommand(
            collectStdout=True, command=[self.curl, '--config', '-'], initialStdin=config)
        yield self.runCommand(cmd)
        results = curlconfig.parse_write_out(cmd.stdout)
        ok = [url for status, url in results if 200 <= status < 300]
        for url in ok[:self.max_links]:
            yield self.addURL(url[len(base):], url)
        if len(ok) > self.max_links:
            yield self.addURL(f'... all {len(ok)} files', base)
        if cmd.didFail() or len(ok) != len(pairs):
            failed = [f'{status} {url}' for status, url in results if not 200 <= status < 300]
            yield log.addStderr(f'upload failed: {len(ok)} of {len(pairs)} files uploaded '
                                f'(curl exit {cmd.rc})\n')
            for line in failed:
                yield log.addStderr(f'  HTTP {line}\n')
            _summary(self, f'uploaded {len(ok)} of {len(pairs)} files')
            return CANCELLED if self.stopped else FAILURE
        _summary(self, f'uploaded {len(ok)} files')
        return SUCCESS


class RevokeArtifactToken(buildstep.BuildStep, CompositeStepMixin):
    """Revokes the build's token and deletes its .netrc from the worker.

    Runs always (``alwaysRun``): after a failed, halted or stopped build too.
    A token that is already gone (expired, revoked) is a warning, not a failure.
    """

    name = 'revoke artifact token'
    renderables = ['token_url', 'master_user', 'master_password', 'username', 'netrc']

    def __init__(self, token_url, master_user, master_password,
                 username=Property('artifact_username', default=None),
                 netrc=Property('artifact_netrc', default=None), http_timeout=30, **kwargs):
        kwargs.setdefault('alwaysRun', True)
        super().__init__(**kwargs)
        self.logEnviron = False
        self.token_url = token_url
        self.master_user = master_user
        self.master_password = master_password
        self.username = username
        self.netrc = netrc
        self.http_timeout = http_timeout

    @defer.inlineCallbacks
    def run(self):
        log = yield self.addLog('token')
        if not self.username:
            yield log.addStdout('no token was issued for this build\n')
            _summary(self, 'no token')
            return SKIPPED
        result = SUCCESS
        yield log.addStdout(f'build result so far: {Results[self.build.results]}\n')
        try:
            # The server seals the build and moves `latest` only on success.
            success = self.build.results in (SUCCESS, WARNINGS)
            sealed = yield _client(self).revoke(self.username, success=success)
            self.build.artifact_tokens_revoked = (
                getattr(self.build, 'artifact_tokens_revoked', set()) | {self.username})
            if sealed is not None:
                yield log.addStdout(f'token {self.username} revoked\n')
                if sealed:
                    yield log.addStdout(
                        f"sealed: {sealed.get('files', 0)} files, {sealed.get('bytes', 0)} bytes, "
                        f"state {sealed.get('state', '?')}, result "
                        f"{'success' if success else 'failure'}\n")
                    for name in sealed.get('mismatches') or []:
                        yield log.addStderr(f'checksum mismatch: {name}\n')
                        result = WARNINGS
            else:
                yield log.addStdout(f'token {self.username} was already revoked or expired\n')
                result = WARNINGS
        except TokenServiceError as e:
            yield log.addStderr(str(e) + '\n')
            result = FAILURE
        if self.netrc:
            try:
                rc = yield self.runRemoteCommand('rmfile', {'path': self.netrc, 'logEnviron': False},
                                                 abandonOnFailure=False,
                                                 evaluateCommand=lambda cmd: cmd.rc)
                if rc == 0:
                    yield log.addStdout(f'{self.netrc} removed from the worker\n')
                else:
                    yield log.addStderr(f'could not remove {self.netrc} from the worker '
                                        f'(rc {rc})\n')
                    result = max(result, WARNINGS)
            except Exception as e:  # worker gone: the file dies with the token anyway
                yield log.addStderr(f'could not remove {self.netrc} from the worker: {e}\n')
                result = max(result, WARNINGS)
        _summary(self, 'token revoked' if result == SUCCESS else
                 ('revoke failed' if result == FAILURE else 'token gone'))
        return result
