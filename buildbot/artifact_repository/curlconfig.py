"""The .netrc handed to curl on the worker (pure).

The credential travels in a .netrc file (never argv, never the environment);
the list of transfers travels in a curl config that worker_upload.sh pipes to
``curl --config -``, so no command line shows anything of it.
"""

from urllib.parse import urlsplit


def netrc_text(url, username, password):
    """A .netrc for ``curl --netrc-file``: curl matches on the host name only."""
    host = urlsplit(url).hostname
    if not host:
        raise ValueError(f'no host in {url!r}')
    for value in (host, username, password):
        if any(c.isspace() for c in value) or not value:
            raise ValueError('netrc fields must be non-empty without whitespace')
    return f'machine {host} login {username} password {password}\n'
