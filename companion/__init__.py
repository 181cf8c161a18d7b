"""GenerateVision companion: the reference implementations the course chapters import.

``import companion`` stays light; import the submodule you need (``from companion import data``).
``companion.generate(model, n)`` samples any generative model of the course (:mod:`companion.generation`,
loaded on first use).
"""

__version__ = "0.1.0"
__all__ = ["generate"]


def __getattr__(name: str):
    if name == "generate":
        import importlib

        return importlib.import_module("companion.generation").generate
    raise AttributeError(f"module 'companion' has no attribute {name!r}")
