"""Phrase generation: text format, logits constraint, model loading, generator process."""
