"""Data sets in their official formats, download and verification, transforms, and tiny test fixtures."""
