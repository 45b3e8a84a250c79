"""Buildbot steps for artifact-repository: per-build upload tokens.

In master.cfg::

    from artifact_repository import ArtifactRepository
    repo = ArtifactRepository('https://artifacts.example.org', 'ci',
                              util.Secret('artifact_master_password'))
    c['services'] = [repo]                # journals and retries every revoke
    factory.addStep(repo.issue(artifact_type='dpkg', project='myproj'))
    ...                                   # build
    factory.addStep(repo.upload(['dist/*.deb']))
    factory.addStep(repo.revoke())        # alwaysRun
"""

from .client import TokenServiceClient, TokenServiceError
from .naming import default_scope, parse_scope, sanitize_segment
from .repository import ArtifactRepository
from .steps import IssueArtifactToken, RevokeArtifactToken, UploadArtifacts

__all__ = ['ArtifactRepository', 'IssueArtifactToken', 'RevokeArtifactToken',
           'TokenServiceClient', 'TokenServiceError', 'UploadArtifacts',
           'default_scope', 'parse_scope', 'sanitize_segment']
