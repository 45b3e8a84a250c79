"""Buildbot steps for artifact-repository: per-build upload tokens.

In master.cfg::

    from artifact_repository import ArtifactRepository
    repo = ArtifactRepository('https://artifacts.example.org', 'ci',
                              util.Secret('artifact_master_password'))
    factory.addStep(repo.issue(artifact_type='dpkg', project='myproj'))
    ...                                   # build
    factory.addStep(repo.upload(['dist/*.deb']))
    factory.addStep(repo.revoke())        # alwaysRun
"""

from .client import TokenServiceClient, TokenServiceError
from .naming import default_scope, parse_scope, sanitize_segment
from .steps import IssueArtifactToken, RevokeArtifactToken, UploadArtifacts

__all__ = ['ArtifactRepository', 'IssueArtifactToken', 'RevokeArtifactToken',
           'TokenServiceClient', 'TokenServiceError', 'UploadArtifacts',
           'default_scope', 'parse_scope', 'sanitize_segment']


class ArtifactRepository:
    """One repository and the master's credentials for it: makes the three steps.

    ``url`` is the repository root as the master reaches it; ``master_user``
    and ``master_password`` are usually ``util.Secret(...)`` renderables.
    """

    def __init__(self, url, master_user, master_password, http_timeout=30):
        self.url = url
        self.master_user = master_user
        self.master_password = master_password
        self.http_timeout = http_timeout

    def issue(self, **kwargs):
        return IssueArtifactToken(self.url, self.master_user, self.master_password,
                                  http_timeout=self.http_timeout, **kwargs)

    def upload(self, sources, **kwargs):
        return UploadArtifacts(sources, **kwargs)

    def revoke(self, **kwargs):
        return RevokeArtifactToken(self.url, self.master_user, self.master_password,
                                   http_timeout=self.http_timeout, **kwargs)
