"""minihash: query-by-example audio search, taught step by step.

The package follows the data flow of the notebooks, one module per stage:
audio -> spectrogram -> distort -> corpus / pairs -> encoder / nafp / modelfile ->
contrastive / ot -> train / recipe -> search / landmarks -> evaluate / bench -> cli.

The package API: `minihash.load_model()` loads the shipped model (`modelfile.load_model`);
`load` and `load_folder` read audio (`audio`); `index_audio` and `query_audio` go from audio to
matches and `load_index` reads a saved index (`search`); `calibrate_index` sets an index's "no match"
thresholds on its own collection, as `minihash index` does (`evaluate.calibrate`), and
`calibrate_on_negatives` on music you bring that is not in the index (`search`).
"""
import importlib

from ._version import __version__
from .errors import AudioError, FormatError, MinihashError

# where each name of the package API lives. They are imported on first access (PEP 562), not here:
# each of those modules imports torch, which takes seconds (`import minihash` alone: ~0.1 s, with them ~5 s
# on a busy 2-core machine), and `import minihash` only for its errors or version should not pay for it
_LAZY = {"load_model": "modelfile", "load": "audio", "load_folder": "audio", "index_audio": "search.pipeline",
         "query_audio": "search.pipeline", "calibrate_on_negatives": "search.pipeline", "load_index": "search",
         "calibrate_index": "evaluate.calibrate"}

__all__ = ["AudioError", "FormatError", "MinihashError", "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'minihash' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
