"""The online service: rooms http/ (the edge), scoring/, review/, store/, sharing core/; cli.py is
the `riskgate` entry point. May import data/, features/, training/ (each room's own rules apply)."""
