import types

from tinyvgg import doctor


def test_wheel_names_follow_the_driver():
    assert doctor.cuda_wheel_for(12040) == "cupy-cuda12x"
    assert doctor.cuda_wheel_for(11080) == "cupy-cuda11x"
    assert doctor.cuda_wheel_for(10020) is None


def fake_cupy(runtime, driver):
    rt = types.SimpleNamespace(runtimeGetVersion=lambda: runtime, driverGetVersion=lambda: driver)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=rt))


def test_a_driver_older_than_the_wheel_gets_the_matching_wheel():
    lines = doctor._cuda_versions(fake_cupy(runtime=12090, driver=11080))
    assert lines[0] == "CUDA runtime (CuPy built for): 12.9" and lines[1] == "CUDA driver: 11.8"
    assert "pip install cupy-cuda11x" in lines[2]


def test_no_driver_says_install_one_or_use_numpy():
    lines = doctor._cuda_versions(fake_cupy(runtime=12090, driver=0))
    assert "install the NVIDIA driver" in lines[-1] and "--backend numpy" in lines[-1]


def test_matching_versions_report_no_problem():
    assert not any("problem" in line for line in doctor._cuda_versions(fake_cupy(12040, 12060)))


def test_a_newer_minor_version_of_the_same_major_is_no_problem():
    # seen on an H100: a 13.0 driver ran CuPy built for 13.2, every test passing (minor-version compatibility)
    lines = doctor._cuda_versions(fake_cupy(runtime=13020, driver=13000))
    assert not any("problem" in line for line in lines), lines
    assert not any("problem" in line for line in doctor._cuda_versions(fake_cupy(runtime=12090, driver=13000)))


def test_a_mismatch_names_the_installed_wheel_and_the_one_that_fits(monkeypatch):
    monkeypatch.setattr(doctor, "installed_cupy_wheel", lambda: "cupy-cuda13x")
    lines = doctor._cuda_versions(fake_cupy(runtime=13020, driver=12080))
    assert "driver supports CUDA 12.x but this CuPy was built for CUDA 13.x" in lines[2]
    assert "pip uninstall cupy-cuda13x && pip install cupy-cuda12x" in lines[2]
