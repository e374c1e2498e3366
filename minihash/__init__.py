"""minihash: query-by-example audio search, taught step by step.

The package follows the data flow of the notebooks, one module per stage:
audio -> spectrogram -> distort -> data -> encoder -> contrastive / ot -> train
-> index / lsh / landmarks -> evaluate -> cli.

`minihash.load_model()` loads the shipped model (`encoder.load_model`); torch is imported
only when it is first used, so `import minihash` stays light.
"""
from .errors import AudioError, FormatError, MinihashError

__version__ = "0.1.0"
__all__ = ["AudioError", "FormatError", "MinihashError", "__version__", "load_model"]


def __getattr__(name):  # PEP 562: resolved on first access
    if name == "load_model":
        from .encoder import load_model

        return load_model
    raise AttributeError(f"module 'minihash' has no attribute {name!r}")
