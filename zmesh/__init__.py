"""zmesh: a stealthy, self-healing peer-to-peer onion mesh VPN."""

__version__ = "0.1.0"
