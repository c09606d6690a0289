"""The labellers a campaign can name (`label.engine`), each with its settings block.

A new labeller is one module in this package (a `Labeller` subclass with its `Settings`
model and `calculator`, see `base.py`) plus one `LABELLERS.register(...)` line below.
"""

from tasks.labellers import gpaw, qe, reference, vasp
from tasks.labellers.base import ExternalDftSettings, Labeller
from tasks.plugin import Registry

LABELLERS: Registry[Labeller] = Registry("labeller")
LABELLERS.register(gpaw.Gpaw())
LABELLERS.register(reference.Reference())
LABELLERS.register(vasp.Vasp())
LABELLERS.register(qe.QuantumEspresso())

__all__ = ["LABELLERS", "ExternalDftSettings", "Labeller"]
