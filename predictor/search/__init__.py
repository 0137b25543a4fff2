"""predictor.search."""
