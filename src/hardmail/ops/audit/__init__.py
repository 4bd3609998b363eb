"""The security audit (practice 14): checks that probe the running server like an attacker, read its
configuration and data, and look at its DNS, each giving one finding with evidence, the reason it
matters and the exact fix.

- :mod:`.findings`: severities, check descriptions, findings, the report and its score.
- :mod:`.context`: what every check is given (configuration, store, resolver, probe targets).
- ``probe_*``: active probes over the network; ``checks_*``: configuration, data and DNS checks.
  Each such module exports ``CHECKS`` (its :class:`~.findings.CheckInfo` list) and
  ``async def run(ctx) -> list[Finding]`` (one finding per check id).
- :mod:`.catalog`: every check module, in report order.
"""
