"""`edgeq build`: compile the models an edgeq.toml lists, cached by content and checked by quality gates.

config.py reads and checks the config, cache.py is the content-addressed cache, run.py runs the build.
"""
