"""autodev: an orchestrator for unattended software development, built on Prefect 3."""
