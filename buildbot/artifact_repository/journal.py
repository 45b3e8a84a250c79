"""Tokens a master has issued and not yet seen revoked, in a file (no Twisted).

One JSON document in the master's basedir, replaced atomically (temp file,
fsync, rename, fsync of the directory) on every change, so a master that is
stopped, killed or loses its artifact server finds on its next start every
token it still owes a revoke. It holds no secret: usernames, scopes, the
repository URL, the build, the expiry and the retry state.
"""

import json
import os
import tempfile
import time

VERSION = 1


def backoff(attempts, cap):
    """Seconds to wait after ``attempts`` failed tries: 1, 2, 4, ... at most ``cap``."""
    return min(float(cap), 2.0 ** min(max(int(attempts) - 1, 0), 30))


class Journal:
    """``entries``: username -> dict with the keys

    ``url``         repository root the token was issued by
    ``scopes``      list of scopes
    ``buildid``     the build that uses it (None: not tied to a build)
    ``expires``     unix time the server ends it anyway (None: unknown)
    ``result``      None while the build runs, else "success" or "failure":
                    the revoke is owed and is retried until it is confirmed
    ``attempts``    failed revoke tries so far
    ``next_try``    unix time of the next try
    ``error``       the last failure, one line
    """

    def __init__(self, path):
        self.path = path
        self.entries = {}

    def load(self):
        """Reads the file if there is one. A file that cannot be parsed is
        moved aside (``<path>.corrupt``) and reported, never silently lost.
        Returns a list of one-line problems."""
        try:
            with open(self.path, encoding='utf-8') as f:
                doc = json.load(f)
            entries = doc['entries']
            if not isinstance(entries, dict):
                raise ValueError('entries is not an object')
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as e:
            aside = self.path + '.corrupt'
            try:
                os.replace(self.path, aside)
            except OSError:
                aside = self.path
            return [f'{self.path} is unreadable ({e}); kept as {aside}']
        problems = []
        for username, entry in entries.items():
            if isinstance(entry, dict) and isinstance(entry.get('url'), str):
                self.entries[username] = _normalised(username, entry)
            else:
                problems.append(f'{self.path}: skipped a malformed entry for {username!r}')
        return problems

    def add(self, username, url, scopes, buildid=None, expires=None):
        """Adds an entry and saves; raises OSError (and keeps nothing) if it cannot."""
        self.entries[username] = _normalised(username, {
            'url': url, 'scopes': list(scopes), 'buildid': buildid, 'expires': expires})
        try:
            self.save()
        except OSError:
            del self.entries[username]
            raise

    def remove(self, username):
        if self.entries.pop(username, None) is not None:
            self.save()

    def save(self):
        """Replaces the file atomically; raises OSError (the old file stays)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        data = json.dumps({'version': VERSION, 'entries': self.entries}, indent=1,
                          sort_keys=True).encode('utf-8')
        fd, temp = tempfile.mkstemp(prefix='.' + os.path.basename(self.path) + '.',
                                    dir=directory)
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.path)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def due(self, now=None):
        """Usernames whose revoke is owed and whose next try has come."""
        now = time.time() if now is None else now
        return sorted(u for u, e in self.entries.items()
                      if e['result'] is not None and e['next_try'] <= now)

    def next_due(self, exclude=()):
        """The earliest ``next_try`` of an owed revoke not in ``exclude``, or None."""
        times = [e['next_try'] for u, e in self.entries.items()
                 if e['result'] is not None and u not in exclude]
        return min(times) if times else None


def _normalised(username, entry):
    return {
        'username': username,
        'url': entry['url'],
        'scopes': [str(s) for s in entry.get('scopes') or []],
        'buildid': entry.get('buildid'),
        'expires': entry.get('expires'),
        'result': entry.get('result') if entry.get('result') in ('success', 'failure') else None,
        'attempts': int(entry.get('attempts') or 0),
        'next_try': float(entry.get('next_try') or 0),
        'error': str(entry.get('error') or ''),
    }
