"""The master's half of the worker's upload command (pure: no buildbot here).

UploadArtifacts runs worker_upload.sh on the worker with ``sh -c``: one
command finds the files, checks their names and runs one curl; no python
starts there (issue 17: starting python on the worker cost more than curl
needed for 32 files; bench/RESULTS-buildbot.md). This module writes that
command's arguments, above all the curl config's fixed part (the HEAD check
of the build's URL, then the options of the PUTs), and reads its output back
into one outcome per file. The credential stays in the .netrc: neither a
command line, the config nor the output holds it.
"""

import json
import os
import posixpath

WRITE_OUT = r'%{response_code} %{method} %{url_effective}\n'
GLOB_CHARS = set('*?[')
# curl exit codes that mean "no server there": could not resolve, connect,
# timed out, empty reply, send/receive failure.
UNREACHABLE_EXITS = {5, 6, 7, 28, 52, 55, 56}
# worker_upload.sh's exit status when it refused the job before any request.
REFUSED_EXIT = 120

_SCRIPT = None


class Refusal(Exception):
    """A problem with the job itself (a bad path or URL): nothing was sent."""


def script():
    """The text of worker_upload.sh, the program of ``sh -c``."""
    global _SCRIPT
    if _SCRIPT is None:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               'worker_upload.sh'), encoding='utf-8') as f:
            _SCRIPT = f.read()
    return _SCRIPT


def quote_body(value):
    """``value`` as the inside of a double-quoted curl config string.

    curl's config parser takes ``\\\\`` and ``\\"`` inside quotes; a control
    character (a newline would end the line and start an option of the
    attacker's choice) is refused, not escaped.
    """
    if any(ord(c) < 0x20 or c == '\x7f' for c in value):
        raise Refusal(f'control character in {value!r}')
    return value.replace('\\', '\\\\').replace('"', '\\"')


def quote(value):
    """A curl config string: double quotes, backslash escapes."""
    return '"' + quote_body(value) + '"'


def _transfer_options(netrc_path, connect_timeout, fail='fail'):
    """What every transfer shares: the credential file, the connect timeout,
    the write-out the master parses, ``--fail`` (or ``fail``)."""
    # Not 'silent': curl 7.88 still draws the --parallel progress meter with it.
    return ['no-progress-meter', 'show-error', f'netrc-file = {quote(netrc_path)}',
            f'connect-timeout = {int(connect_timeout)}', f'write-out = "{WRITE_OUT}"', fail]


def put_options(netrc_path, retries=3, connect_timeout=10):
    """The options of a group of PUTs: ``--fail`` makes any HTTP error a
    failed transfer; ``--retry`` retries transient errors (timeouts, 408,
    429, 5xx: a PUT is idempotent and atomic on the server) but never a
    refused connection. A transfer stalled below 1 byte/s for a minute is a
    dead server (a large upload has no max-time that would fit every size)."""
    return '\n'.join(_transfer_options(netrc_path, connect_timeout)
                     + [f'retry = {int(retries)}', 'speed-limit = 1', 'speed-time = 60'])


def post_options(netrc_path, connect_timeout=10):
    """The options of the tree upload: one POST of a tar archive read from
    standard input (worker_upload.sh), unpacked by the server. The server's
    answer goes to stderr (``fail-with-body``): its count of files on
    success, its reason on a refusal. No retry: a pipe cannot be sent twice.
    No ``Expect: 100-continue``: the archive holds small files only, and the
    round trip would cost more than sending it."""
    return '\n'.join(_transfer_options(netrc_path, connect_timeout, fail='fail-with-body')
                     + ['request = "POST"', 'header = "Content-Type: application/x-tar"',
                        'header = "Expect:"', 'output = "/dev/stderr"',
                        'speed-limit = 1', 'speed-time = 60'])


def config_header(netrc_path, base, parallel=8, connect_timeout=10):
    """The curl config before the uploads: the worker appends the tree
    upload's options and the archive's transfer, then the PUT options
    (``put_options``) and one ``upload-file``/``url``/``output`` triple per
    file to PUT.

    First a HEAD of ``base`` with ``--fail`` and no retry: with
    ``--fail-early`` a dead, refusing or silent server (``max-time``) ends the
    whole run there, without a retry storm. ``--parallel`` is global, so the
    check runs beside the first uploads, not before them: any failure stops
    all.
    """
    parallel = max(1, int(parallel))
    connect_timeout = int(connect_timeout)
    lines = ['fail-early']
    if parallel > 1:
        lines += ['parallel', f'parallel-max = {parallel}']
    lines += (['head'] + _transfer_options(netrc_path, connect_timeout)
              + [f'max-time = {2 * connect_timeout}', f'url = {quote(base)}', 'output = "/dev/null"', 'next'])
    return '\n'.join(lines)


def command(curl, netrc_path, base, paths, dest, parallel=8, retries=3, connect_timeout=10):
    """The argv of the worker's upload command: ``sh -c`` worker_upload.sh."""
    return (['sh', '-c', script(), 'artifact-upload',
             config_header(netrc_path, base, parallel, connect_timeout),
             put_options(netrc_path, retries, connect_timeout),
             post_options(netrc_path, connect_timeout), quote_body(base), curl]
            + source_arguments(paths, dest))


def source_arguments(paths, dest):
    """The ``path LOCAL QUOTED REMOTE`` arguments of worker_upload.sh for the
    worker paths ``paths`` (files or directories, globs already expanded),
    published below ``dest`` (already checked: '' or 'a/b')."""
    remote = dest.strip('/') + '/' if dest.strip('/') else ''
    args = []
    for path in paths:
        path = posixpath.normpath(path)
        args += ['path', path, quote_body(path), remote]
    return args


def _same_url(url):
    """The URL as curl reports it in %{url_effective}: it lowercases the scheme."""
    scheme, sep, rest = url.partition('://')
    return scheme.lower() + sep + rest


def parse(base, rc, stdout, stderr):
    """The outcome of worker_upload.sh as a dict:

    ``files``        [(local, url, status)] in URL order (status 0: no answer);
                     a file of the archive has the archive's status
    ``error``        None, or one line saying why the upload failed
    ``unreachable``  True when the server could not be reached or failed the check
    ``curl_errors``  the other lines of stderr (at most 20)
    ``token_service_down``  True when the check or the archive got HTTP 502:
                     nginx answered, its token service did not (restarting?)
    """
    expected, in_archive, messages, unpacked = {}, set(), [], None
    for line in (stderr or '').splitlines():
        if line.startswith(('= ', '=t ')) and '\t' in line:
            url, _, local = line.partition(' ')[2].partition('\t')
            expected[_same_url(url)] = (local, url)
            if line.startswith('=t '):
                in_archive.add(_same_url(url))
        elif line.startswith('{') and '"files"' in line and unpacked is None:
            # The server's answer to the archive (its refusals stay messages).
            try:
                unpacked = int(json.loads(line)['files'])
            except (ValueError, TypeError, KeyError):
                messages.append(line[:500])
        elif line:
            messages.append(line[:500])
    answers, archive = {}, 0
    for line in (stdout or '').splitlines():
        code, _, rest = line.strip().partition(' ')
        method, _, url = rest.partition(' ')
        if not (code.isdigit() and url):
            continue
        if method == 'POST':
            archive = int(code)
        else:
            answers[_same_url(url)] = int(code)
    check = answers.get(_same_url(base))
    out = {'error': None, 'unreachable': False, 'curl_errors': messages[:20],
           'token_service_down': 502 in (check, archive)}
    out['files'] = sorted(((local, url, archive if key in in_archive else answers.get(key, 0))
                           for key, (local, url) in expected.items()), key=lambda f: f[1])
    if rc == REFUSED_EXIT or not expected:
        refusals = [m[len('error: '):] for m in messages if m.startswith('error: ')]
        out['error'] = ('nothing was uploaded: ' + '; '.join(refusals) if refusals else
                        f'the upload command on the worker failed (exit {rc})')
        out['curl_errors'] = [m for m in messages if not m.startswith('error: ')][:20]
        return out
    sent = sum(1 for _, _, code in out['files'] if 200 <= code < 300)
    # With --parallel the check runs beside the first PUTs: a PUT's failure
    # can end the run before the check's answer is in. Any answer at all
    # means the server is there.
    if not any(answers.values()) and not archive or (check or 0) >= 500:
        out['unreachable'] = True
        what = f'HTTP {check}' if check else (messages[-1] if messages else f'curl exit {rc}')
        out['error'] = f'cannot reach the artifact server at {base}: {what}'
    elif check is not None and check != 0 and not 200 <= check < 300:
        out['error'] = f'the artifact server refused {base}: HTTP {check}'
    elif 200 <= archive < 300 and unpacked != len(in_archive):
        out['error'] = (f'the server unpacked {unpacked} of the {len(in_archive)} files sent '
                        'in the archive: did a file vanish while tar read it?')
    elif rc != 0 or sent != len(out['files']):
        gone = rc in UNREACHABLE_EXITS
        out['unreachable'] = gone
        out['error'] = (f'{"lost the artifact server: " if gone else ""}{sent} of '
                        f'{len(out["files"])} files uploaded (curl exit {rc})')
    return out
