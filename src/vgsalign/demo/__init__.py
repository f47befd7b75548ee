"""Built-in synthetic demo corpus: scenes, captions, speech."""
