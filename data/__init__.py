"""riskgate: data."""
