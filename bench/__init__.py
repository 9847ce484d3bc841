"""The bench: ``uner bench`` (official UniNER F1, parity with a reference, speed against naive
baselines, all in one run) and the slow measurement scripts kept out of the default tests.

It may import :mod:`uner` and :mod:`uner.toolkit`; neither imports it. ``uner bench`` reaches the
``uner`` CLI through the ``uner.commands`` entry point, so an edge install without this package
simply has no bench command.
"""
