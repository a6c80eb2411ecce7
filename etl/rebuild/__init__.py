"""`mamamia rebuild`: every stage a release definition declares, from the download to the verified release.

The stages and their commands are data (``stages.yaml``); the definition's ``rebuild:`` section says where
the inputs come from (``spec.py``); a ledger of fingerprints (``ledger.py``) makes a rerun skip what is done;
``run.py`` drives the real command line stage by stage. ``run_rebuild`` is the Python entry point (the demo
calls it with its stand-ins' addresses as overrides).
"""

from etl.rebuild.run import RebuildResult, run_rebuild

__all__ = ["RebuildResult", "run_rebuild"]
