"""Supervised learning: the learners of the shared loop (classifier, ACGAN, NumPy networks) and the NumPy
networks built from scratch."""
