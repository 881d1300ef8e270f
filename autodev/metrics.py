"""Prometheus metrics of the orchestrator loop, in prometheus-client form.

They count what this process did; `autodev metrics serve` (observability work) will derive the
cross-process totals from the state store.
"""

from prometheus_client import Counter

COMMAND_FAILURES = Counter(
    "orchestrator_command_failures", "Commands that ended with a non-zero or unknown exit code, a stall or a timeout."
)
COMMANDS = Counter("orchestrator_commands", "Commands run, by final status.", ["status"])
