"""The command lines, thin over :mod:`rlkit.jobs`: ``train.py`` is :mod:`rlkit.cli.train`, ``evaluate.py``
:mod:`rlkit.cli.evaluate`."""
