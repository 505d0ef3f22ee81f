"""Storage: the tables, the engine, Alembic migrations. Knows no business rule: imports nothing of
riskgate outside store/."""
