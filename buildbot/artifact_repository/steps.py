"""Build steps: issue a token, upload with it from the worker, revoke it.

The password lives in these places only: the token service's response and
the running build's RelayCredential (in memory on the master, for the relay
of small trees; the revoke step drops it), buildbot's redaction table (so a
log that prints it shows ``<artifact-token>`` instead), and a 0600 .netrc in
the builder's directory on the worker, which the revoke step deletes. It is
never in a property (properties go to the database), a command line, an
environment or a log.
"""

import secrets
import socket
import stat
import time
import weakref

from twisted.internet import defer

from buildbot.process import buildstep, remotecommand
from buildbot.process.properties import Property
from buildbot.process.results import (CANCELLED, FAILURE, SKIPPED, SUCCESS, WARNINGS,
                                      Results, worst_status)
from buildbot.steps.worker import CompositeStepMixin
from buildbot.util import asyncSleep

from . import curlconfig, naming, relay, worker_upload
from .client import TokenServiceError

REDACTED_NAME = 'artifact-token'  # logs show <artifact-token> instead of the password
DEFAULT_REPOSITORY = 'artifact-repository'


def _summary(step, text):
    step.descriptionDone = [text]


def _repository(step, name=None):
    """The ArtifactRepository service named ``name`` (default:
    ``step.repository``), or None."""
    from .repository import ArtifactRepository
    svc = step.master.service_manager.namedServices.get(name or step.repository)
    return svc if isinstance(svc, ArtifactRepository) else None


def _no_repository(step):
    return (f"artifact-token: no ArtifactRepository service named {step.repository!r}: "
            "add the repository object to c['services'] in master.cfg\n")


# A request that nginx answered with 502 (its token service not answering:
# a restart of the service, e.g. by a package upgrade, takes about 0.6 s) is
# sent again after each of these delays: the issue, the upload's check and
# archive, the relay (a PUT has its own, curl --retry).
SERVICE_DOWN_DELAYS = (1, 2, 4)


@defer.inlineCallbacks
def _through_restarts(step, attempt, service_down):
    """Calls ``attempt()`` again after each of SERVICE_DOWN_DELAYS while
    ``service_down`` finds in its answer the HTTP status of a token service
    that did not answer (nginx's 502), until ``step`` is stopped (looked at
    every 0.1 s of a delay). Returns (the last answer, the log's lines on the
    retries)."""
    notes = []
    answer = yield attempt()
    for delay in SERVICE_DOWN_DELAYS:
        status = service_down(answer)
        if status is None or step.stopped:
            break
        for _ in range(int(delay * 10)):
            yield asyncSleep(0.1)
            if step.stopped:
                return answer, notes
        notes.append(f'HTTP {status} from the artifact server (its token service is not '
                     f'answering, e.g. restarting): sent again after {delay} s')
        answer = yield attempt()
    return answer, notes


def _answer(d):
    """``d`` with a TokenServiceError as its result instead of its failure."""
    return d.addErrback(lambda f: f.trap(TokenServiceError) and f.value)


def _service_down(answer):
    """502 when ``answer`` is nginx's 502, else None."""
    return 502 if isinstance(answer, TokenServiceError) and answer.status == 502 else None


def _issue_unanswered(answer):
    """The status of a 502 or 504 of POST /token, else None: the token
    service did not answer (an issue is safe to send again: its request_id
    names the same token)."""
    if isinstance(answer, TokenServiceError) and answer.status in (502, 504):
        return answer.status
    return None


class IssueArtifactToken(buildstep.BuildStep, CompositeStepMixin):
    """Issues a token for this build and puts its .netrc on the worker.

    Sets the properties ``artifact_username``, ``artifact_scopes``,
    ``artifact_url`` (base URL of the first scope, ending in '/'),
    ``artifact_expires_at`` and ``artifact_netrc`` (the .netrc's path on the
    worker). The scope defaults to ``<artifact_type>/<project>/<buildername>/
    <buildnumber>``, each part sanitized to the scope grammar; ``scope`` (one
    string or a list) replaces it and is checked, not rewritten.

    The token is journaled by the ``repository`` service, which revokes it
    when the build finishes if no revoke step did (a lost worker runs no
    further step), and retries a failed revoke until it is confirmed, across
    master restarts. ``revoke_when_build_finishes=False`` leaves the token
    out of the journal: only a revoke step or its ttl ends it.
    """

    name = 'issue artifact token'
    renderables = ['artifact_type', 'project', 'scope', 'ttl', 'public_url']

    def __init__(self, repository=DEFAULT_REPOSITORY, artifact_type='files',
                 project=Property('project'), scope=None, ttl=3600, public_url=None,
                 revoke_when_build_finishes=True, **kwargs):
        kwargs.setdefault('haltOnFailure', True)
        super().__init__(**kwargs)
        self.repository = repository
        self.artifact_type = artifact_type
        self.project = project
        self.scope = scope
        self.ttl = ttl
        self.public_url = public_url
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
        # One name per builder directory: a worker runs one build of a builder
        # at a time, and the next build replaces a .netrc that a lost worker
        # could not delete (its token was revoked by the master meanwhile).
        return self.build.path_module.join(self.getProperty('builddir'), '.artifact-token.netrc')

    @defer.inlineCallbacks
    def run(self):
        log = yield self.addLog('token')
        repo = _repository(self)
        if repo is None:
            yield log.addStderr(_no_repository(self))
            _summary(self, 'no repository service')
            return FAILURE
        try:
            scopes = self._scopes()
            ttl = int(self.ttl)
        except (naming.NameError_, ValueError, TypeError) as e:
            yield log.addStderr(f'artifact-token: {e}\n')
            _summary(self, 'bad scope')
            return FAILURE
        yield log.addStdout(f"issuing a token for {', '.join(scopes)} (ttl {ttl} s)\n")
        client = yield repo.client()
        username = None
        request_id = f'build{self.build.buildid}.{secrets.token_hex(8)}'
        if self.revoke_when_build_finishes:
            # Named and journaled before the POST: a master that dies between
            # the server's answer and a journal write would leave a live token
            # nobody owes a revoke. A name never issued is just a 404 later.
            username = naming.token_name(client.master_user, request_id)
            try:
                repo.track(username, scopes, self.build.buildid, ttl, url=client.base_url)
            except OSError as e:
                yield log.addStderr(f'artifact-token: cannot write the journal: {e}\n')
                _summary(self, 'journal not writable')
                return FAILURE
        # Sent again after a 502 or 504 (the token service restarting or
        # slow): the same request_id gets the same token if one was issued.
        answer, notes = yield _through_restarts(
            self, lambda: _answer(client.issue(scopes, ttl, request_id=request_id)),
            _issue_unanswered)
        if notes:
            yield log.addStdout(''.join(note + '\n' for note in notes))
        try:
            if isinstance(answer, TokenServiceError):
                raise answer
            doc = answer
        except TokenServiceError as e:
            yield log.addStderr(str(e) + '\n')
            if username is not None:
                if e.status is None or e.status >= 500:  # it may exist: its revoke is owed
                    repo.revoke_token(username, success=False).addErrback(lambda _: None)
                else:  # refused: nothing was issued
                    repo.forget(username)
            _summary(self, f'token refused (HTTP {e.status})' if e.status
                     else 'token service unreachable')
            return FAILURE

        password = doc['password']
        # From here on any output that contains the password is redacted.
        self.build.properties.useSecret(password, REDACTED_NAME)
        scopes = list(doc.get('scopes', scopes))
        if username is not None and doc['username'] != username:
            # A server that names tokens itself: journal the name it chose.
            repo.forget(username)
            try:
                repo.track(doc['username'], scopes, self.build.buildid, ttl, url=client.base_url)
            except OSError as e:
                yield log.addStderr(f'artifact-token: cannot write the journal: {e}\n')
                yield client.revoke(doc['username'], success=False).addErrback(lambda _: None)
                _summary(self, 'journal not writable')
                return FAILURE
        username = doc['username']
        urls = [u if u.endswith('/') else u + '/' for u in doc['urls']]
        if self.public_url:
            base = self.public_url.rstrip('/') + '/'
            urls = [base + s + '/' for s in scopes]
        netrc_path = self._netrc_path()
        # For UploadArtifacts' relay of small trees (relay.py); in memory
        # only, dropped by the revoke step and with the build.
        self.build.artifact_relay = RelayCredential(
            urls[0], '/' + scopes[0] + '/', username, password, self.repository)
        source = 'IssueArtifactToken'
        # Set before anything else can fail, so the revoke step always finds it.
        self.setProperty('artifact_username', username, source, runtime=True)
        self.setProperty('artifact_scopes', scopes, source, runtime=True)
        self.setProperty('artifact_url', urls[0], source, runtime=True)
        self.setProperty('artifact_expires_at', doc.get('expires_at'), source, runtime=True)
        self.setProperty('artifact_netrc', netrc_path, source, runtime=True)
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


# repo.relay_hints values besides a reason to leave a directory to the worker's curl.
SMALL_DIRECTORY = 'relay'
NOT_A_DIRECTORY = 'not a directory'


class RelayCredential:
    """The build's token as the master uses it to POST a small tree: ``url``
    (the first scope's URL as the steps know it), ``path`` (that scope below
    the repository's URL as the master reaches it), ``username`` and
    ``password`` (never shown by repr)."""

    __slots__ = ('url', 'path', 'username', 'password', 'repository')

    def __init__(self, url, path, username, password, repository):
        self.url = url
        self.path = path
        self.username = username
        self.password = password
        self.repository = repository

    def __repr__(self):
        return f'RelayCredential({self.url!r}, {self.username!r}, <password>)'


def _socket(conn):
    """The TCP socket of the master's end of a PB connection to the worker,
    or None (a connection of another kind, TLS, a lost connection)."""
    try:
        sock = conn.mind.broker.transport.getHandle()
        return sock if sock.family in (socket.AF_INET, socket.AF_INET6) else None
    except Exception:  # noqa: BLE001 -- whatever the transport is, it is not ours to break
        return None


def _set_tcp_option(conn, option, value=1):
    """Sets a TCP option on the master's end of a PB connection. True when
    set; False where it cannot be (an option this OS lacks, no TCP socket, a
    closed one): then nothing changes. Never raises: it must not disturb the
    running command."""
    sock = _socket(conn)
    if sock is None or option is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, value)
        return True
    except OSError:
        return False


def ack_worker_promptly(conn):
    """Sends the master's pending TCP acknowledgement to the worker now.

    Why (measured, issue 17): a shell command that ends within about 40 ms
    reports its end about 40 ms late. The worker answers startCommand; the
    master's kernel delays its ACK of that answer (Linux's delayed ACK, up
    to 40 ms, as the connection looks interactive); the worker's kernel holds
    the command's result until that ACK comes (Nagle: buildbot's PB connection
    has no TCP_NODELAY). A step running `true` took 52 ms that way, 14-29 ms
    with the ACK pushed out (TCP_QUICKACK) when the answer arrives
    (bench/FINDINGS.md). Returns what _set_tcp_option does.
    """
    return _set_tcp_option(conn, getattr(socket, 'TCP_QUICKACK', None))


# socket -> [our commands running on it, TCP_NODELAY before the first one]
_NODELAY_USERS = weakref.WeakKeyDictionary()


def send_to_worker_promptly(conn):
    """Lets the master's messages to the worker leave at once (TCP_NODELAY on
    the master's end) until the matching ``done_sending_promptly``. Calls
    nest: the connection is shared by every build on the worker, and the
    option goes back to what it was when the last of our commands ends, so
    other steps (buildbot's own uploads among them) run as buildbot ships.

    Why (measured, issue 17): the other direction of the stall above. The
    master's startCommand waited in its kernel (Nagle) for the worker's
    delayed ACK of the master's last message: a relayed 32-file tree got the
    worker's answer 8.5-17 ms after the command, 7-10 ms with this. Returns
    what _set_tcp_option does.
    """
    sock = _socket(conn)
    if sock is None:
        return False
    users = _NODELAY_USERS.get(sock)
    if users:
        users[0] += 1
        return True
    try:
        before = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    except OSError:
        return False
    if not _set_tcp_option(conn, socket.TCP_NODELAY):
        return False
    _NODELAY_USERS[sock] = [1, before]
    return True


def done_sending_promptly(conn):
    """Ends one send_to_worker_promptly; the last one restores the option."""
    sock = _socket(conn)
    users = _NODELAY_USERS.get(sock) if sock is not None else None
    if not users:
        return
    users[0] -= 1
    if users[0] == 0:
        del _NODELAY_USERS[sock]
        _set_tcp_option(conn, socket.TCP_NODELAY, users[1])


def report_promptly(cmd):
    """Makes ``cmd`` (a RemoteCommand not yet run) start without a Nagle wait
    and keep it so until it ends (send_to_worker_promptly), and push the
    master's ACK out as soon as the worker has answered its start
    (ack_worker_promptly)."""
    start, run = cmd._start, cmd.run
    prompt = []

    def start_then_ack():
        if send_to_worker_promptly(cmd.conn):
            prompt.append(cmd.conn)
        d = start()

        def answered(answer):
            ack_worker_promptly(cmd.conn)
            return answer
        d.addCallback(answered)
        return d

    def run_then_restore(*args, **kwargs):
        def ended(result):
            while prompt:
                done_sending_promptly(prompt.pop())
            return result
        return run(*args, **kwargs).addBoth(ended)
    cmd._start = start_then_ack
    cmd.run = run_then_restore
    return cmd


class UploadArtifacts(buildstep.ShellMixin, buildstep.BuildStep):
    """Uploads files from the worker into the build's scope.

    ``sources`` is one path or a list, relative to the step's workdir; each is
    a file, a shell glob (``**`` recurses; the worker expands it in its own
    process) or a directory. A file goes to ``<url><dest>/<basename>``; a
    directory's tree goes to ``<url><dest>/<its relative path>``.

    A small tree goes through the master (relay.py): when the one source is a
    directory of at most ``relay_max_files`` entries and ``relay_max_bytes``
    of archive, and the build's token came from IssueArtifactToken, the
    worker's own process archives it (``uploadDirectory``, as buildbot's
    ``DirectoryUpload`` does: no program starts on the worker) and the master
    POSTs the archive to the build, where the server unpacks it (one tree
    upload, all or nothing). The list of files goes into the log while the
    server unpacks; a refusal adds to the log that none of them was stored.
    The worker archives a whole tree into its temp directory before it sends
    a byte (``DirectoryUpload`` pays that every time), so the first sight of
    a directory asks the worker for its entries (one glob) and their sizes
    (one stat each). The master then remembers,
    per builder, source and bounds, until it restarts, what it found: a file
    goes to the worker's curl without a question; a small directory is
    archived without a question (one that has grown past the bounds, or
    become a file, costs one archive pass on the worker before curl sends
    it); a directory the relay declined goes to curl, with the same reason
    in the log. A directory source gets one link, to the directory, made
    first (as ``DirectoryUpload`` makes its ``url`` link before it
    transfers). ``relay_max_files=0`` turns the relay off.

    Anything else, and a tree the relay finds unusual (links, a bad name,
    more bytes than the bound: the log says which), is sent by the worker:
    worker_upload.sh with ``sh -c`` (POSIX sh, find, awk, tar, curl; no
    python) finds the files, checks each name against the repository's rule
    (a bad name, two files for one name or a missing source refuse the whole
    upload before any request) and runs one curl: a HEAD of the build's URL,
    a directory's small files as one tar archive, larger files as PUTs,
    ``parallel`` at a time, ``--fail-early``, transient errors retried
    ``retries`` times; a PUT makes the missing directories.

    Any HTTP error fails the step and names the file. A server that cannot be
    reached fails the step at once, and the build's later upload steps are
    skipped with one line. The step writes one log. Otherwise up to
    ``max_links`` files each get a link on the build page (in name order);
    more get one link to their directory, as each link is a database write
    on the master.
    """

    name = 'upload artifacts'
    renderables = ['sources', 'dest', 'url', 'netrc']

    def __init__(self, sources, dest='', url=Property('artifact_url'),
                 netrc=Property('artifact_netrc'), parallel=8, retries=3,
                 connect_timeout=10, max_links=5, curl='curl',
                 relay_max_files=100, relay_max_bytes=4 * 1024 * 1024, **kwargs):
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
        self.relay_max_files = relay_max_files
        self.relay_max_bytes = relay_max_bytes
        self.directory_link = None  # the relay's link to the directory (a Deferred)

    @defer.inlineCallbacks
    def _worker_paths(self, sources):
        """The worker paths of ``sources``: a glob expanded by the worker's own
        process (no program starts for it), anything else as given."""
        paths = []
        for source in sources:
            if not worker_upload.GLOB_CHARS & set(source):
                paths.append(source)
                continue
            found = yield self._glob(source)
            if not found:
                raise worker_upload.Refusal(f'nothing matches {source!r} in the workdir'
                                            if found is not None
                                            else f'cannot expand {source!r} on the worker')
            paths += sorted(found)
        return paths

    @defer.inlineCallbacks
    def _glob(self, pattern):
        """The worker's paths matching ``pattern`` (below the workdir), or None
        if the worker could not expand it."""
        pm = self.build.path_module
        path = pm.join(self.getProperty('builddir'), self.workdir or '', pattern)
        cmd = report_promptly(
            remotecommand.RemoteCommand('glob', {'path': path, 'logEnviron': False}))
        yield self.runCommand(cmd)
        return cmd.updates.get('files', [[]])[-1] if not cmd.didFail() else None

    @defer.inlineCallbacks
    def _file_bytes(self, paths):
        """The total size of the regular files among the worker's ``paths``
        (absolute, from _glob), one stat each, or None if one failed."""
        total = 0
        for path in paths:
            cmd = report_promptly(remotecommand.RemoteCommand(
                'stat', {'file': path, 'workdir': '', 'logEnviron': False}))
            yield self.runCommand(cmd)
            found = cmd.updates.get('stat', [None])[-1] if not cmd.didFail() else None
            if not found:
                return None
            if stat.S_ISREG(found[stat.ST_MODE]):
                total += found[stat.ST_SIZE]
            if total > self.relay_max_bytes:
                break
        return total

    def _relay_credential(self, base, paths):
        """The build's RelayCredential when this upload may be relayed, else None."""
        credential = getattr(self.build, 'artifact_relay', None)
        if (credential is None or credential.url != base or len(paths) != 1
                or self.relay_max_files <= 0 or self.relay_max_bytes <= 0
                or self.workerVersion('uploadDirectory') is None):
            return None
        return credential

    def _relay_key(self, source):
        """What repo.relay_hints remembers a source by (with the bounds:
        two steps of a builder may upload one directory with other bounds)."""
        return (self.build.builder.name, self.workdir or '', source, self.relay_max_files,
                self.relay_max_bytes)

    @defer.inlineCallbacks
    def _relay(self, credential, source, dest, base, making_log):
        """Sends the directory ``source`` through the master (relay.py).

        Returns (outcome, how, log) with an outcome as worker_upload.parse's
        and the step's log (made from ``making_log``) holding the list of
        files, or (None, reason, None) when the worker's curl should send it
        instead (reason None: not a directory); nothing has reached the
        server then.
        """
        repo = _repository(self, credential.repository)
        if repo is None:
            return None, 'no repository service', None
        started = time.monotonic()
        key = self._relay_key(source)
        hint = repo.relay_hints.get(key)
        if hint == NOT_A_DIRECTORY:
            return None, None, None
        remembered = hint is not None
        if hint is None:
            # Everything below a directory; nothing for a file, a missing
            # path or an empty directory (`source/**` alone lists a file too).
            found = yield self._glob(self.build.path_module.join(source, '**', '*'))
            if not found:
                repo.remember_relay(key, NOT_A_DIRECTORY)
                return None, None, None
            hint = (SMALL_DIRECTORY if len(found) <= self.relay_max_files
                    else f'more than {self.relay_max_files} entries')
            if hint == SMALL_DIRECTORY:
                # The worker archives a whole tree into its temp directory
                # before it sends a byte: measure it first, once per source.
                size = yield self._file_bytes(found)
                if size is not None and size > self.relay_max_bytes:
                    hint = f'{size} bytes of files, more than {self.relay_max_bytes}'
            repo.remember_relay(key, hint)
        # A directory: its link goes on the build page now, while the worker
        # works, as DirectoryUpload makes its url= link before its transfer
        # (each link is a database write, 6-9 ms measured here).
        top = dest + '/' if dest else ''
        self.directory_link = self.addURL(top or './', base + top)
        if hint != SMALL_DIRECTORY:
            return None, hint + (', as in an earlier build' if remembered else ''), None
        writer = relay.ArchiveBuffer(self.relay_max_bytes)
        cmd = report_promptly(remotecommand.RemoteCommand('uploadDirectory', {
            'workdir': self.workdir or '', 'workersrc': source, 'writer': writer,
            'maxsize': self.relay_max_bytes + 1, 'blocksize': relay.BLOCK_SIZE,
            'compress': None}))
        failed = None
        try:
            yield self.runCommand(cmd)
            data = writer.data()
        except Exception as e:  # noqa: BLE001 -- e.g. the directory is gone: curl says so
            failed = f'the worker could not archive it: {str(e).strip()[:200]}'
        finally:
            writer.cancel()
        if self.stopped:
            return None, 'stopped', None
        # What the relay declines now goes to the worker's curl next time
        # too, without the question or the archive pass.
        if writer.overflow:  # the worker stopped at maxsize (and failed the command)
            reason = f'an archive over {self.relay_max_bytes} bytes'
            repo.remember_relay(key, reason)
            return None, reason, None
        if failed or cmd.didFail() or not writer.complete:
            repo.remember_relay(key, None)  # ask again next time
            return None, failed or 'the worker could not archive it', None
        tree = relay.scan(data)
        if tree.reason is None and len(tree.files) + tree.directories > self.relay_max_files:
            tree.reason = f'more than {self.relay_max_files} entries'
        if tree.reason is not None:
            repo.remember_relay(key, tree.reason)
            return None, tree.reason, None
        how = (f'relayed by the master as one archive of {len(data)} bytes '
               f'(archive from the worker in {time.monotonic() - started:.3f} s)')
        pm = self.build.path_module
        files = sorted(((pm.join(source, name), base + top + name) for name in tree.files),
                       key=lambda f: f[1])
        # The list goes into the log while the server unpacks.
        log = yield making_log
        listing = log.addStdout(''.join(f'{local} -> {url}\n' for local, url in files)
                                + how + '\n')
        out = {'error': None, 'unreachable': False, 'curl_errors': [], 'logged': True}
        try:
            answer, out['notes'] = yield _through_restarts(self, lambda: _answer(repo.upload_tree(
                credential.path + top, credential.username, credential.password, tree.body)),
                _service_down)
            if isinstance(answer, TokenServiceError):
                raise answer
            doc, status = answer, 201
        except TokenServiceError as e:
            doc, status = None, e.status or 0
            # A refusal (4xx) changed nothing on the server (docs/api.md);
            # after a 5xx or a lost answer nobody can say, so the log does not.
            out['unreachable'] = e.status is None
            out['error'] = (
                f'cannot reach the artifact server at {base}: {e.reason}' if e.status is None
                else f'the artifact server failed on the archive of {source}: '
                     f'HTTP {e.status}: {e.reason}' if e.status >= 500
                else f'the artifact server refused the archive of {source}: '
                     f'HTTP {e.status}: {e.reason}; none of the files above was stored')
        finally:
            yield listing
        out['files'] = [(local, url, status) for local, url in files]
        if doc is not None and doc['files'] != len(tree.files):
            out['error'] = (f"the server unpacked {doc['files']} of the {len(tree.files)} "
                            'files sent in the archive')
        return out, how, log

    @defer.inlineCallbacks
    def run(self):
        halted = getattr(self.build, 'artifact_uploads_halted', None)
        if halted:
            log = yield self.addLog('files')
            yield log.addStdout(f'not tried: {halted}\n')
            _summary(self, 'not tried: artifact server unreachable')
            return SKIPPED
        if not self.url or not self.netrc:
            log = yield self.addLog('files')
            yield log.addStderr('no artifact token: run IssueArtifactToken first '
                                '(properties artifact_url and artifact_netrc are unset)\n')
            _summary(self, 'no token')
            return FAILURE
        started = time.monotonic()
        base = self.url if self.url.endswith('/') else self.url + '/'
        sources = [self.sources] if isinstance(self.sources, str) else list(self.sources)
        try:
            dest = naming.check_remote_path(self.dest) if self.dest.strip('/') else ''
            paths = yield self._worker_paths(sources)
        except (naming.NameError_, worker_upload.Refusal, ValueError) as e:
            log = yield self.addLog('files')
            yield log.addStderr(f'nothing was uploaded: {e}\n')
            _summary(self, 'nothing uploaded')
            return FAILURE
        # Each log or link is a database write on the master (7-20 ms each,
        # measured): the log is made while the worker works, its text and
        # the links are written together at the end (a relay links the
        # directory first and writes the list of files while the server
        # unpacks).
        outcome, how, log = yield self._send(base, paths, dest, self.addLog('files'))
        if outcome is None:  # refused before any request
            yield defer.gatherResults([log.addStderr(how + '\n')] + self._links([], base, dest),
                                      consumeErrors=True)
            _summary(self, 'nothing uploaded')
            return FAILURE
        files = outcome['files']
        lines = '' if outcome.get('logged') else ''.join(
            f'{local} -> {url}' + (f'  HTTP {code}' if not 200 <= code < 300 else '') + '\n'
            for local, url, code in files)
        lines += ''.join(note + '\n' for note in outcome.get('notes', []))
        error = outcome['error']
        if error is not None:
            lines += error + '\n' + ''.join(f'  {line}\n' for line in outcome['curl_errors'])
        if not outcome.get('logged'):  # a relay logged how it went before its POST
            lines += f'{how}; step {time.monotonic() - started:.3f} s before this log\n'
        writes = [(log.addStdout if error is None else log.addStderr)(lines)] if lines else []
        ok = [url for _, url, code in files if 200 <= code < 300]
        yield defer.gatherResults(writes + self._links(ok, base, dest), consumeErrors=True)
        if error is None:
            _summary(self, f'uploaded {len(ok)} files')
            return SUCCESS
        if outcome['unreachable']:
            self.build.artifact_uploads_halted = (
                f'{error} (in step {self.name!r}); later uploads of this build are skipped')
        if self.stopped:
            _summary(self, 'stopped')
            return CANCELLED
        _summary(self, 'artifact server unreachable' if outcome['unreachable']
                 else (f'uploaded {len(ok)} of {len(files)} files' if files
                       else 'nothing uploaded'))
        return FAILURE

    def _links(self, urls, base, dest):
        """Links on the build page for the stored ``urls``: the directory's
        link if the relay made it (it may have handed over to the worker's
        curl since), else one per file up to ``max_links``, else one to their
        directory. Returns the database writes' Deferreds."""
        if self.directory_link is not None:
            return [self.directory_link]
        if len(urls) <= self.max_links:
            return [self.addURL(url[len(base):], url) for url in urls]
        top = base + (dest + '/' if dest else '')
        return [self.addURL(f'{len(urls)} files in {top[len(base):] or "./"}', top)]

    @defer.inlineCallbacks
    def _send(self, base, paths, dest, making_log):
        """Uploads ``paths``: (outcome, a line saying how and how long, the
        log), or (None, why, the log) when refused before any request."""
        credential = self._relay_credential(base, paths)
        fallback = None
        if credential is not None:
            outcome, fallback, log = yield self._relay(credential, paths[0], dest, base,
                                                       making_log)
            if outcome is not None:
                return outcome, fallback, log
        log = yield making_log
        if self.stopped:
            return {'files': [], 'error': 'stopped before the upload', 'unreachable': False,
                    'curl_errors': []}, 'not sent', log
        try:
            argv = worker_upload.command(self.curl, self.netrc, base, paths, dest,
                                         self.parallel, self.retries, self.connect_timeout)
        except (worker_upload.Refusal, ValueError) as e:
            return None, f'nothing was uploaded: {e}', log

        @defer.inlineCallbacks
        def run_command():
            # stdio stays out of the database: the command's output is
            # collected in memory and run() writes one readable log.
            cmd = yield self.makeRemoteShellCommand(
                collectStdout=True, collectStderr=True, stdioLogName=None, command=argv)
            report_promptly(cmd)
            yield self.runCommand(cmd)
            return worker_upload.parse(base, cmd.rc, cmd.stdout, cmd.stderr)
        worker_started = time.monotonic()
        outcome, notes = yield _through_restarts(
            self, run_command, lambda o: 502 if o['token_service_down'] else None)
        outcome['notes'] = notes
        how = f'worker command {time.monotonic() - worker_started:.3f} s'
        if fallback:
            how = f'sent by the worker (not relayed: {fallback}); ' + how
        return outcome, how, log


class RevokeArtifactToken(buildstep.BuildStep, CompositeStepMixin):
    """Revokes the build's token, waits for its seal, deletes its .netrc.

    Runs always (``alwaysRun``): after a failed, halted or stopped build too.
    The server seals the build at the revoke; a large build is sealed in the
    background (HTTP 202), and the step polls ``/token/<username>/seal`` for
    at most ``seal_timeout`` seconds. Checksum mismatches (a ``.sha256``
    sidecar that does not match its file) or a failed seal fail the step and
    name the files; a seal still running at the timeout is a warning. A
    token that is already gone is a warning. When the server cannot be
    reached the step fails and the repository service keeps retrying.
    """

    name = 'revoke artifact token'
    renderables = ['username', 'netrc']

    def __init__(self, repository=DEFAULT_REPOSITORY,
                 username=Property('artifact_username', default=None),
                 netrc=Property('artifact_netrc', default=None), seal_timeout=900,
                 **kwargs):
        kwargs.setdefault('alwaysRun', True)
        super().__init__(**kwargs)
        self.logEnviron = False
        self.repository = repository
        self.username = username
        self.netrc = netrc
        self.seal_timeout = seal_timeout

    @defer.inlineCallbacks
    def run(self):
        self.build.artifact_relay = None  # the password's copy for the relay
        log = yield self.addLog('token')
        if not self.username:
            yield log.addStdout('no token was issued for this build\n')
            _summary(self, 'no token')
            return SKIPPED
        repo = _repository(self)
        if repo is None:
            yield log.addStderr(_no_repository(self))
            _summary(self, 'no repository service')
            return FAILURE
        # The server seals the build and moves `latest` only on success.
        success = self.build.results in (SUCCESS, WARNINGS)
        yield log.addStdout(f'build result so far: {Results[self.build.results]}\n')
        try:
            answer = yield repo.revoke_token(self.username, success)
        except TokenServiceError as e:
            yield log.addStderr(f'{e}\nthe master retries this revoke in the background '
                                f'(journal {repo.journal.path}) until the server confirms it '
                                'or the token expires\n')
            result, summary = FAILURE, (
                f'revoke pending (HTTP {e.status})' if e.status is not None else
                'revoke pending (server unreachable)' if e.reason.startswith('cannot reach')
                else 'revoke pending')
        else:
            result, summary = yield self._report(repo, answer, success, log)
        result = yield self._remove_netrc(log, result)
        _summary(self, summary)
        return result

    @defer.inlineCallbacks
    def _report(self, repo, answer, success, log):
        if answer is None or answer.status == 404:
            yield log.addStdout(f'token {self.username} was already revoked or expired\n')
            return WARNINGS, 'token gone'
        yield log.addStdout(f'token {self.username} revoked\n')
        if answer.status == 204:
            return SUCCESS, 'token revoked'
        seal = answer.seal
        if answer.status == 202 and getattr(self.master.botmaster, 'shuttingDown', False):
            yield log.addStdout('the server seals the build in the background; the master is '
                                'shutting down and does not wait for it\n')
            return WARNINGS, 'seal not awaited (master shutdown)'
        if answer.status == 202:
            yield log.addStdout(f'the server seals the build in the background; waiting for it '
                                f'(at most {self.seal_timeout:g} s)\n')
            seal = yield self._wait_for_seal(repo, log)
            if seal is None:
                return WARNINGS, 'seal not confirmed'
        state = seal.get('state', '?')
        yield log.addStdout(
            f"sealed: {seal.get('files', 0)} files, {seal.get('bytes', 0)} bytes, state {state}, "
            f"result {'success' if success else 'failure'}\n")
        mismatches = sorted(seal.get('mismatches') or [])
        for name in mismatches:
            yield log.addStderr(f'checksum mismatch: {name} (its .sha256 sidecar names '
                                'another digest)\n')
        if state == 'failed':
            yield log.addStderr(f"seal failed: {seal.get('error', 'no reason given')}\n")
            return FAILURE, 'seal failed'
        if mismatches:
            shown = ', '.join(mismatches[:3]) + (' ...' if len(mismatches) > 3 else '')
            return FAILURE, f'checksum mismatch: {shown}'
        if state != 'done':
            return WARNINGS, f'seal {state}'
        return SUCCESS, 'token revoked, build sealed'

    @defer.inlineCallbacks
    def _wait_for_seal(self, repo, log):
        """The final seal status, or None (timeout, stopped, unreadable) after logging why."""
        client = yield repo.client()
        deadline = time.monotonic() + self.seal_timeout
        interval, errors = 0.2, 0
        for _ in range(int(self.seal_timeout / 0.2) + 2):  # bounded even if the clock stalls
            if self.stopped:
                yield log.addStderr('stopped while waiting for the seal\n')
                return None
            try:
                seal = yield client.seal_status(self.username)
                errors = 0
                if seal.get('state') != 'running':
                    return seal
            except TokenServiceError as e:
                errors += 1
                if errors >= 5:
                    yield log.addStderr(f'{e}\ncannot read the seal status; giving up\n')
                    return None
            if time.monotonic() + interval > deadline:
                break
            yield asyncSleep(interval)
            interval = min(interval * 2, 5.0)
        yield log.addStderr(f'the seal was still running after {self.seal_timeout:g} s\n')
        return None

    @defer.inlineCallbacks
    def _remove_netrc(self, log, result):
        if not self.netrc:
            return result
        try:
            rc = yield self.runRemoteCommand('rmfile', {'path': self.netrc, 'logEnviron': False},
                                             abandonOnFailure=False,
                                             evaluateCommand=lambda cmd: cmd.rc)
            if rc == 0:
                yield log.addStdout(f'{self.netrc} removed from the worker\n')
                return result
            yield log.addStderr(f'could not remove {self.netrc} from the worker (rc {rc})\n')
        except Exception as e:  # worker gone: the file dies with the token anyway
            yield log.addStderr(f'could not remove {self.netrc} from the worker: {e}\n')
        return worst_status(result, WARNINGS)
