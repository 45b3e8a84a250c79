"""Scopes and artifact names as the artifact repository accepts them (pure).

The grammar is the server's (DESIGN.md, "Scopes and the artifact tree"): a scope
is exactly ``SCOPE_DEPTH`` segments, each ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``;
a file or directory name below a scope is ``[A-Za-z0-9_+][A-Za-z0-9._+~-]{0,254}``.
Checking here lets a step fail with a clear message before any request is made.
"""

import hashlib
import re

SCOPE_DEPTH = 4

_SEGMENT = re.compile(r'[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z')
NAME_RULE = r'[A-Za-z0-9_+][A-Za-z0-9._+~-]{0,254}'
_NAME = re.compile(NAME_RULE + r'\Z')
_NOT_SEGMENT_CHAR = re.compile(r'[^A-Za-z0-9._-]+')


class NameError_(ValueError):
    """A scope or artifact name the repository would refuse."""


def sanitize_segment(value):
    """Turns any value (a builder name, a project) into a valid scope segment.

    Runs of other characters become one '-', a leading '.' or '-' gets a '_'
    in front (so never '.', '..' or hidden), the result is cut to 128 bytes.
    """
    text = _NOT_SEGMENT_CHAR.sub('-', str(value if value is not None else ''))
    text = text.strip('-')
    if not text:
        return '_'
    if not re.match(r'[A-Za-z0-9_]', text):
        text = '_' + text
    return text[:128]


def parse_scope(scope, depth=SCOPE_DEPTH):
    """Returns the scope as a string if valid, else raises NameError_."""
    if not isinstance(scope, str):
        raise NameError_(f'scope must be a string, got {type(scope).__name__}')
    segments = scope.strip('/').split('/')
    if len(segments) != depth:
        raise NameError_(f'scope {scope!r} must have exactly {depth} segments')
    for segment in segments:
        if not _SEGMENT.match(segment):
            raise NameError_(f'scope {scope!r}: segment {segment!r} is not '
                             '[A-Za-z0-9_][A-Za-z0-9._-]{0,127}')
    return '/'.join(segments)


def default_scope(artifact_type, project, buildername, buildnumber):
    """``<type>/<project>/<buildername>/<buildnumber>``, each part sanitized."""
    return '/'.join(sanitize_segment(part)
                    for part in (artifact_type, project, buildername, buildnumber))


def check_remote_path(path):
    """Returns the '/'-joined path if every component is a valid name."""
    parts = [p for p in path.split('/') if p != '']
    if not parts:
        raise NameError_('empty artifact name')
    for part in parts:
        if not _NAME.match(part):
            raise NameError_(f'artifact name {path!r}: {part!r} is not {NAME_RULE}')
    return '/'.join(parts)


def token_name(master_user, request_id):
    """The name the server gives the token that ``master_user`` issues with
    ``request_id``: "r" + the first 40 hex digits of SHA-256(master, newline,
    request_id), as fcgi/password_file.h TokenNameFor says."""
    if not _SEGMENT.match(request_id):
        raise NameError_(f'request_id {request_id!r} is not [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}')
    digest = hashlib.sha256(f'{master_user}\n{request_id}'.encode('utf-8')).hexdigest()
    return 'r' + digest[:40]
