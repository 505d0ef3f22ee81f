"""The HTTP edge: the BentoML service, the JSON routes, `riskgate serve` and the runtime that wires
the rooms together. May import every serving room; no other room imports it."""
