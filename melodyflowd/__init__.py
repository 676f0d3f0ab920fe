"""melodyflowd: your rhythm, a language model's jazz lines, over any chord chart."""

__version__ = "0.1.0"
