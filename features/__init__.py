"""Features defined once (registry) and computed in batch and online over a state store.
May import data/ (the contract); never training/ or serving/."""
