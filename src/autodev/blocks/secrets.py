"""Where a run's secrets come from: autodev's environment, else a Prefect Secret block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from autodev.core.errors import EnvironmentProblem
from autodev.core.secrets import SecretNames, block_name


def resolve_secrets(names: SecretNames, environ: Mapping[str, str], blocks: bool = True) -> dict[str, str]:
    """The secrets' values by name; EnvironmentProblem naming every required one that is missing.
    With `blocks` False only the environment is read (no Prefect server is asked)."""
    found: dict[str, str] = {}
    missing = []
    for name in [*names.required, *names.optional]:
        value = environ.get(name) or (_from_block(name) if blocks and name in names.required else None)
        if value:
            found[name] = value
        elif name in names.required:
            missing.append(name)
    if missing:
        raise EnvironmentProblem(
            f"the plan's secret{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'are' if len(missing) > 1 else 'is'} not set",
            f"export {missing[0]}=... where autodev runs, or save it as a Prefect Secret block named "
            f"{block_name(missing[0])!r} (Prefect UI > Blocks > Secret)",
        )
    return found


def _from_block(name: str) -> str | None:
    from prefect.blocks.system import Secret

    try:
        return str(cast(Secret, Secret.load(block_name(name))).get())  # sync: called outside an event loop
    except ValueError:  # no such block
        return None
