"""Corpus readers: MSCOCO instances and images, SPEECH-COCO, SpokenCOCO."""
