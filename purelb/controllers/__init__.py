"""Daemons: Trio nurseries that wire the pure cores to the API, UDP and netlink shells."""
