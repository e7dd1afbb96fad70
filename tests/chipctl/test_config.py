import pytest

from chipctl.config import load_config, parse_config, reference_rig_config
from chipctl.errors import ConfigError

GOOD = """
[instrument]
name = "bench"
telemetry_period = "5 s"

[devices.medium]
driver = "harvard"
link = "serial:///dev/ttyUSB0?baudrate=115200"
syringe = "bd plastipak 10 ml"

[devices.drug]
driver = "harvard"
link = "serial:///dev/ttyUSB1"
syringe = { inner_diameter = "4.78 mm", volume = "1 mL" }
"""


def test_reference_rig_is_simulated_and_has_the_two_pumps():
    cfg = reference_rig_config()
    assert cfg.simulated
    assert {"medium", "drug"} <= set(cfg.devices)


def test_parses_devices_and_syringes():
    cfg = parse_config(GOOD, "bench.toml")
    assert not cfg.simulated
    assert cfg.telemetry_period_s == 5.0
    assert cfg.devices["medium"].syringe.inner_diameter_mm == 14.5
    assert cfg.devices["drug"].syringe.volume_ul == 1000.0
    assert cfg.text == GOOD


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda t: t.replace('syringe = "bd plastipak 10 ml"', 'syringe = "BD Plastipac 10 mL"'),
            "devices.medium.syringe: unknown syringe",
        ),
        (lambda t: t.replace('"5 s"', '"5 uL"'), "instrument.telemetry_period"),
        (lambda t: t.replace("serial:///dev/ttyUSB1", "usb://x"), "devices.drug.link"),
        (
            lambda t: t.replace(
                'driver = "harvard"\nlink = "serial:///dev/ttyUSB1"',
                'link = "serial:///dev/ttyUSB1"',
            ),
            "devices.drug.driver: missing",
        ),
        (
            lambda t: t.replace("serial:///dev/ttyUSB1", "sim://harvard/x"),
            "mixes serial:// and sim://",
        ),
        (lambda t: t + "\n[extra]\n", "unknown table"),
        (lambda t: t.replace("[instrument]", "[instrument"), "not valid TOML"),
        (lambda t: t.replace('"4.78 mm"', '"4.78 mL"'), "devices.drug.syringe.inner_diameter"),
    ],
)
def test_errors_name_file_and_key(edit, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(edit(GOOD), "bench.toml")
    assert str(info.value).startswith("bench.toml")
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")
