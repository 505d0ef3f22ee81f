"""The vocabulary every room shares: the payment contract, principals and keys, settings, metrics.
May import data/ and third-party code only, never another serving room."""
