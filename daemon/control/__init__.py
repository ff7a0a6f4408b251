"""The local control channel: the CLI talks to the running service (docs/control.md)."""
