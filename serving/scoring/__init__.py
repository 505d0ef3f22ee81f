"""The online scoring path: features, model, policy, explanation, the durable decision and the
group commit. May import core/, store/, features/ and training/ (the model); never http/."""
