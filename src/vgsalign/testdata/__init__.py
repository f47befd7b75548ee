"""Test-set construction: word times, nouns, vocabulary, labels, similarities, pairs."""
