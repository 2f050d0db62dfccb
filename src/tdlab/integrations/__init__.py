"""Integrations: tdlab probes and metric sinks inside other tools (Lightning, Hugging Face, experiment trackers).

Each integration lives in its own module and imports its tool only there, so the tools stay optional.
"""
