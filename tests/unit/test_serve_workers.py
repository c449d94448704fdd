"""How many processes `intake serve` runs when not told, and who decided."""

from __future__ import annotations

import pytest

from service.settings import MAX_AUTO_WORKERS, Settings, SettingsError, auto_workers, usable_cpus


def test_the_default_is_one_worker_per_usable_cpu_within_bounds():
    assert [auto_workers(cpus) for cpus in (0, 1, 2, 4)] == [1, 1, 2, 4]
    assert auto_workers(64) == MAX_AUTO_WORKERS
    assert Settings().workers(None) == (auto_workers(usable_cpus()), "one per usable CPU")


def test_the_flag_wins_over_the_environment_which_wins_over_the_machine():
    from_env = Settings.from_env({"INTAKE_WORKERS": "3"})
    assert from_env.workers(None) == (3, "INTAKE_WORKERS")
    assert from_env.workers(5) == (5, "--workers")


@pytest.mark.parametrize("env, flag", [({}, 0), ({"INTAKE_WORKERS": "-1"}, None)])
def test_fewer_than_one_worker_is_refused_naming_the_setting(env, flag):
    with pytest.raises(SettingsError, match="--workers" if flag is not None else "INTAKE_WORKERS"):
        Settings.from_env(env).workers(flag)


def test_a_cgroup_cpu_quota_lowers_the_usable_cpus_and_no_quota_leaves_them(tmp_path):
    unlimited = usable_cpus(tmp_path / "absent")
    (quota := tmp_path / "cpu.max").write_text("150000 100000\n")
    assert usable_cpus(quota) == min(unlimited, 2)  # 1.5 CPUs of quota: a second worker still helps
    quota.write_text("max 100000\n")
    assert usable_cpus(quota) == unlimited
    quota.write_text("50000 100000\n")
    assert usable_cpus(quota) == 1
