"""Supervised learning: NumPy-from-scratch networks, data set readers, and learners for the shared loop."""
