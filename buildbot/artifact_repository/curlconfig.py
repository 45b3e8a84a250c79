"""Text handed to curl on the worker (pure).

The credential travels in a .netrc file (never argv, never the environment);
the list of transfers travels in a curl config read from stdin, so neither the
command line nor the step's header shows anything but ``curl --config -``.
"""

from urllib.parse import urlsplit

# One line per finished transfer on stdout: parsed by the upload step.
WRITE_OUT = r'%{response_code} %{url_effective}\n'


def netrc_text(url, username, password):
    """A .netrc for ``curl --netrc-file``: curl matches on the host name only."""
    host = urlsplit(url).hostname
    if not host:
        raise ValueError(f'no host in {url!r}')
    for value in (host, username, password):
        if any(c.isspace() for c in value) or not value:
            raise ValueError('netrc fields must be non-empty without whitespace')
    return f'machine {host} login {username} password {password}\n'


def quote(value):
    """A curl config string: double quotes, backslash escapes."""
    if any(ord(c) < 0x20 or c == '\x7f' for c in value):
        raise ValueError(f'control character in {value!r}')
    return '"' + value.replace('\\', '\\\\').replace('"', '\\"') + '"'


def upload_config(netrc_path, transfers, parallel=4, retries=3, connect_timeout=10):
    """A curl config that PUTs every (local_path, url) in ``transfers``.

    ``--fail`` makes any HTTP error a failed transfer (curl exits non-zero);
    ``--retry`` retries transient errors (timeouts, 408, 429, 5xx), which is
    safe because a PUT is idempotent and uploads are atomic on the server.
    """
    lines = [
        'fail',
        # Not 'silent': curl 7.88 still draws the --parallel progress meter with it.
        'no-progress-meter',
        'show-error',
        f'netrc-file = {quote(netrc_path)}',
        f'retry = {int(retries)}',
        'retry-connrefused',
        f'connect-timeout = {int(connect_timeout)}',
        f'write-out = "{WRITE_OUT}"',
    ]
    if int(parallel) > 1:
        lines += ['parallel', f'parallel-max = {int(parallel)}']
    for local_path, url in transfers:
        lines.append(f'upload-file = {quote(local_path)}')
        lines.append(f'url = {quote(url)}')
        # Each URL gets its own -o: curl pairs outputs and URLs in order.
        lines.append('output = "/dev/null"')
    return '\n'.join(lines) + '\n'


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


def mkcol_config(netrc_path, urls, retries=3, connect_timeout=10):
    """A curl config that MKCOLs every URL in order (never in parallel: a
    directory must exist before its children). No ``--fail``: 405 (it exists
    already) is an answer the caller accepts."""
    lines = [
        'no-progress-meter',
        'show-error',
        f'netrc-file = {quote(netrc_path)}',
        'request = "MKCOL"',
        f'retry = {int(retries)}',
        'retry-connrefused',
        f'connect-timeout = {int(connect_timeout)}',
        f'write-out = "{WRITE_OUT}"',
    ]
    for url in urls:
        lines.append(f'url = {quote(url)}')
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
