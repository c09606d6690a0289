"""A Li adatom on the (100), (110) and (111) facets: adsorption energies on the high-symmetry
sites and the surface diffusion barrier by NEB, as study 002 computes them.

Study 002 (shared/seeds/002_*, "Adsorption and Surface Diffusion Barriers"): slabs at least
14 Å thick with the bottom 6 Å fixed, a 4 × 4 surface supercell; the adatom on a site relaxes
along the normal only, every other free atom in all directions;
E_ads = E(adsorbed slab) − E(clean slab) − E(bulk atom). The barrier is an NEB (ASE, 7 images,
spring 0.1 eV/Å², climbing image) from the lowest site to the same site one surface cell
away, both ends relaxed. Facets with two short inequivalent hops ((100), (110)) get a barrier
for each; the facet's barrier is the lower.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms, FixedLine
from pydantic import Field, field_validator, model_validator

from tasks import build
from tasks.properties.base import CalculatorFactory, Property, PropertyResult, PropertyValue, energy, relaxed_energy
from tasks.properties.eos import AtEquilibrium
from tasks.properties.surface import Miller, facet_label

#: The facets whose sites ASE's slab builders name (ontop, bridge, hollow, ...).
FACETS: tuple[Miller, ...] = ((1, 0, 0), (1, 1, 0), (1, 1, 1))


class AdatomParams(AtEquilibrium):
    facets: list[Miller] = Field(list(FACETS), min_length=1, description="Miller indices: (100), (110), (111)")
    surface_cells: tuple[int, int] = Field((4, 4), description="surface unit cells along x and y")
    thickness_angstrom: float = Field(14.0, gt=0, description="Å, the thinnest slab at least this thick")
    fixed_bottom_angstrom: float = Field(6.0, ge=0, description="Å of bottom layers held fixed")
    vacuum_angstrom: float = Field(15.0, ge=8.0, description="Å of vacuum between the slab's periodic images")
    images: int = Field(7, ge=3, le=21, description="moving NEB images between the two ends")
    spring_ev_per_angstrom2: float = Field(0.1, gt=0, description="eV/Å², NEB spring constant")
    fmax_ev_per_angstrom: float = Field(0.01, gt=0, description="eV/Å, ends and sites relaxed below it")
    neb_fmax_ev_per_angstrom: float = Field(0.03, gt=0, description="eV/Å, the band relaxed below it")
    max_steps: int = Field(500, ge=10, description="optimiser steps at most, per relaxation and for the band")

    @field_validator("facets")
    @classmethod
    def _named_sites(cls, facets: list[Miller]) -> list[Miller]:
        if any(tuple(f) not in FACETS for f in facets):
            raise ValueError(f"facets must be among {', '.join(map(str, FACETS))}: the facets with named sites")
        return facets

    @model_validator(mode="after")
    def _room_to_move(self) -> "AdatomParams":
        if min(self.surface_cells) < 2:
            raise ValueError("surface_cells must be at least 2 x 2: a hop to the next cell would meet its own image")
        if self.surface_cells[1] % 2 and any(tuple(f) != (1, 0, 0) for f in self.facets):
            raise ValueError("surface_cells along y must be even for (110) and (111): their orthogonal cells "
                             "hold two surface cells along y")
        if self.fixed_bottom_angstrom >= self.thickness_angstrom:
            raise ValueError("fixed_bottom_angstrom must be below thickness_angstrom: the surface must be free")
        return self


def adatom_slab(facet: Miller, lattice_constant: float, params: AdatomParams) -> Atoms:
    """The thinnest slab of the facet at least `thickness_angstrom` thick, bottom fixed; ASE's
    surface cell and site names in `info["adsorbate_info"]`."""
    layers = 2
    while True:
        slab = build.slab(facet, layers, params.surface_cells, params.vacuum_angstrom,
                          lattice_constant=lattice_constant)
        if np.ptp(slab.positions[:, 2]) >= params.thickness_angstrom:
            break
        layers += 1
    bottom = slab.positions[:, 2].min() + params.fixed_bottom_angstrom
    slab.set_constraint(FixAtoms(indices=np.flatnonzero(slab.positions[:, 2] < bottom)))
    return slab


def with_adatom(slab: Atoms, site: str) -> Atoms:
    """The slab with a Li atom 2 Å above `site` of the surface cell nearest the middle, appended last."""
    info = slab.info["adsorbate_info"]
    cells = np.floor(np.linalg.solve(np.array(info["cell"]).T, np.diag(slab.cell)[:2] / 2))
    xy = np.array(info["cell"]).T @ (np.array(info["sites"][site]) + cells)
    adsorbed = slab.copy()
    adsorbed.append("Li")
    adsorbed.positions[-1] = [xy[0], xy[1], slab.positions[:, 2].max() + 2.0]
    return adsorbed


def hops(slab: Atoms) -> list[np.ndarray]:
    """The hops from a site to the same site in a neighbouring cell: the shortest in-plane
    lattice translation, and the next longer one if it is shorter than 1.5 times the first
    ((100): a and a√2; (110): a√3/2 and a; (111): a√2 only, its next, a√6, is two hops)."""
    a, b = np.array(slab.info["adsorbate_info"]["cell"])
    candidates = sorted((a, b, b - a, a + b), key=lambda t: float(np.linalg.norm(t)))
    lengths: list[float] = []
    chosen = []
    for translation in candidates:
        length = float(np.linalg.norm(translation))
        if not lengths or length > 1.01 * lengths[-1]:
            lengths.append(length)
            chosen.append(translation)
    return [t for t in chosen[:2] if np.linalg.norm(t) < 1.5 * lengths[0]]


def relaxed_on_site(slab: Atoms, site: str, calculators: CalculatorFactory, name: str,
                    params: AdatomParams) -> float:
    """Energy with the adatom relaxed along the normal only (the surface relaxes freely)."""
    adsorbed = with_adatom(slab, site)
    adsorbed.set_constraint([*slab.constraints, FixedLine(len(adsorbed) - 1, [0, 0, 1])])
    return _relaxed(adsorbed, calculators, name, params)[0]


def _relaxed(atoms: Atoms, calculators: CalculatorFactory, name: str, params: AdatomParams) -> tuple[float, Atoms]:
    return relaxed_energy(atoms, calculators, name, params.fmax_ev_per_angstrom, params.max_steps,
                          keep_constraints=True)


def neb_barrier(start: Atoms, end: Atoms, calculators: CalculatorFactory, name: str,
                params: AdatomParams) -> tuple[float, np.ndarray, np.ndarray]:
    """Climbing-image NEB from `start` to `end` (both relaxed): barrier (eV) above the start,
    and the path's distance along the band (Å) and energies (eV above the start)."""
    from ase.mep import NEB
    from ase.optimize import FIRE

    band = [start] + [start.copy() for _ in range(params.images)] + [end]
    for k, image in enumerate(band[1:-1]):
        image.calc = calculators(image, f"{name}-image{k + 1}")
    neb = NEB(band, k=params.spring_ev_per_angstrom2, climb=True, method="improvedtangent")
    neb.interpolate(method="idpp", mic=True)
    FIRE(neb, logfile=None).run(fmax=params.neb_fmax_ev_per_angstrom, steps=params.max_steps)
    energies = np.array([float(image.get_potential_energy()) for image in band])
    steps = [np.linalg.norm(band[k + 1].positions - band[k].positions) for k in range(len(band) - 1)]
    return float(energies.max() - energies[0]), np.concatenate([[0.0], np.cumsum(steps)]), energies - energies[0]


class AdatomDiffusion(Property):
    name = "adatom_diffusion"
    Params = AdatomParams

    def compute(self, params: AdatomParams, calculators: CalculatorFactory) -> PropertyResult:
        a0 = params.lattice_constant(calculators)
        bulk_atom = energy(build.bcc_bulk(a0, 1), calculators, "bulk") / 2
        values, curves = [], {}
        for miller in params.facets:
            facet = facet_label(miller)
            slab = adatom_slab(miller, a0, params)
            clean, _ = _relaxed(slab, calculators, f"clean-{facet}", params)
            sites: dict[str, float] = {}
            for site in slab.info["adsorbate_info"]["sites"]:
                sites[site] = relaxed_on_site(slab, site, calculators, f"{facet}-{site}", params)
                values.append(PropertyValue(f"adsorption_energy_{facet}_{site}", sites[site] - clean - bulk_atom, "eV",
                                            note=f"adatom relaxed along the normal; slab of {len(slab)} atoms"))
            lowest = min(sites, key=sites.get)
            start = with_adatom(slab, lowest)
            start.set_constraint(slab.constraints)
            _, start = _relaxed(start, calculators, f"{facet}-start", params)
            barriers = []
            for n, hop in enumerate(hops(slab), start=1):
                end = start.copy()
                end.positions[-1, :2] += hop
                _, end = _relaxed(end, calculators, f"{facet}-end{n}", params)
                barrier, path, profile = neb_barrier(start, end, calculators, f"{facet}-neb{n}", params)
                barriers.append(barrier)
                values.append(PropertyValue(f"diffusion_barrier_{facet}_hop{n}", barrier, "eV",
                                            note=f"{lowest} to {lowest}, {np.linalg.norm(hop):.2f} Å"))
                curves[f"neb_energy_{facet}_hop{n}_vs_path_length"] = [path.tolist(), profile.tolist()]
            values.append(PropertyValue(f"diffusion_barrier_{facet}", min(barriers), "eV",
                                        note=f"the lowest of {len(barriers)} hop(s) from the {lowest} site"))
        return PropertyResult(self.name, values, curves)
