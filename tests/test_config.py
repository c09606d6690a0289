"""The campaign schema: valid configs load, every problem is reported with its YAML path."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from campaign.config import ConfigError, load_config, parse_config
from campaign.sweep import expand_sweep, point_id

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name != "executors")


def minimal(**sections):
    data = {"campaign": {"name": "t", "workdir": "runs/t"},
            "systems": [{"name": "slab", "builder": "slab", "params": {"layers": 4}}]}
    data.update(sections)
    return data


def problems_of(data) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_validates(path):
    config = load_config(path)
    assert config.campaign.workdir.is_absolute()
    for scale in yaml.safe_load(path.read_text()).get("scales", {}):  # at every scale it ships
        load_config(path, scale=scale)


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_study_validates_at_small_scale(path):
    full, small = load_config(path), load_config(path, scale="small")
    assert small.workdir != full.workdir and small.workdir.name.endswith("-small")
    assert all(e.provider == "local" for e in small.executors.values())


def test_scale_overrides_name_what_is_wrong(tmp_path):
    config = tmp_path / "configs" / "c.yaml"
    config.parent.mkdir()
    data = minimal(scales={"small": {"systems.0.params.layers": 3, "systems.4.params": {}, "nothing.here": 1}})
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_config(config, scale="small")
    assert sorted(caught.value.problems) == ["scales.small.nothing.here: no such entry in the config",
                                             "scales.small.systems.4.params: no such entry in the config"]
    with pytest.raises(ConfigError, match="no scale named 'large'"):
        load_config(config, scale="large")
    data["scales"]["small"] = {"systems.0.params.layers": 3}
    config.write_text(yaml.safe_dump(data))
    assert load_config(config, scale="small").systems[0].params["layers"] == 3
    assert load_config(config).systems[0].params["layers"] == 4


def test_missing_data_files_and_unbuildable_structures_are_config_errors(tmp_path):
    config = tmp_path / "configs" / "c.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump(minimal(train={"initial_models": ["data/none.pth"]})))
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.problems == [f"train.initial_models[0]: no such file or directory: {tmp_path}/data/none.pth"]
    bad = minimal()
    bad["systems"][0]["params"] = {"miller": [1, 1, 0], "size": [1, 1], "layers": 4}
    assert problems_of(bad)[0].startswith("systems[0].params: 'slab' cannot build this structure")


def test_explore_temperatures_need_a_trust_level():
    data = minimal(explore=[{"protocol": "nvt", "systems": ["slab"], "params": {"steps": 100},
                             "sweep": {"temperature": [300, 900]}}],
                   select={"trust_levels": [{"lo": 0.1, "hi": 0.3, "temperature_max": 500}]})
    assert problems_of(data) == ["explore[0]: no select.trust_levels entry covers system 'slab' at 900.0 K"]


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "executors").glob("*.yaml")), ids=lambda p: p.name)
def test_cluster_executor_examples_make_parsl_configs(path, tmp_path):
    from campaign.config import ExecutorSection
    from campaign.executors import make_parsl_config

    sections = {k: ExecutorSection(**v) for k, v in yaml.safe_load(path.read_text())["executors"].items()}
    parsl_config = make_parsl_config(sections, tmp_path)
    assert sorted(e.label for e in parsl_config.executors) == ["cpu", "gpu"]
    assert all(type(e.provider).__name__.lower().startswith(path.stem[:3]) for e in parsl_config.executors)


def test_shipped_configs_exist():
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


DEPOSITION = {"rate": 5, "falling_speed": 500, "duration": 1.0}


def test_sweep_value_error_names_the_path():
    data = minimal(production=[{"name": "deposition", "protocol": "deposition", "systems": ["slab"],
                                "params": DEPOSITION, "sweep": {"temperature": [200, 300, -5]}}])
    assert problems_of(data) == ["production[0].sweep.temperature[2]: must be > 0 (K), not -5"]


def test_mpi_ranks_is_a_whole_number():
    data = minimal(production=[{"name": "d", "protocol": "nvt", "systems": ["slab"],
                                "params": {"mpi_ranks": 1.5, "temperature": 300, "steps": 100}}])
    assert problems_of(data) == ["production[0].params.mpi_ranks: must be a whole number, not 1.5"]


def test_all_problems_reported_at_once():
    data = minimal(production=[{"name": "d", "protocol": "deposition", "systems": ["nope"],
                                "sweep": {"temperature": [0], "zip": [{"rate": [1, 5], "falling_speed": [500]}]}}])
    data["label"] = {"engine": "gpaw", "gpaw": {"cutoff_ev": -1}}
    data["campaign"]["nmae"] = "x"
    lines = problems_of(data)
    assert any(line.startswith("production[0].sweep.zip[0]: zipped lists must have equal lengths") for line in lines)
    assert any(line.startswith("campaign.nmae: unknown field (did you mean 'name'?)") for line in lines)
    assert any(line.startswith("label.gpaw.cutoff_ev:") for line in lines)
    assert "production[0].systems[0]: no system named 'nope' in 'systems'" in lines  # across sections too


def test_reference_errors():
    data = minimal(production=[{"name": "d", "protocol": "nvt", "systems": ["nope"], "executor": "tpu",
                                "params": {"temperature": 300, "steps": 100}}])
    lines = problems_of(data)
    assert "production[0].systems[0]: no system named 'nope' in 'systems'" in lines
    assert any(line.startswith("production[0].executor: no executor named 'tpu'") for line in lines)


def test_builder_parameters_checked():
    data = minimal()
    data["systems"][0]["params"] = {"layerz": 3}
    (line,) = problems_of(data)
    assert line.startswith("systems[0].params.layerz: 'slab' takes no parameter 'layerz'")


def test_unknown_builder():
    data = minimal()
    data["systems"][0]["builder"] = "fcc"
    (line,) = problems_of(data)
    assert line.startswith("systems[0].builder: unknown builder 'fcc'")


def test_two_systems_that_build_the_same_atoms():
    """At small sizes two shapes can select the same atoms: the comparison would be silently lost."""
    column = {"height_angstrom": 10, "substrate_size": [5, 5], "substrate_layers": 4, "width_angstrom": 8}
    data = minimal()
    data["systems"] = [{"name": "circular", "builder": "column_on_substrate", "params": {"shape": "circular", **column}},
                       {"name": "cuboid", "builder": "column_on_substrate",
                        "params": {"shape": "cuboid", "facet": "110", **column}}]
    assert problems_of(data) == ["systems[1]: 'cuboid' builds the same structure as 'circular' (at these parameters)"]
    data["systems"][1]["rattle_copies"] = 3  # the same base structure with other labels is a different system
    parse_config(data)


def test_trust_levels_ordered():
    lines = problems_of(minimal(select={"trust_levels": [{"lo": 0.3, "hi": 0.1}]}))
    assert lines == ["select.trust_levels[0]: lo (0.3) must be smaller than hi (0.1)"]


def test_yaml_syntax_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("campaign: {name: x\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "not valid YAML" in caught.value.problems[0]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_sweep_expansion_product_and_zip():
    sweep = {"temperature": [200, 300, 400], "zip": [{"rate": [0.5, 1, 5], "falling_speed": [500, 1000, 5000]}]}
    points = expand_sweep(sweep, replicas=2)
    assert len(points) == 3 * 3 * 2
    assert points[0].coordinates == {"temperature": 200, "rate": 0.5, "falling_speed": 500, "replica": 0}
    assert points[-1].coordinates == {"temperature": 400, "rate": 5, "falling_speed": 5000, "replica": 1}
    assert len({(p.point_id, p.replica) for p in points}) == len(points)
    assert points[0].point_id == points[1].point_id  # replicas of one point share its id
    assert [p.point_id for p in points] == [p.point_id for p in expand_sweep(sweep, replicas=2)]


def test_point_id_independent_of_order_and_of_other_points():
    assert point_id({"a": 1, "b": 2}) == point_id({"b": 2, "a": 1})
    small = {p.point_id for p in expand_sweep({"temperature": [200, 300]})}
    large = {p.point_id for p in expand_sweep({"temperature": [200, 300, 400]})}
    assert small < large


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "campaign.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_validate_ok():
    result = run_cli("validate", str(ROOT / "configs" / "quickstart.yaml"))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_cli_validate_broken_copy(tmp_path):
    data = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    data["systems"][1]["rattle_copies"] = -2
    data["train"]["ensemble_size"] = 0
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data))
    result = run_cli("validate", str(broken))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "systems[1].rattle_copies: must be >= 0, not -2" in result.stderr
    assert "train.ensemble_size: must be >= 1, not 0" in result.stderr


def test_system_weights_are_positive_and_name_labels_of_the_campaign():
    data = minimal(train={"system_weights": {"slab-000": 3, "slab-0*": 0},
                          "retrain": [{"steps": 10, "start_learning_rate": 1e-4, "system_weights": {"x": -1}}]})
    assert sorted(problems_of(data)) == [
        "train.retrain[0].system_weights.x: must be > 0, not -1",
        "train.system_weights.slab-0*: must be > 0, not 0"]
    data["train"] = {"system_weights": {"slab-000": 3, "slabb-*": 2},
                     "retrain": [{"steps": 10, "start_learning_rate": 1e-4, "system_weights": {}}]}
    config = parse_config(data)
    assert config.warnings() == ["train.system_weights: 'slabb-*' matches no label of this campaign (labels are "
                                 "<system>-<copy>, copy 000 the structure as built; picks "
                                 "iter<N>-e<k>-<system>-...)"]
    # a retraining's weights replace the section's, an empty mapping included
    assert config.train.schedule(0).system_weights == {"slab-000": 3, "slabb-*": 2}
    assert config.train.schedule(1).system_weights == {}
