"""The ledger: content-addressed ids and state bookkeeping."""

from campaign.ledger import Ledger, file_digest, task_id


def test_task_id_depends_on_content_not_path(tmp_path):
    a, b = tmp_path / "a.xyz", tmp_path / "b.xyz"
    a.write_text("1\n\nLi 0 0 0\n")
    b.write_text("1\n\nLi 0 0 0\n")
    assert task_id("label", {"x": 1}, [a]) == task_id("label", {"x": 1}, [b])
    b.write_text("1\n\nLi 0 0 1\n")
    assert task_id("label", {"x": 1}, [a]) != task_id("label", {"x": 1}, [b])
    assert task_id("label", {"x": 1}, [a]) != task_id("label", {"x": 2}, [a])
    assert task_id("label", {"x": 1}, [a], code_version="9") != task_id("label", {"x": 1}, [a])


def test_directory_digest_sees_every_file(tmp_path):
    (tmp_path / "d" / "set.000").mkdir(parents=True)
    (tmp_path / "d" / "set.000" / "energy.npy").write_bytes(b"1")
    before = file_digest(tmp_path / "d")
    (tmp_path / "d" / "set.000" / "force.npy").write_bytes(b"2")
    assert file_digest(tmp_path / "d") != before


def test_states_and_counts(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.register_many([("t1", "label", "label", "a", {"p": 1}), ("t2", "label", "label", "b", {"p": 2})])
        ledger.register_many([("t1", "label", "label", "a", {"p": 1})])  # idempotent
        ledger.mark_running("t1", "cpu")
        ledger.mark_done("t1", {"energy": -1.0})
        ledger.mark_running("t2", "cpu")
        ledger.mark_failed("t2", "SCF", transient=False)
        assert ledger.counts() == {"label": {"pending": 0, "running": 0, "done": 1, "failed": 1}}
        row = ledger.get("t1")
        assert row.outputs == {"energy": -1.0} and row.attempts == 1 and row.executor == "cpu"
    with Ledger(tmp_path / "ledger.sqlite") as reopened:
        assert reopened.get("t2").error == "SCF"


def test_failed_tasks_can_be_set_back_to_pending(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.register_many([("a", "label", "label", "a", {}), ("b", "label", "label", "b", {})])
        ledger.mark_running("a", "cpu")
        ledger.mark_failed("a", "SCF not converged", transient=False)
        assert ledger.reset_failed() == 1
        assert ledger.get("a").state == "pending" and ledger.get("b").state == "pending"
        ledger.save_iteration(0, {"accurate_ratio": 0.5})
        ledger.save_iteration(0, {"accurate_ratio": 0.7})
        assert ledger.iterations() == [{"accurate_ratio": 0.7}]


def test_a_stopped_driver_s_running_tasks_and_the_ones_a_config_no_longer_makes(tmp_path):
    """A killed driver's running tasks are not running: the next driver sets them back to
    pending. Pending tasks of a stage that its config no longer makes are forgotten; a task
    that ran (done or failed) never is, nor a pending one of another stage."""
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.register_many([(t, "explore", "explore-0", t, {}) for t in ("superseded", "kept", "ran", "broke")]
                             + [("label", "label", "label-0", "label", {})])
        for task in ("superseded", "kept", "ran", "broke"):
            ledger.mark_running(task, "gpu")
        ledger.mark_done("ran", {"status": "ok"})
        ledger.mark_failed("broke", "lammps: lost atoms", transient=False)
        assert ledger.reset_running() == 2

        def states() -> dict[str, str]:
            return {row.task_id: row.state for row in ledger.tasks()}

        assert states() == {"superseded": "pending", "kept": "pending", "ran": "done", "broke": "failed",
                            "label": "pending"}
        assert ledger.forget_pending({"explore-0"}, {"kept"}) == 1
        assert states() == {"kept": "pending", "ran": "done", "broke": "failed", "label": "pending"}
        assert ledger.get("broke").error == "lammps: lost atoms"
