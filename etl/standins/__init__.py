"""Loopback stand-ins for the NBIA v4 and Synapse REST APIs, with fault knobs (tests, demo, rehearsal)."""
