"""Runnable material a user copies: example pipelines and their stage programs."""
