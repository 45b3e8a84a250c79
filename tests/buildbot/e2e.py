#!/usr/bin/python3
"""End-to-end test of buildbot/artifact_repository against real servers.

Starts nginx + artifact-token (scripts/run.sh), a Debian buildbot master and a
buildbot-worker, all on 127.0.0.1 with free ports in one temporary directory,
forces builds through the master's REST API and checks what the product
promises: artifacts downloadable and byte-identical, the token revoked after
a good, a failed and a stopped build, no password in any file of the master
or the worker, no write into another build's directory, and a token-service
error shown as one line with its HTTP status. Then what goes wrong in real
life (issue 17): a build over 16 MiB sealed in the background with a wrong
sidecar, `buildbot stop` during a build, an artifact server that accepts
connections and never answers, the artifact server dying during a
build and coming back after a master restart, and buildbot/master.cfg.example
copied verbatim and driven by `buildbot sendchange`. Each case prints its time.

    e2e.py [ARTIFACT_TOKEN_BINARY]      (default: $ARTIFACT_BIN, else build/artifact-token)

Exits 0 when every check passed, 1 with "FAIL: <reason>" otherwise. Set
E2E_KEEP=1 to keep the temporary directory, E2E_CASES=big,stop (names in
CASES) to run some cases only. Never prints a password.
"""

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SUCCESS, WARNINGS, FAILURE, SKIPPED, RETRY, CANCELLED = 0, 1, 2, 3, 5, 6
RESULT_NAMES = {0: 'success', 1: 'warnings', 2: 'failure', 3: 'skipped', 4: 'exception',
                5: 'retry', 6: 'cancelled'}


class Fail(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Fail(message)


def ok(message):
    print(f'ok: {message}', flush=True)


def wait_for(what, predicate, timeout, interval=0.1):
    """Polls predicate() until it returns a true value; bounded in time and count."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise Fail(f'timed out after {timeout:g} s waiting for {what}')


def clean_env(**extra):
    """The environment buildbot runs with: steps log it, so nothing of the caller's."""
    env = {k: os.environ[k] for k in ('PATH', 'HOME', 'LANG', 'TZ') if k in os.environ}
    env['PATH'] = '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'  # Debian's python3, not a pyenv shim
    env['PYTHONDONTWRITEBYTECODE'] = '1'  # no __pycache__ in the source tree
    env.update(extra)
    return env


def free_ports(count):
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http(method, url, body=None, auth=None, timeout=10):
    """(status, bytes) of one request; never raises for an HTTP status."""
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers['Content-Type'] = 'application/json'
    if auth is not None:
        headers['Authorization'] = 'Basic ' + base64.b64encode(':'.join(auth).encode()).decode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return None, b''


class Processes:
    """The processes this test started; stop() ends exactly those."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, log_path, env=None, cwd=None):
        log = open(log_path, 'ab')
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
        log.close()
        self.procs.append((name, proc))
        return proc

    def forget(self, proc):
        """proc has exited: it is no longer this test's to stop."""
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def stop(self):
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    print(f'warning: {name} (pid {proc.pid}) ignored SIGTERM; killing its group',
                          file=sys.stderr)
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        self.procs = []


class Harness:
    def __init__(self, binary, tmp):
        self.binary = binary
        self.tmp = tmp
        self.procs = Processes()
        self.secrets_to_hide = []
        self.repo_port, self.pb_port, self.www_port = free_ports(3)
        self.repo = f'http://127.0.0.1:{self.repo_port}'
        self.api = f'http://127.0.0.1:{self.www_port}/api/v2'
        self.state = os.path.join(tmp, 'state')
        self.master_dir = os.path.join(tmp, 'master')
        self.worker_dir = os.path.join(tmp, 'worker')
        self.example_master = os.path.join(tmp, 'example-master')
        self.example_worker = os.path.join(tmp, 'example-worker')
        self.master_user = 'ci'
        self.master_password = secrets.token_urlsafe(24)
        self.secrets_to_hide.append(self.master_password)

    # --- servers -------------------------------------------------------------

    def start_repository(self):
        env = dict(os.environ, ARTIFACT_BIN=self.binary, ARTIFACT_STATE_DIR=self.state,
                   ARTIFACT_LISTEN=f'127.0.0.1:{self.repo_port}',
                   ARTIFACT_MASTER_USER=self.master_user,
                   ARTIFACT_MASTER_PASSWORD=self.master_password,
                   ARTIFACT_TOKEN_RATE='1000r/s', ARTIFACT_TOKEN_BURST='1000')
        log = os.path.join(self.tmp, 'run.log')  # holds the banner: outside master and worker
        if os.path.exists(log):
            os.unlink(log)
        proc = self.procs.start('run.sh', [os.path.join(ROOT, 'scripts', 'run.sh')], log, env=env)
        self.repository = proc

        def ready():
            check(proc.poll() is None, f'scripts/run.sh exited with {proc.returncode}; '
                  f'see {os.path.join(self.state, "logs")}')
            with open(log, 'rb') as f:
                if b'Ctrl-C stops both servers.' not in f.read():
                    return False
            return http('GET', self.repo + '/token/healthz')[0] == 200
        wait_for('nginx + artifact-token to be ready', ready, 30)
        ok(f'nginx + artifact-token ready on {self.repo}')

    def start_buildbot(self):
        for tool in ('buildbot', 'buildbot-worker'):
            check(shutil.which(tool), f'{tool} is not installed: apt-get install buildbot '
                  'buildbot-worker (scripts/install-deps.sh installs them)')
        secrets_dir = os.path.join(self.tmp, 'secrets')
        os.mkdir(secrets_dir, 0o700)
        secret = os.path.join(secrets_dir, 'artifact_master_password')
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), 'w') as f:
            f.write(self.master_password)
        worker_password = secrets.token_urlsafe(16)
        run = self._run
        run(['buildbot', 'create-master', '--quiet', self.master_dir], env=clean_env())
        shutil.copy(os.path.join(HERE, 'e2e_master.cfg'), os.path.join(self.master_dir, 'master.cfg'))
        with open(os.path.join(self.master_dir, 'settings.json'), 'w') as f:
            json.dump({'package_dir': os.path.join(ROOT, 'buildbot'), 'www_port': self.www_port,
                       'pb_port': self.pb_port, 'secrets_dir': secrets_dir,
                       'worker_password': worker_password, 'repo_url': self.repo,
                       'master_user': self.master_user}, f)
        run(['buildbot', 'checkconfig', self.master_dir], env=self.master_env())
        self.start_master()
        run(['buildbot-worker', 'create-worker', '--quiet', self.worker_dir,
             f'127.0.0.1:{self.pb_port}', 'w1', worker_password], env=clean_env())
        self.start_worker()
        self.wait_connected()
        self.builders = {b['name']: b['builderid'] for b in self.get('/builders')['builders']}
        ok(f'buildbot master (www {self.www_port}, pb {self.pb_port}) and worker running')

    def master_env(self):
        return clean_env(PYTHONPATH=os.path.join(HERE, 'www_stub'))

    def start_master(self):
        self.master = self.procs.start('buildbot master', ['buildbot', 'start', '--nodaemon',
                                                           self.master_dir],
                                       os.path.join(self.tmp, 'master.out'), env=self.master_env())

    def start_worker(self):
        self.worker = self.procs.start('buildbot-worker', ['buildbot-worker', 'start',
                                                           '--nodaemon', self.worker_dir],
                                       os.path.join(self.tmp, 'worker.out'), env=clean_env())

    def wait_connected(self):
        def connected():
            check(self.master.poll() is None, 'the buildbot master exited; see '
                  + os.path.join(self.master_dir, 'twistd.log'))
            check(self.worker.poll() is None, 'the buildbot worker exited; see '
                  + os.path.join(self.worker_dir, 'twistd.log'))
            status, body = http('GET', self.api + '/workers')
            return status == 200 and any(w['connected_to'] for w in json.loads(body)['workers'])
        wait_for('the buildbot worker to connect to the master', connected, 60, 0.1)

    def stop_master(self, limit):
        """Stops the master as `buildbot stop` does (SIGTERM to its process) and
        returns the seconds it took to exit; fails if it takes over ``limit``."""
        started = time.monotonic()
        self.master.send_signal(signal.SIGTERM)
        try:
            self.master.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            raise Fail(f'the buildbot master is still running {limit} s after SIGTERM '
                       '(`buildbot stop` would hang)') from None
        self.procs.forget(self.master)
        return time.monotonic() - started

    def stop_repository(self):
        self.repository.send_signal(signal.SIGTERM)
        self.repository.wait(timeout=30)
        self.procs.forget(self.repository)
        check(http('GET', self.repo + '/token/healthz')[0] is None,
              'the artifact server still answers after it was stopped')

    def _run(self, argv, env=None):
        res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                             timeout=120, check=False)
        check(res.returncode == 0, f"{' '.join(argv[:2])} failed ({res.returncode}):\n"
              + self.hide(res.stdout.decode(errors='replace')[-3000:]))

    def hide(self, text):
        for s in self.secrets_to_hide:
            text = text.replace(s, '<hidden>')
        return text

    # --- buildbot REST -------------------------------------------------------

    def get(self, path):
        status, body = http('GET', self.api + path)
        check(status == 200, f'GET {path} on the master: {status}')
        return json.loads(body)

    def rpc(self, path, method, **params):
        status, body = http('POST', self.api + path,
                            {'jsonrpc': '2.0', 'method': method, 'id': 1, 'params': params})
        check(status == 200, f'{method} {path} on the master: HTTP {status}: {body[:300]!r}')
        return json.loads(body).get('result')

    def force(self, builder, **props):
        result = self.rpc('/forceschedulers/force', 'force',
                          builderid=str(self.builders[builder]), **props)
        brid = list(result[1].values())[0]

        def started():
            builds = self.get(f'/builds?buildrequestid={brid}')['builds']
            return builds[0] if builds else None
        return wait_for(f'a build of {builder} to start', started, 60, 0.2)

    def build(self, buildid):
        return self.get(f'/builds/{buildid}?property=*')['builds'][0]

    def wait_done(self, build, timeout=90):
        done = wait_for(f"build {build['number']} of builder {build['builderid']} to finish",
                        lambda: (lambda b: b if b['complete'] else None)(self.build(build['buildid'])),
                        timeout, 0.2)
        return done

    def steps(self, buildid):
        return {s['name']: s for s in self.get(f'/builds/{buildid}/steps')['steps']}

    def step(self, buildid, name):
        steps = self.steps(buildid)
        check(name in steps, f'build {buildid} has no step {name!r}: it did not run '
              f'(steps: {", ".join(steps)})')
        return steps[name]

    def log_text(self, buildid, step, slug):
        stepid = self.step(buildid, step)['stepid']
        chunks = self.get(f'/steps/{stepid}/logs/{slug}/contents')['logchunks']
        return ''.join(c['content'] for c in chunks)

    def stop_running_builds(self):
        """Best effort before shutdown: a master with a running build is slow to stop."""
        status, body = http('GET', self.api + '/builds?complete=false', timeout=3)
        if status != 200:
            return
        running = json.loads(body)['builds']
        for b in running:
            http('POST', self.api + f"/builds/{b['buildid']}",
                 {'jsonrpc': '2.0', 'method': 'stop', 'id': 1,
                  'params': {'reason': 'e2e test ends'}}, timeout=3)
        for _ in range(100):  # 10 s at most: the revoke steps run now
            status, body = http('GET', self.api + '/builds?complete=false', timeout=3)
            if status != 200 or not json.loads(body)['builds']:
                return
            time.sleep(0.1)

    def report_failure(self, exc):
        """Prints why a run failed (a Fail's reason, else the traceback) and the
        end of the master's log, with every secret hidden."""
        reason = str(exc) if isinstance(exc, Fail) else traceback.format_exc()
        print(f'FAIL: {self.hide(reason)}', file=sys.stderr, flush=True)
        twistd = os.path.join(self.master_dir, 'twistd.log')
        if os.path.exists(twistd):
            tail = open(twistd, errors='replace').read()[-4000:]
            print('--- end of the master log ---\n' + self.hide(tail), file=sys.stderr)

    def shut_down(self):
        """Stops builds, master, worker and servers, whatever state they are in."""
        try:
            self.stop_running_builds()
        except Exception:  # cleanup goes on whatever the master says
            pass
        self.procs.stop()

    # --- the token service ---------------------------------------------------

    def assert_revoked(self, label, props):
        username = props['artifact_username'][0]
        status, _ = http('GET', f'{self.repo}/token/{username}',
                         auth=(self.master_user, self.master_password))
        check(status == 404, f'{label}: GET /token/{username} is {status} after the build, not 404')
        for scope in props['artifact_scopes'][0]:
            path = os.path.join(self.state, 'tokens', scope + '.htpasswd')
            check(not os.path.exists(path), f'{label}: {path} still exists after the build')
        netrc = os.path.join(self.worker_dir, props['artifact_netrc'][0])
        check(not os.path.exists(netrc), f'{label}: the .netrc is still on the worker: {netrc}')
        ok(f'{label}: token {username} revoked, its password file and .netrc are gone')

    def worker_file(self, builder, name):
        return os.path.join(self.worker_dir, builder, name)

    def read_password(self, builder, props):
        path = self.worker_file(builder, os.path.basename(props['artifact_netrc'][0]))
        mode = os.stat(path).st_mode & 0o777
        check(mode == 0o600, f'{path} has mode {mode:o}, not 600')
        fields = open(path).read().split()
        check(len(fields) == 6 and fields[4] == 'password', f'{path} is not a one-line netrc')
        self.secrets_to_hide.append(fields[5])
        return fields[5]

    def hold(self, builder, **props):
        build = self.force(builder, mode='hold', **props)
        marker = self.worker_file(builder, f"held-{build['number']}")
        wait_for(f"build {build['number']} to reach its hold step", lambda: os.path.exists(marker),
                 60)
        return build, self.build(build['buildid'])['properties']


def expect_result(build, wanted, label):
    got = build['results']
    check(got == wanted, f"{label}: build {build['number']} ended {RESULT_NAMES.get(got, got)} "
          f"({build['state_string']}), expected {RESULT_NAMES[wanted]}")


def check_upload_gave_up(h, build, what):
    """The upload step said it cannot reach the server, and the build's
    second upload step was skipped (one clear message, no retry storm)."""
    text = h.log_text(build['buildid'], 'upload artifacts', 'files')
    check('cannot reach' in text, f'the upload log does not say it cannot reach the server: '
          f'{text!r}')
    again = h.step(build['buildid'], 'upload again')
    check(again['results'] == SKIPPED, f'the second upload step ran against the {what} server '
          f"({RESULT_NAMES.get(again['results'])}: {again['state_string']})")

def scenario(h):
    """The everyday path: publish, intrude, fail, stop, refuse. Returns the
    build passwords it saw, for the final scan."""
    # A: a good build, held so that its token is live while B tries to intrude.
    a, a_props = h.hold('toy')
    a_user = a_props['artifact_username'][0]
    a_url = a_props['artifact_url'][0]
    a_scope = a_props['artifact_scopes'][0][0]
    check(a_scope == f"tgz/toy/toy/{a['number']}", f'unexpected default scope {a_scope}')
    status, _ = http('GET', f'{h.repo}/token/{a_user}', auth=(h.master_user, h.master_password))
    check(status == 200, f'token {a_user} of the running build is not live: GET gives {status}')
    a_password = h.read_password('toy', a_props)
    ok(f'build A running with live token {a_user} for {a_scope}, .netrc mode 0600 on the worker')

    # B: a concurrent build on another builder tries to PUT into A's directory.
    b = h.force('toy-b', mode='intrude', intrude_url=a_url + 'intruder.txt')
    b = h.wait_done(b)
    expect_result(b, SUCCESS, 'build B (intruder)')
    intrude = h.log_text(b['buildid'], 'intrude', 'stdio')
    check('other build: HTTP 401' in intrude or 'other build: HTTP 403' in intrude,
          'build B: its PUT into build A was not refused with 401/403')
    check(http('GET', a_url + 'intruder.txt')[0] == 404,
          "build B's file is downloadable from build A's directory")
    check(not os.path.exists(os.path.join(h.state, 'artifacts', a_scope, 'intruder.txt')),
          "build B wrote into build A's directory")
    h.assert_revoked('build B', h.build(b['buildid'])['properties'])
    ok("a concurrent build's token cannot write into another build's directory")

    # A goes on: compile, upload, revoke.
    open(h.worker_file('toy', f"release-{a['number']}"), 'w').close()
    a = h.wait_done(a)
    expect_result(a, SUCCESS, 'build A')
    dist = h.worker_file('toy', os.path.join('build', 'dist'))
    expected = {f"toy-1.{a['number']}.tar.gz": os.path.join(dist, f"toy-1.{a['number']}.tar.gz")}
    for base, _, files in os.walk(os.path.join(dist, 'tree')):
        for name in files:
            local = os.path.join(base, name)
            expected[os.path.relpath(local, os.path.join(dist, 'tree'))] = local
    check(len(expected) == 9, f'the toy build made {len(expected)} files, expected 9')
    for remote, local in sorted(expected.items()):
        status, body = http('GET', a_url + remote)
        check(status == 200, f'GET {a_url + remote}: {status}')
        check(body == open(local, 'rb').read(), f'{a_url + remote} differs from the worker file')
    ok(f'build A: {len(expected)} artifacts (file, glob, tree) downloadable and byte-identical')
    links = h.step(a['buildid'], 'upload artifacts')['urls']
    check([(u['name'], u['url']) for u in links] == [('9 files in ./', a_url)],
          f'build A: the build page does not link the 9 uploaded files\' directory: {links}')
    docs = os.path.join(dist, 'tree', 'docs')
    for remote, step, how in (
            ('docs-again', 'upload again', 'relayed by the master as one archive of '),
            ('docs-hint', 'upload docs, at most 8', 'relayed by the master as one archive of '),
            # Measured before any archive pass: one stat per entry.
            ('docs-bound', 'upload over the bound', 'bytes of files, more than 4096)'),
            ('docs-many', 'upload over 3 entries',
             'sent by the worker (not relayed: more than 3 entries)'),
            ('linked', 'upload linked', 'sent by the worker (not relayed: link is not a '
                                        'regular file or a directory)')):
        text = h.log_text(a['buildid'], step, 'files')
        check(how in text, f'build A: step {step!r} does not say {how!r}: {text!r}')
        local_dir = docs if remote != 'linked' else h.worker_file('toy', 'build/rt/linked')
        for name in sorted(os.listdir(local_dir)):
            status, body = http('GET', f'{a_url}{remote}/{name}')
            if name == 'link':
                check(status == 404, f'build A: the symlink was uploaded ({status})')
                continue
            check(status == 200 and body == open(os.path.join(local_dir, name), 'rb').read(),
                  f'build A: {a_url}{remote}/{name} is not the worker file ({status})')
    links = [(u['name'], u['url']) for u in h.step(a['buildid'], 'upload again')['urls']]
    check(links == [('docs-again/', a_url + 'docs-again/')],
          f'build A: the relayed tree is not linked by its directory: {links}')
    ok('build A: a small tree relayed by the master; a symlink and an archive over the bound '
       'sent by the worker instead, the symlink skipped')
    leak = h.log_text(a['buildid'], 'leak', 'stdio')
    check('password <artifact-token>' in leak, 'build A: the leak step log shows no redaction')
    h.assert_revoked('build A (success)', h.build(a['buildid'])['properties'])
    status, sums = http('GET', a_url + 'SHA256SUMS')
    check(status == 200, f'build A: no SHA256SUMS after the revoke ({status})')
    listed = {line.split('  ', 1)[1] for line in sums.decode().splitlines()}
    check(set(expected) <= listed, 'build A: SHA256SUMS does not list every uploaded file')
    for remote, local in expected.items():
        digest = hashlib.sha256(open(local, 'rb').read()).hexdigest()
        check(f'{digest}  {remote}' in sums.decode().splitlines(), f'build A: wrong digest for {remote}')
    a_builder = a_url.rstrip('/').rsplit('/', 1)[0]
    status, _ = http('GET', a_builder + '/latest/SHA256SUMS')
    check(status == 200, f'build A: latest does not lead to its manifest ({status})')
    ok('build A: sealed with a SHA256SUMS that matches the worker files; latest follows it')

    # C: the compile step fails.
    c = h.wait_done(h.force('toy', mode='fail'))
    expect_result(c, FAILURE, 'build C (failing compile)')
    check(h.step(c['buildid'], 'revoke artifact token')['results'] == SUCCESS,
          'build C: the revoke step did not succeed')
    h.assert_revoked('build C (compile failed)', h.build(c['buildid'])['properties'])
    c_log = h.log_text(c['buildid'], 'revoke artifact token', 'token')
    check('result failure' in c_log, 'build C: the revoke did not report the failure to the server')
    latest = open(os.path.join(h.state, 'artifacts', *a_scope.split('/')[:-1], '.latest')).read().strip()
    check(latest == a_scope.rsplit('/', 1)[1], f'build C (failed) moved latest to {latest}')
    ok('build C: the failed build did not become latest')

    # D: stopped while it holds a live token.
    d, d_props = h.hold('toy')
    d_password = h.read_password('toy', d_props)
    h.rpc(f"/builds/{d['buildid']}", 'stop', reason='stopped by the e2e test')
    d = h.wait_done(d)
    expect_result(d, CANCELLED, 'build D (stopped)')
    h.assert_revoked('build D (stopped midway)', d_props)

    # E: a published scope cannot be issued again: one clear line with the status.
    e = h.wait_done(h.force('toy', mode='ok', scope=a_scope))
    expect_result(e, FAILURE, 'build E (published scope)')
    line = h.log_text(e['buildid'], 'issue artifact token', 'token')
    check('failed: HTTP 409' in line, f'build E: the issue log has no "HTTP 409" line: {line!r}')
    ok('a token-service error shows in the step log as one line with HTTP 409')

    # F: the server refuses a relayed archive (a SHA256SUMS at the build's
    # root): the step fails, says so, and nothing of the archive is stored.
    f = h.wait_done(h.force('toy', mode='refuse'))
    expect_result(f, FAILURE, 'build F (forged seal)')
    check(h.step(f['buildid'], 'upload forged seal')['results'] == FAILURE,
          'build F: the refused upload did not fail')
    text = h.log_text(f['buildid'], 'upload forged seal', 'files')
    check('refused the archive of rt/sealed: HTTP 403' in text
          and 'none of the files above was stored' in text,
          f'build F: the refusal is not in the log: {text!r}')
    text = h.log_text(f['buildid'], 'upload docs, at most 8', 'files')
    check('not relayed: more than 8 entries)' in text,
          f'build F: a tree grown past the bound was relayed on the hint: {text!r}')
    # What build A found too big goes to the worker's curl without a question
    # or an archive pass of the worker first.
    earlier = ', as in an earlier build'
    for step, why in (('upload over the bound', 'bytes of files, more than 4096' + earlier),
                      ('upload over 3 entries', 'more than 3 entries' + earlier),
                      ('upload linked', 'link is not a regular file or a directory' + earlier)):
        text = h.log_text(f['buildid'], step, 'files')
        check(f'{why})' in text and 'not relayed: ' in text,
              f'build F: {step!r} does not say {why!r}: {text!r}')
    f_url = h.build(f['buildid'])['properties']['artifact_url'][0]
    # A directory relayed in build A and gone in build F: curl says so, no exception.
    step = h.step(f['buildid'], 'upload vanishing')
    text = h.log_text(f['buildid'], 'upload vanishing', 'files')
    check(step['results'] == FAILURE and 'not relayed: the worker could not archive it' in text
          and 'no such file or directory: rt/vanishing' in text,
          f'build F: a vanished directory is not a plain failure: {step["results"]} {text!r}')
    links = [(u['name'], u['url']) for u in h.step(f['buildid'], 'upload forged seal')['urls']]
    check(links == [('./', f_url)],
          f'build F: links other than the directory the archive was meant for: {links}')
    status, sums = http('GET', f_url + 'SHA256SUMS')
    check(status == 200 and b'forged' not in sums, 'build F: the forged SHA256SUMS landed')
    ok('build F: a relayed archive the server refuses fails the step; nothing of it is stored')

    return {'build A password': a_password, 'build D password': d_password}


def no_password_anywhere(h, needles):
    """No password, master or per-build, in any file of the master or the worker."""
    needles = dict(needles, **{'master password': h.master_password})
    scanned = 0
    for top in (h.master_dir, h.worker_dir, h.example_master, h.example_worker):
        for base, _, files in os.walk(top):
            for name in files:
                path = os.path.join(base, name)
                if not os.path.isfile(path):
                    continue
                data = open(path, 'rb').read()
                scanned += 1
                for label, secret in needles.items():
                    check(secret.encode() not in data, f'the {label} is in {path}')
    check(any(n.startswith('state.sqlite') for n in os.listdir(h.master_dir)),
          'no sqlite database in the master directory')
    ok(f'no password in any of {scanned} files under the master and worker directories')


def timed(label, case, *args):
    started = time.monotonic()
    value = case(*args)
    print(f'case: {label}: {time.monotonic() - started:.1f} s', flush=True)
    return value


def case_big_build(h):
    """A build over 16 MiB is sealed in the background (the revoke answers 202):
    the revoke step waits for the seal and names the file whose sidecar lies."""
    b = h.wait_done(h.force('toy', mode='big'))
    check(b['results'] != SUCCESS, f"the build with a wrong .sha256 sidecar ended "
          f"{RESULT_NAMES.get(b['results'])} ({b['state_string']})")
    revoke = h.step(b['buildid'], 'revoke artifact token')
    text = h.log_text(b['buildid'], 'revoke artifact token', 'token')
    check('background' in text, f'the revoke of a 17 MB build was not answered 202: {text!r}')
    check('checksum mismatch' in text and 'big.bin' in text,
          f'the revoke step does not name big.bin as a checksum mismatch: {text!r}')
    check('big.bin' in revoke['state_string'], 'the revoke step summary does not name big.bin: '
          f"{revoke['state_string']!r}")
    props = h.build(b['buildid'])['properties']
    h.assert_revoked('build over 16 MiB', props)
    status, sums = http('GET', props['artifact_url'][0] + 'SHA256SUMS')
    check(status == 200 and b'  big.bin\n' in sums, 'the 17 MB build has no SHA256SUMS listing '
          'big.bin after the revoke step')
    ok(f"build over 16 MiB: the step waited for the background seal, ended "
       f"{RESULT_NAMES[b['results']]} naming big.bin ({revoke['state_string']})")


def case_master_stop(h):
    """`buildbot stop` (SIGTERM) while a build holds a live token: the master
    is gone within 15 s and the token is revoked on the way out."""
    build, props = h.hold('toy')
    password = h.read_password('toy', props)
    seconds = h.stop_master(15)
    h.assert_revoked('build stopped by `buildbot stop`', props)
    ok(f'`buildbot stop` with a running build: the master exited in {seconds:.1f} s '
       'and revoked the token')
    h.start_master()
    h.wait_connected()
    return {'build stopped by `buildbot stop`': password}


def case_server_lost(h):
    """The artifact server dies during a build: the upload fails fast with one
    message, later uploads are not tried, the revoke stays owed across a
    master restart and is done once the server is back."""
    build, props = h.hold('toy')
    username = props['artifact_username'][0]
    password = h.read_password('toy', props)
    h.stop_repository()
    released = time.monotonic()
    open(h.worker_file('toy', f"release-{build['number']}"), 'w').close()
    build = h.wait_done(build, timeout=60)
    took = time.monotonic() - released
    expect_result(build, FAILURE, 'the build whose artifact server died')
    check(took < 30, f'the build took {took:.0f} s to fail against a dead artifact server')
    check_upload_gave_up(h, build, 'dead')
    revoke = h.log_text(build['buildid'], 'revoke artifact token', 'token')
    check('retries this revoke' in revoke, f'the revoke step does not say it will retry: {revoke!r}')
    journal = os.path.join(h.master_dir, 'artifact-repository.pending-revokes.json')
    check(username in open(journal).read(), f'{journal} does not hold the owed revoke')
    ok(f'dead artifact server: the build failed in {took:.1f} s, the second upload was not '
       'tried, the revoke is journaled')
    seconds = h.stop_master(15)
    h.start_repository()
    back = time.monotonic()
    h.start_master()
    h.wait_connected()
    wait_for(f'token {username} to be revoked after the server came back',
             lambda: http('GET', f'{h.repo}/token/{username}',
                          auth=(h.master_user, h.master_password))[0] == 404, 60, 0.2)
    revoked_after = time.monotonic() - back
    h.assert_revoked('the build whose server died', props)
    leaked = f"{props['artifact_url'][0]}evil.txt"
    status, _ = http('PUT', leaked, body={'x': 1}, auth=(username, password))
    check(status in (401, 403), f'the leaked token still uploads after its revoke: PUT {status}')
    # The master rewrites its journal once the DELETE's answer is in.
    wait_for(f'{journal} to forget {username}', lambda: username not in open(journal).read(), 10)
    ok(f'owed revoke survived a master stop ({seconds:.1f} s) and restart: token revoked '
       f'{revoked_after:.1f} s after the server came back; a leaked copy gets {status}')
    return {'build whose server died': password}


def case_service_restart(h):
    """The token service does not answer for a moment (its socket renamed
    away: nginx answers 502, as while systemd restarts the service after a
    package upgrade) at the issue, during the worker's upload and during the
    master's relay: each is sent again after a second, the build succeeds."""
    sock = os.path.join(h.state, 'run', 'token.sock')
    access = os.path.join(h.state, 'logs', 'access.log')

    def through_502(start, method, request_path, build=None):
        """Renames the socket away, calls ``start`` and puts the socket back
        once nginx logged a 502 for ``method`` on a path ending in
        ``request_path`` (a directory's HEAD is logged as its rewrite,
        /token/browse/...). Returns what ``start`` returned."""
        request, suffix = f'{method} '.encode(), f'{request_path}"'.encode()
        seen = os.path.getsize(access)
        os.rename(sock, sock + '.away')
        try:
            started = start()

            def refused():
                done = h.build((build or started)['buildid'])
                check(not done['complete'], f"the build ended ({done['state_string']}) before "
                      f'nginx answered {method} {request_path} with 502')
                with open(access, 'rb') as f:
                    f.seek(seen)
                    return any(request in line and suffix in line and b'status=502' in line
                               for line in f)
            wait_for(f'nginx to answer {method} {request_path} with 502', refused, 60, 0.02)
        finally:
            os.rename(sock + '.away', sock)
        return started

    # Longer than the step's retries (1 + 2 + 4 s): the build fails, and the
    # token, which may exist after a 502, stays owed a revoke (journaled)
    # until the service answers again.
    journal = os.path.join(h.master_dir, 'artifact-repository.pending-revokes.json')

    def owed(buildid):
        with open(journal) as f:
            return [e for e in json.load(f).get('entries', {}).values() if e.get('buildid') == buildid]
    os.rename(sock, sock + '.away')
    try:
        failed = h.wait_done(h.force('toy'), timeout=60)
        expect_result(failed, FAILURE, 'the build whose token service never answered its issue')
        issue = h.log_text(failed['buildid'], 'issue artifact token', 'token')
        check(issue.count('sent again after') == 3 and 'HTTP 502' in issue,
              f'the issue was not sent again three times: {issue!r}')
        check(owed(failed['buildid']), f"{journal} owes no revoke for build {failed['buildid']}")
    finally:
        os.rename(sock + '.away', sock)
    wait_for('the owed revoke of the unanswered issue to be done',
             lambda: not owed(failed['buildid']), 60, 0.2)
    ok('an issue answered only with 502s: sent again 3 times, the build failed, its revoke was '
       'owed and done once the service answered')

    build = through_502(lambda: h.force('toy', mode='restart'), 'POST', '/token')
    marker = h.worker_file('toy', f"held-{build['number']}")
    wait_for('the build to hold after its issue', lambda: os.path.exists(marker), 60)
    props = h.build(build['buildid'])['properties']
    password = h.read_password('toy', props)
    url = props['artifact_url'][0]
    path = urllib.parse.urlsplit(url).path
    release = h.worker_file('toy', f"release-{build['number']}")
    through_502(lambda: open(release, 'w').close(), 'HEAD', path, build)
    marker = h.worker_file('toy', f"held-again-{build['number']}")
    wait_for('the build to hold after its first upload', lambda: os.path.exists(marker), 60)
    release = h.worker_file('toy', f"release-again-{build['number']}")
    through_502(lambda: open(release, 'w').close(), 'POST', path + 'docs-again/', build)
    build = h.wait_done(build)
    expect_result(build, SUCCESS, 'the build whose token service did not answer for a moment')
    for step, log, how in (('issue artifact token', 'token', 'issuing a token'),
                           ('upload artifacts', 'files', 'worker command'),
                           ('upload again', 'files', 'relayed by the master')):
        text = h.log_text(build['buildid'], step, log)
        check('HTTP 502 from the artifact server' in text and 'sent again after 1 s' in text
              and how in text, f'step {step!r} does not say it sent again after a 502: {text!r}')
    for name in ('docs/index.html', 'docs-again/index.html'):
        check(http('GET', url + name)[0] == 200, f'{url}{name} is missing after the retry')
    ok("token service down for a moment: the issue, the worker's upload and the relay were "
       'sent again after 1 s, the build succeeded')
    return {'build whose token service restarted': password}


def nginx_pids(h):
    """The artifact server's nginx: its master (scripts/run.sh's pid file) and workers."""
    with open(os.path.join(h.state, 'nginx-master.pid')) as f:
        master = int(f.read())
    pids = [master]
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(')') + 2:].split()[1]) == master:
                pids.append(int(entry))
    check(len(pids) > 1, f'no nginx worker below nginx master {master}')
    return pids


def case_server_silent(h):
    """The artifact server accepts connections and never answers (its nginx
    stopped with SIGSTOP: the kernel still completes the handshakes): the
    upload fails within twice its connect_timeout (10 s), later uploads are
    not tried, and once the server answers again the token is revoked."""
    build, props = h.hold('toy')
    username = props['artifact_username'][0]
    password = h.read_password('toy', props)
    pids = nginx_pids(h)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        released = time.monotonic()
        open(h.worker_file('toy', f"release-{build['number']}"), 'w').close()

        def upload_done():
            step = h.steps(build['buildid']).get('upload artifacts')
            return step if step and step['complete'] else None
        upload = wait_for('the upload step against a silent server to end', upload_done, 60, 0.2)
        took = time.monotonic() - released
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    build = h.wait_done(build, timeout=90)
    expect_result(build, FAILURE, 'the build whose artifact server never answered')
    check(upload['results'] == FAILURE, f"the upload to a silent server ended "
          f"{RESULT_NAMES.get(upload['results'])} ({upload['state_string']})")
    check(took < 35, f'the upload took {took:.0f} s to fail against a silent server')
    check_upload_gave_up(h, build, 'silent')
    wait_for(f'token {username} to be revoked once the server answers again',
             lambda: http('GET', f'{h.repo}/token/{username}',
                          auth=(h.master_user, h.master_password))[0] == 404, 60, 0.2)
    ok(f'silent artifact server: the upload failed in {took:.1f} s ({upload["state_string"]}), '
       'the second upload was not tried, the token was revoked once it answered')
    return {'build whose server never answered': password}


def example_config(values):
    """buildbot/master.cfg.example with only its settings replaced: each
    ``NAME = ...`` line of ``values`` must occur exactly once."""
    with open(os.path.join(ROOT, 'buildbot', 'master.cfg.example')) as f:
        text = f.read()
    for name, value in values.items():
        text, count = re.subn(rf'^{name} = .*$', f'{name} = {value!r}', text, flags=re.M)
        check(count == 1, f'master.cfg.example has {count} settings {name}, expected one')
    return text


def case_example(h):
    """buildbot/master.cfg.example, copied as a user would (only URL,
    credentials, address and paths replaced), runs a build on Debian's
    buildbot without a web UI, started by `buildbot sendchange`."""
    port = free_ports(1)[0]
    worker_password, change_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    h.secrets_to_hide += [worker_password, change_password]
    # Both create commands at once: each is seconds of python start-up.
    creating = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 env=clean_env()) for argv in (
        ['buildbot', 'create-master', '--quiet', h.example_master],
        ['buildbot-worker', 'create-worker', '--quiet', h.example_worker,
         f'127.0.0.1:{port}', 'worker1', worker_password])]
    for proc in creating:
        out, _ = proc.communicate(timeout=120)
        check(proc.returncode == 0, f'{proc.args[:2]} failed: {h.hide(out.decode()[-2000:])}')
    with open(os.path.join(h.example_master, 'master.cfg'), 'w') as f:
        f.write(example_config({
            'REPOSITORY_URL': h.repo, 'MASTER_USER': h.master_user,
            'SECRETS_DIR': os.path.join(h.tmp, 'secrets'),
            'PB_PORT': f'tcp:{port}:interface=127.0.0.1',
            'WORKER_PASSWORD': worker_password, 'CHANGE_PASSWORD': change_password,
            'PACKAGE_DIR': os.path.join(ROOT, 'buildbot')}))
    master = h.procs.start('example master', ['buildbot', 'start', '--nodaemon',
                                              h.example_master],
                           os.path.join(h.tmp, 'example-master.out'), env=clean_env())
    worker = h.procs.start('example worker', ['buildbot-worker', 'start', '--nodaemon',
                                              h.example_worker],
                           os.path.join(h.tmp, 'example-worker.out'), env=clean_env())
    twistd = os.path.join(h.example_master, 'twistd.log')

    def attached():
        check(master.poll() is None, f'the example master exited; see {twistd}')
        check(worker.poll() is None, 'the example worker exited')
        return os.path.exists(twistd) and 'Worker worker1 attached to hello' in open(twistd).read()
    wait_for('the example master to run with its worker', attached, 60, 0.1)
    h._run(['buildbot', 'sendchange', '--master', f'127.0.0.1:{port}',
            '--auth', f'change:{change_password}', '--who', 'e2e', '--branch', 'main',
            '--comments', 'e2e', 'README'], env=clean_env())
    build = f'{h.repo}/tgz/hello/hello/1/'
    sums = wait_for('the example build to be published and sealed',
                    lambda: (lambda r: r[1] if r[0] == 200 else None)(
                        http('GET', build + 'SHA256SUMS')), 60, 0.2)
    listed = sorted(line.split('  ', 1)[1] for line in sums.decode().splitlines())
    check(listed == ['hello-1.1.tar.gz', 'hello-1.1.tar.gz.sha256'],
          f'the example build published {listed}')
    # The seal writes SHA256SUMS, then moves `latest`: wait for the second too.
    wait_for('the example build (sidecar verified) to become latest',
             lambda: http('GET', f'{h.repo}/tgz/hello/hello/latest/SHA256SUMS')[0] == 200, 10)
    status, body = http('GET', f'{h.repo}/token', auth=(h.master_user, h.master_password))
    check(status == 200 and json.loads(body)['tokens'] == [],
          f'a token is still live after the example build: {body[:200]!r}')
    wait_for('the example build to finish', lambda: 'build finished' in open(twistd).read(), 30)
    check(' <Build hello number:1 results:success>: build finished' in open(twistd).read(),
          f'the example build did not end success; see {twistd}')
    for proc in (master, worker):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        h.procs.forget(proc)
    ok(f'master.cfg.example ran a build started by `buildbot sendchange`: {build} sealed with '
       f'{", ".join(listed)}, latest, no live token')


def case_worker_killed(h):
    """The worker is killed (SIGKILL) while a build holds a live token: no step
    runs after that, not even the revoke step, so the repository service
    revokes the token when the build finishes."""
    build, props = h.hold('toy')
    password = h.read_password('toy', props)
    os.killpg(h.worker.pid, signal.SIGKILL)
    h.worker.wait(timeout=10)
    h.procs.forget(h.worker)
    build = h.wait_done(build, timeout=60)
    check(build['results'] != SUCCESS, 'the build whose worker was killed ended success')
    username = props['artifact_username'][0]
    wait_for(f'token {username} to be revoked after its worker was killed',
             lambda: http('GET', f'{h.repo}/token/{username}',
                          auth=(h.master_user, h.master_password))[0] == 404, 30, 0.1)
    for scope in props['artifact_scopes'][0]:
        path = os.path.join(h.state, 'tokens', scope + '.htpasswd')
        check(not os.path.exists(path), f'{path} still exists after the build')
    ok(f"killed worker: build {build['number']} ended {RESULT_NAMES.get(build['results'])}, "
       f'token {username} revoked by the master (no step could run)')
    h.start_worker()
    h.wait_connected()
    if build['results'] == RETRY:  # buildbot runs the request again: let it finish
        def retried():
            builds = h.get(f"/builds?buildrequestid={build['buildrequestid']}")['builds']
            return [b for b in builds if b['buildid'] != build['buildid']]
        again = wait_for('the retried build', retried, 60, 0.2)[0]
        marker = h.worker_file('toy', f"held-{again['number']}")
        wait_for('the retried build to hold', lambda: os.path.exists(marker), 60)
        open(h.worker_file('toy', f"release-{again['number']}"), 'w').close()
        expect_result(h.wait_done(again), SUCCESS, 'the retried build')
    return {'build whose worker was killed': password}


# (name for E2E_CASES, label, function): run in this order; each returns the
# build passwords it saw (or None) for the final scan.
CASES = (('everyday', 'everyday builds', scenario),
         ('big', 'a build over 16 MiB with a wrong sidecar', case_big_build),
         ('stop', '`buildbot stop` during a build', case_master_stop),
         ('restart', 'token service down for a moment during uploads', case_service_restart),
         ('silent', 'artifact server silent during a build', case_server_silent),
         ('lost', 'artifact server lost during a build', case_server_lost),
         ('worker', 'worker killed during a build', case_worker_killed),
         ('example', 'master.cfg.example as a user copies it', case_example))


def main(argv):
    binary = os.path.abspath(argv[1] if len(argv) > 1 else
                             os.environ.get('ARTIFACT_BIN', os.path.join(ROOT, 'build',
                                                                         'artifact-token')))
    if not os.access(binary, os.X_OK):
        print(f'FAIL: no artifact-token binary at {binary}', file=sys.stderr)
        return 1
    def terminated(*_):
        raise Fail('interrupted by SIGTERM')
    signal.signal(signal.SIGTERM, terminated)
    wanted = os.environ.get('E2E_CASES', ','.join(name for name, _, _ in CASES)).split(',')
    unknown = set(wanted) - {name for name, _, _ in CASES}
    if unknown:
        print(f'FAIL: unknown E2E_CASES {sorted(unknown)}', file=sys.stderr)
        return 1
    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix='artifact-bb-e2e-')
    os.chmod(tmp, 0o755)  # nginx and the app run as www-data
    h = Harness(binary, tmp)
    status = 1
    try:
        h.start_repository()
        h.start_buildbot()
        needles = {}
        for name, label, case in CASES:
            if name in wanted:
                needles.update(timed(label, case, h) or {})
        timed('no password in any file', no_password_anywhere, h, needles)
        print(f'PASS: buildbot end-to-end in {time.monotonic() - started:.0f} s', flush=True)
        status = 0
    except (Fail, Exception) as e:  # anything unexpected is a failure with its reason too
        h.report_failure(e)
    finally:
        h.shut_down()
        if os.environ.get('E2E_KEEP') == '1':
            print(f'kept {tmp}', file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv))
