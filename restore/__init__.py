"""restore: image restoration with i-LN transformers (SwinIR, HAT).

Importing the package is cheap: torch is imported by the submodules that need it.
"""

__version__ = "0.1.0"
