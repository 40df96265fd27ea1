"""Files users ask for by name: the registry of published weights and datasets, and the one
place fcnxs downloads anything (a cache, hashes, resumable downloads, a lock, a mirror, an
offline switch). It knows nothing of models: model loading asks it for a path."""
