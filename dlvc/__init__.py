"""dlvc: a course kit for semantic segmentation with PyTorch.

Students fill the TODO stubs in this package. In the instructors' repository the
reference solutions live in ``solutions/`` beside the package; there, and only
there, every module that has a solution file is imported from it instead of its
stub (see :mod:`dlvc._reference`). A student's checkout has no ``solutions/``
folder, so everything runs against the student's own code.
"""

from ._reference import install_reference_overlay

__version__ = "0.1.0"

install_reference_overlay(__name__, __path__[0])
