"""Extract stage: NBIA (tcia_utils) and Synapse (synapseclient) downloads into a verified, resumable cache.

``cache`` (content-addressed store + SQLite ledger), ``tcia`` / ``synapse`` (the two extractors),
``export`` (cache -> plain folders), ``retry`` (policy and backoff), ``zipcheck`` (series archive checks),
``nbia_client`` (tcia_utils pointed at a base URL, with timeouts), ``manifest`` (cases and exclusions).
"""
