import pytest

from edgecam.cli import build_parser
from edgecam.runtime.errors import EdgecamError
from edgecam.train.config import TrainConfig, load_config


def test_yaml_then_flags(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("model: ecnet_m\nepochs: 7\naugment:\n  flip: 0.0\n  rotate: 3\nlr: 0.01\n")
    cfg = load_config(cfg_file, {"epochs": 2, "lr": None})
    assert (cfg.model, cfg.epochs, cfg.lr) == ("ecnet_m", 2, 0.01)
    assert cfg.augment.flip == 0.0 and cfg.augment.rotate == 3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("epochs: [1\n", "invalid YAML"),
        ("- a list\n", "mapping"),
        ("no_such_option: 1\n", "unknown training option"),
        ("optimizer: lion\n", "optimizer"),
        ("dropout: 1.5\n", "dropout"),
        ("augment:\n  nope: 1\n", "nope"),
    ],
)
def test_bad_config_files_name_the_file(tmp_path, text, match):
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(text)
    with pytest.raises(EdgecamError, match=match) as info:
        load_config(cfg_file, {})
    assert "bad.yaml" in str(info.value) or match == "nope"


def test_missing_config_file():
    with pytest.raises(EdgecamError, match="not found"):
        load_config("/nonexistent/cfg.yaml", {})


def test_every_train_flag_is_a_config_key():
    """The YAML keys and the command-line flags have the same names (--config and --resume name a file or a run
    folder to read the keys from, so they are flags only)."""
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]  # noqa: SLF001
    keys = set(TrainConfig.__dataclass_fields__)
    flag_only = ("help", "json", "config", "resume", "no_batchnorm", "no_augment")
    dests = {a.dest for a in train._actions if a.dest not in flag_only}
    assert dests <= keys, dests - keys
