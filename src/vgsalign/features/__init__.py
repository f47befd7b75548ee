"""Feature extraction into HDF5 shards: log-mel audio, CNN image grids."""
