"""The artifact-token HTTP API, as the buildbot master calls it (Twisted).

Every failure becomes a TokenServiceError whose str() is one line with the
method, URL, HTTP status and the server's error code and message: that line is
what a step writes to its log. No credential ever goes into a message.
"""

import base64
import json
from urllib.parse import quote, urlsplit, urlunsplit

from twisted.internet import defer, reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

USER_AGENT = b'buildbot-artifact-repository/1'


class TokenServiceError(Exception):
    """A refused or failed call: ``status`` is the HTTP status, or None."""

    def __init__(self, method, url, status, reason):
        super().__init__(method, url, status, reason)
        self.method = method
        self.url = url
        self.status = status
        self.reason = reason

    def __str__(self):
        status = f'HTTP {self.status}' if self.status is not None else 'no response'
        return f'artifact-token: {self.method} {self.url} failed: {status}: {self.reason}'


def _without_userinfo(url):
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition('@')[2]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _error_reason(status, body, master=True):
    try:
        doc = json.loads(body.decode('utf-8'))
        reason = f"{doc['error']}: {doc['message']}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        text = body.decode('utf-8', 'replace').strip().splitlines()
        reason = text[0][:200] if text else 'empty response'
    if status == 401 and master:
        reason += ' (check the master user and password secret)'
    return reason


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body already in memory, written in one go (Twisted's
    FileBodyProducer reads it back in 64 KiB turns of the reactor)."""

    def __init__(self, body):
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer):
        consumer.write(self.body)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class TokenServiceClient:
    """Calls ``<base_url>/token...`` with the master's basic-auth credentials.

    ``base_url`` is the repository root as the *master* reaches it, e.g.
    ``https://artifacts.example.org``. Without a ``master_user`` only
    ``upload_tree`` (which sends a build token) can be used.
    """

    def __init__(self, base_url, master_user, master_password, timeout=30, agent=None):
        self.base_url = _without_userinfo(base_url).rstrip('/')
        self.master_user = master_user
        self._auth = None if master_user is None else b'Basic ' + base64.b64encode(
            f'{master_user}:{master_password}'.encode('utf-8'))
        self.timeout = timeout
        self._agent = agent or Agent(reactor, connectTimeout=timeout)

    @defer.inlineCallbacks
    def _call(self, method, path, body=None, auth=None, content_type=b'application/json',
              what='the token service'):
        url = self.base_url + path
        headers = Headers({b'Authorization': [auth or self._auth], b'User-Agent': [USER_AGENT],
                           b'Accept': [b'application/json']})
        producer = None
        if body is not None:
            headers.addRawHeader(b'Content-Type', content_type)
            if not isinstance(body, bytes):
                body = json.dumps(body).encode('utf-8')
            producer = _BytesProducer(body)
        try:
            d = self._agent.request(method.encode('ascii'), url.encode('utf-8'),
                                    headers, producer)
            d.addTimeout(self.timeout, reactor)
            response = yield d
            d = readBody(response)
            d.addTimeout(self.timeout, reactor)
            content = yield d
        except Exception as e:  # connection refused, DNS, timeout, TLS, ...
            reason = getattr(e, 'reasons', None)
            text = str(reason[0].value) if reason else (str(e) or type(e).__name__)
            raise TokenServiceError(method, url, None,
                                    f'cannot reach {what}: {text}') from None
        return url, response.code, content

    @defer.inlineCallbacks
    def issue(self, scopes, ttl, request_id=None):
        """POST /token: the JSON document of the new token (with its password).
        With a ``request_id`` the token's name is known before the answer
        (``naming.token_name``) and asking again with it while the token lives
        gets the same token with a new password."""
        body = {'scopes': list(scopes), 'ttl': int(ttl)}
        if request_id is not None:
            body['request_id'] = request_id
        url, status, content = yield self._call('POST', '/token', body)
        if status != 201:
            raise TokenServiceError('POST', url, status, _error_reason(status, content))
        try:
            doc = json.loads(content.decode('utf-8'))
        except (ValueError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict) or not all(doc.get(k) for k in ('username', 'password', 'urls')):
            raise TokenServiceError('POST', url, status, 'the response is not a token document')
        return doc

    @defer.inlineCallbacks
    def revoke(self, username, success=True):
        """DELETE /token/<username>?result=success|failure.

        Returns a RevokeAnswer: ``status`` 404 when the token was already
        gone (``seal`` None), 204 when the server did not seal (``seal`` {}),
        200 with the seal summary, or 202 while a large build is sealed in
        the background (poll ``seal_status`` until its ``state`` is not
        "running"). Any other answer raises TokenServiceError.
        """
        path = '/token/' + quote(username, safe='') + '?result=' + ('success' if success else 'failure')
        url, status, content = yield self._call('DELETE', path)
        if status == 404:
            return RevokeAnswer(404, None)
        if status == 204:
            return RevokeAnswer(204, {})
        if status in (200, 202):
            return RevokeAnswer(status, _json_object(content))
        raise TokenServiceError('DELETE', url, status, _error_reason(status, content))

    @defer.inlineCallbacks
    def seal_status(self, username):
        """GET /token/<username>/seal: the seal summary of a revoked token,
        with ``state`` "running", "done" or "failed" (and ``error``)."""
        url, status, content = yield self._call('GET', '/token/' + quote(username, safe='') + '/seal')
        doc = _json_object(content) if status == 200 else None
        if not doc or 'state' not in doc:
            raise TokenServiceError('GET', url, status,
                                    _error_reason(status, content) if status != 200
                                    else 'the response is not a seal status')
        return doc

    @defer.inlineCallbacks
    def upload_tree(self, path, username, password, archive):
        """POST a tar archive to ``path`` (a build's directory, '/'-started,
        ending in '/') with a build token: the server's answer
        ``{files, directories, bytes}`` (docs/api.md "Tree upload")."""
        auth = b'Basic ' + base64.b64encode(f'{username}:{password}'.encode('utf-8'))
        url, status, content = yield self._call('POST', path, archive, auth=auth,
                                                content_type=b'application/x-tar',
                                                what='the artifact server')
        if status != 201:
            raise TokenServiceError('POST', url, status,
                                    _error_reason(status, content, master=False))
        doc = _json_object(content)
        if not isinstance(doc.get('files'), int):
            raise TokenServiceError('POST', url, status, 'the response is not a tree summary')
        return doc


class RevokeAnswer:
    """What DELETE /token/<username> said: ``status`` and the seal summary."""

    __slots__ = ('status', 'seal')

    def __init__(self, status, seal):
        self.status = status
        self.seal = seal


def _json_object(content):
    try:
        doc = json.loads(content.decode('utf-8'))
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}
