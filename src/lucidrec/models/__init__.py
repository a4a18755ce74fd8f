"""Models: the hybrid language-model recommender (torch for training, numpy for serving)."""
