"""Offline training: splits, fit, thresholds, metrics, drift, MLflow tracking, promotion.
May import data/ and features/; never serving/."""
