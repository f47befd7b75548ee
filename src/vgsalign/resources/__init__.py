"""Offline resources: the POS tagger and the word vectors."""
