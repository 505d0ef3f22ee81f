"""`riskgate simulate`: replay a held-out period through three policies and the review-team model.
May import review/, scoring/, data/ and training/; never http/."""
