"""A stand-in for the 'base' buildbot-www plugin, which Debian 12 does not ship.

buildbot's web service refuses to start without a 'base' app, and the REST API
(/api/v2) the end-to-end test drives lives in buildbot itself, not in the UI.
This app serves an empty static directory where the UI would be. Test only.
"""

from buildbot.www.plugin import Application

ep = Application(__name__, 'artifact-repository e2e test stub (no UI)', ui=False)
