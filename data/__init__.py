"""The data layer: the transaction contract, loading and column mappings, the simulator and
`riskgate generate|validate`. Imports nothing of riskgate but data/ itself."""
