"""The online service in four rooms: http/ (the edge), scoring/ (the online flow), review/
(reviewers, webhooks, the team model) and store/ (tables, migrations), sharing core/."""
