"""ifcflow with no server: a private redis-server, local worker processes, the demo models."""
