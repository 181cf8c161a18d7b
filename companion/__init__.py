"""GenerateVision companion: the reference implementations the course chapters import.

``import companion`` stays light; import the submodule you need (``from companion import data``).
"""

__version__ = "0.1.0"
