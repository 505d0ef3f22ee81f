"""Review operations: the case queue, merchant webhooks, the reviewer console and the team model
behind `riskgate simulate`. May import core/, store/ and scoring/; never http/."""
