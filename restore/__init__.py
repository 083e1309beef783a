"""restore: image restoration with i-LN transformers (SwinIR, HAT, DRCT).

    import restore
    model = restore.load("swinir-iln-t.sr-x4")     # or load(task="sr", scale=4), or a file
    out = model.restore(pil_image_or_array)

``load`` and ``Model`` are restore.api's (see there). Importing the package is cheap:
torch is imported by the submodules that need it, when they run.
"""

__version__ = "0.1.0"


def load(*args, **kwargs):
    """restore.api.load: a model by registry name, file or task, ready to run."""
    from .api import load as _load

    return _load(*args, **kwargs)


def __getattr__(name: str):
    if name == "Model":
        from .api import Model

        return Model
    raise AttributeError(f"module 'restore' has no attribute {name!r}")
