"""The thin command-line layer over annette's public API."""
