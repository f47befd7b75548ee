"""Model training: shard data, models, losses, retrieval, the loop and the tensor dump."""
