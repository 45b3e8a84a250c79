"""The worker's half of UploadArtifacts: one command does the whole upload.

UploadArtifacts sends this file as the program of ``python3 -`` with a job
appended (``run(json.loads(...))``), so a tree costs one round trip between
master and worker instead of a stat, a find and two curl commands (issue 17:
the round trips, not curl, made trees slower than DirectoryUpload). It uses
the standard library only, as any buildbot worker has it, and curl:

1. finds the files of every source (a file, a glob, a directory tree) below
   the workdir and checks each remote name against the repository's grammar;
2. one sequential curl run: a HEAD of the build's URL (the one connection
   check: a dead or refusing server ends the upload here, with no retries),
   then a MKCOL per directory, parents first (405: it exists already);
3. one curl run that PUTs every file, ``parallel`` at a time, ``--fail-early``
   (the first failure stops the rest), retrying transient errors only. A
   small job (one file, or a few small ones) PUTs in the run of step 2,
   one after the other on its connection: a second curl costs more than
   parallel uploads gain there.

It prints its outcome as JSON lines for the master (see ``main``) and exits 0;
the master decides what the outcome means. The credential stays in the .netrc: neither a
command line nor this program's output holds it.
"""

import glob
import json
import os
import re
import stat
import subprocess
import sys
import time

WRITE_OUT = r'%{response_code} %{url_effective}\n'
GLOB_CHARS = set('*?[')
# curl exit codes that mean "no server there": could not resolve, connect,
# timed out, empty reply, send/receive failure.
UNREACHABLE_EXITS = {5, 6, 7, 28, 52, 55, 56}
# A job this small is uploaded in the same curl run as the check and MKCOLs.
SMALL_JOB_FILES = 32
SMALL_JOB_BYTES = 16 << 20


class Refusal(Exception):
    """A problem with the job itself (no such file, bad name): nothing was sent."""


def quote(value):
    """A curl config string: double quotes, backslash escapes."""
    if any(ord(c) < 0x20 or c == '\x7f' for c in value):
        raise Refusal(f'control character in {value!r}')
    return '"' + value.replace('\\', '\\\\').replace('"', '\\"') + '"'


def find_transfers(workdir, sources, prefix, name_rule):
    """[(local path, remote path)] sorted by remote path, or raises Refusal.
    Every component of a remote path must match ``name_rule`` (a regex)."""
    name = re.compile(name_rule + r'\Z')
    prefix = prefix.strip('/')
    found = []
    for source in sources:
        pattern = os.path.join(workdir, source)
        if GLOB_CHARS & set(source):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise Refusal(f'nothing matches {source!r} in {workdir}')
        else:
            matches = [pattern]
        for match in matches:
            try:
                mode = os.stat(match).st_mode
            except OSError as e:
                raise Refusal(f'{source}: {match}: {e.strerror}') from None
            if stat.S_ISDIR(mode):
                match = os.path.normpath(match)
                found += [(os.path.join(match, rel), rel) for rel in _files_below(match)]
            elif stat.S_ISREG(mode):
                found.append((os.path.normpath(match), os.path.basename(match)))
            # Anything else (a socket, a fifo) is skipped.
    transfers, seen = [], {}
    for local, rel in found:
        parts = [p for p in f'{prefix}/{rel}'.split('/') if p]
        for part in parts:
            if not name.match(part):
                raise Refusal(f'{local}: artifact name {"/".join(parts)!r}: {part!r} is not '
                              f'{name_rule}')
        remote = '/'.join(parts)
        if remote in seen:
            if seen[remote] != local:
                raise Refusal(f'{seen[remote]} and {local} would both be {remote}')
            continue
        seen[remote] = local
        transfers.append((local, remote))
    transfers.sort(key=lambda t: t[1])
    return transfers


def _files_below(top):
    """Relative paths of the regular files below top (symlinks neither listed nor followed)."""
    out = []
    stack = ['']
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(top, rel)) as entries:
            for entry in entries:
                path = f'{rel}/{entry.name}' if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                elif entry.is_file(follow_symlinks=False):
                    out.append(path)
    return out


def collections(remote_paths):
    """The directories the files of ``remote_paths`` need, parents first.

    The repository creates no directory on the way (a PUT into a missing one
    is 409, as in RFC 4918): each is made with its own MKCOL, ending in '/'.
    """
    needed = set()
    for path in remote_paths:
        parts = path.split('/')[:-1]
        for depth in range(1, len(parts) + 1):
            needed.add('/'.join(parts[:depth]) + '/')
    return sorted(needed, key=lambda d: (d.count('/'), d))


def check_and_mkcol_config(netrc_path, base, directories, connect_timeout):
    """One sequential curl run: HEAD of ``base`` (``--fail``: a refusal ends the
    run, as does a connection failure, with ``--fail-early``), then a MKCOL
    per directory URL without ``--fail`` (405, it exists, is an answer)."""
    # max-time: a server that accepts connections and never answers must not
    # hang the build until buildbot's own no-output timeout.
    common = ['no-progress-meter', 'show-error', f'netrc-file = {quote(netrc_path)}',
              f'connect-timeout = {int(connect_timeout)}',
              f'max-time = {2 * int(connect_timeout)}', f'write-out = "{WRITE_OUT}"']
    lines = ['fail-early', 'head', 'fail'] + common
    lines += [f'url = {quote(base)}', 'output = "/dev/null"']
    if directories:
        lines += ['next', 'request = "MKCOL"'] + common
        for url in directories:
            lines += [f'url = {quote(url)}', 'output = "/dev/null"']
    return '\n'.join(lines) + '\n'


def upload_config(netrc_path, transfers, parallel=4, retries=3, connect_timeout=10):
    """A curl config that PUTs every (local_path, url) in ``transfers``.

    ``--fail`` makes any HTTP error a failed transfer and ``--fail-early``
    stops the others at the first one. ``--retry`` retries transient errors
    (timeouts, 408, 429, 5xx: a PUT is idempotent and atomic on the server),
    but not a refused connection: the check before this run saw the server,
    so a refusal now means it is gone, and retrying each URL would only make
    the failure slow.
    """
    lines = [
        'fail',
        'fail-early',
        # Not 'silent': curl 7.88 still draws the --parallel progress meter with it.
        'no-progress-meter',
        'show-error',
        f'netrc-file = {quote(netrc_path)}',
        f'retry = {int(retries)}',
        f'connect-timeout = {int(connect_timeout)}',
        # A transfer stalled below 1 byte/s for a minute is a dead server (a
        # large upload has no max-time that would fit every file size).
        'speed-limit = 1',
        'speed-time = 60',
        f'write-out = "{WRITE_OUT}"',
    ]
    if int(parallel) > 1 and len(transfers) > 1:
        lines += ['parallel', f'parallel-max = {int(parallel)}']
    for local_path, url in transfers:
        lines.append(f'upload-file = {quote(local_path)}')
        lines.append(f'url = {quote(url)}')
        # Each URL gets its own -o: curl pairs outputs and URLs in order.
        lines.append('output = "/dev/null"')
    return '\n'.join(lines) + '\n'


def parse_write_out(stdout):
    """[(status, url)] from the WRITE_OUT lines curl printed."""
    results = []
    for line in stdout.splitlines():
        code, _, url = line.strip().partition(' ')
        if code.isdigit() and url:
            results.append((int(code), url))
    return results


def _same_url(url):
    """The URL as curl reports it in %{url_effective}: it lowercases the scheme."""
    scheme, sep, rest = url.partition('://')
    return scheme.lower() + sep + rest


def _curl(curl, config):
    """(exit code, [(status, url)], stderr lines) of one ``curl --config -``."""
    proc = subprocess.run([curl, '--config', '-'], input=config.encode('utf-8'),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    errors = [line for line in proc.stderr.decode('utf-8', 'replace').splitlines() if line]
    return proc.returncode, parse_write_out(proc.stdout.decode('utf-8', 'replace')), errors


def main(job):
    """Runs ``job`` and prints, one JSON value a line, each file as
    ``[local, url, status]`` in remote-path order (status 0: not sent), then
    an object:

    ``files``        how many file lines came before it
    ``error``        None, or one line saying why the upload failed
    ``unreachable``  True when the server could not be reached or refused the check
    ``curl_errors``  curl's own error lines (at most 20)
    ``seconds``      {find, check_mkcol, put}: where the time went

    One short line per file, not one document: buildbot-worker 3.7 cuts
    output lines longer than 4096 characters and loses text doing so.
    """
    out = {'files': [], 'error': None, 'unreachable': False, 'curl_errors': [], 'seconds': {}}
    clock = time.monotonic()

    def lap(name):
        nonlocal clock
        now = time.monotonic()
        out['seconds'][name] = round(now - clock, 4)
        clock = now

    base = job['base'] if job['base'].endswith('/') else job['base'] + '/'
    try:
        transfers = find_transfers(job['workdir'], job['sources'], job.get('dest', ''),
                                   job['name_rule'])
        lap('find')
        if not transfers:
            raise Refusal('no files to upload')
        pairs = [(local, base + remote) for local, remote in transfers]
        status = {_same_url(url): 0 for _, url in pairs}
        out['files'] = [[local, url, 0] for local, url in pairs]
        directories = [base + d for d in collections([r for _, r in transfers])]
        config = check_and_mkcol_config(job['netrc'], base, directories,
                                        job.get('connect_timeout', 10))
        small = len(pairs) == 1 or (
            len(pairs) <= SMALL_JOB_FILES
            and sum(os.path.getsize(local) for local, _ in pairs) <= SMALL_JOB_BYTES)
        upload = upload_config(job['netrc'], pairs, 1 if small else job.get('parallel', 4),
                               job.get('retries', 3), job.get('connect_timeout', 10))
        if small:  # 'fail-early' is global: said once, in the first group
            config += 'next\n' + ''.join(line + '\n' for line in upload.splitlines()
                                          if line != 'fail-early')
    except (Refusal, OSError) as e:
        out['error'] = str(e)
        _print(out)
        return 0

    rc, results, errors = _curl(job['curl'], config)
    lap('check_mkcol')
    out['curl_errors'] += errors
    put_results = results[1 + len(directories):]
    results = results[:1 + len(directories)]
    check = results[0][0] if results else 0
    bad_dirs = [f'HTTP {code} {url}' for code, url in results[1:] if code not in (201, 405)]
    # (In a small job, PUT answers mean the check and MKCOLs went through and
    # curl's exit code is the PUTs'.)
    if check == 0 or check >= 500 or (rc in UNREACHABLE_EXITS and not put_results):
        out['unreachable'] = True
        what = f'HTTP {check}' if check else (errors[-1] if errors else f'curl exit {rc}')
        out['error'] = f'cannot reach the artifact server at {base}: {what}'
    elif not 200 <= check < 300:
        out['error'] = f'the artifact server refused {base}: HTTP {check}'
    elif bad_dirs or len(results) != 1 + len(directories):
        out['error'] = (f'creating {len(directories)} directories failed (curl exit {rc}): '
                        + ('; '.join(bad_dirs[:5]) or 'no answer'))
    if out['error'] is None:
        if small:
            results = put_results
            out['seconds']['put'] = 0.0  # in the run above
        else:
            rc, results, errors = _curl(job['curl'], upload)
            lap('put')
            out['curl_errors'] += errors
        for code, url in results:
            if _same_url(url) in status:
                status[_same_url(url)] = code
        out['files'] = [[local, url, status[_same_url(url)]] for local, url in pairs]
        sent = sum(1 for code in status.values() if 200 <= code < 300)
        if rc != 0 or sent != len(pairs):
            gone = rc in UNREACHABLE_EXITS or any(code == 0 for code, _ in results)
            out['unreachable'] = gone
            out['error'] = (f'{"lost the artifact server: " if gone else ""}{sent} of '
                            f'{len(pairs)} files uploaded (curl exit {rc})')
    out['curl_errors'] = [line[:500] for line in out['curl_errors'][:20]]
    _print(out)
    return 0


def _print(out):
    files = out.pop('files')
    lines = [json.dumps(f) for f in files]
    out['files'] = len(files)
    lines.append(json.dumps(out))
    sys.stdout.write('\n'.join(lines) + '\n')
    sys.stdout.flush()


def run(job):
    """The entry point: UploadArtifacts appends ``run(json.loads(<job>))``."""
    sys.exit(main(job))
