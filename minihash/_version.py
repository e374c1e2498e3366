"""The version of minihash, written into every model file (a module of its own: importing it imports nothing)."""
__version__ = "0.1.0"
