"""orchestrate: run a YAML file of shell jobs in parallel, exactly, and report."""

__version__ = "0.1.0"
