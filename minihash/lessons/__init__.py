"""The notebooks' helpers, one module per notebook: the figures it draws and the exercises it checks.

`nb00_overview` ... `nb10_your_own_audio` follow notebooks/00_overview.ipynb ... 10_your_own_audio.ipynb;
a figure or checker that several notebooks use lives in the first of them (teaching order), and the later
modules import it from there, so `from minihash.lessons import nb08_search as lesson` gives a notebook all
it uses. `common` holds what they share (ExerciseError, the comparison and axes helpers).

The modules are not imported here: the package's reports import single figures from them without
loading every lesson (and its torch, POT and scipy imports).
"""
