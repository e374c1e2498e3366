"""minihash: query-by-example audio search, taught step by step.

The package follows the data flow of the notebooks, one module per stage:
audio -> spectrogram -> distort -> data -> encoder -> contrastive / ot -> train
-> index / lsh / landmarks -> evaluate -> cli.
"""
from .errors import AudioError, FormatError, MinihashError

__version__ = "0.1.0"
__all__ = ["AudioError", "FormatError", "MinihashError", "__version__"]
