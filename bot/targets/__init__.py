"""Where commands run: a host over SSH (Fabric) or this machine (local)."""
