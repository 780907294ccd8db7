import pytest
import yaml

from rulab.config import RunCfg, apply_overrides, config_hash, dump_yaml, from_dict, to_dict
from rulab.errors import ConfigError
from rulab.presets import load_config


def cfg(*overrides):
    return load_config("fmnist-plain", overrides=["eval.detectors=[]", *overrides])


def test_preset_and_overrides_are_typed():
    c = cfg("optim.lr=0.05", "train.epochs=2", "data.augment.hflip=0", "model.kwargs.width=8", "data.classes=[5,6]")
    assert c.optim.lr == 0.05 and isinstance(c.optim.lr, float)
    assert c.train.epochs == 2 and c.data.augment.hflip == 0.0
    assert c.model.kwargs == {"width": 8} and c.data.classes == (5, 6)
    assert c.preset == "fmnist-plain" and c.name == "fmnist-plain"


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "optim.lrr=0.1",
            "unknown config key 'optim.lrr' (did you mean 'optim.lr'?); valid keys under 'optim': name, lr,",
        ),
        ("optimizer.lr=0.1", "unknown config key 'optimizer' (did you mean 'optim'?)"),
        ("optim.lr=abc", "config key 'optim.lr' must be a number, got 'abc'"),
        ("optim.lr=-0.1", "config key 'optim.lr' must be > 0, got -0.1"),
        ("train.batch_size=0", "config key 'train.batch_size' must be at least 1, got 0"),
        ("train.epochs=2.5", "config key 'train.epochs' must be an integer, got 2.5"),
        ("train.channels_last=maybe", "config key 'train.channels_last' must be true or false, got 'maybe'"),
        ("model.name=resnet9", "config key 'model.name' has unknown value 'resnet9' (did you mean 'resnet"),
        (
            "model.kwargs.widht=8",
            "config key 'model.kwargs.widht' is not a parameter of model 'fastcnn'; valid parameters:",
        ),
        ("model.kwargs.width=wide", "config key 'model.kwargs.width' must be an integer, got 'wide'"),
        (
            "optim.schedule=linear",
            "config key 'optim.schedule' has unknown value 'linear'; valid choices: cosine, step, onecycle, constant",
        ),
        ("data.augment.hflip=1.5", "config key 'data.augment.hflip' is a probability and must lie in [0, 1], got 1.5"),
        ("data.dataset=fmnist", "config key 'data.dataset' has unknown value 'fmnist'"),
        ("train.reset_head=true", "config key 'train.reset_head' needs train.init_from"),
        (
            "train.init_from=/nonexistent/run",
            "config key 'train.init_from' points to /nonexistent/run, which does not exist",
        ),
        ("device=tpu", "config key 'device' has unknown value 'tpu'"),
        ("eval.shift=nope", "config key 'eval.shift' has unknown value 'nope'"),
        ("optim.milestones=[0.9,0.5]", "config key 'optim.milestones' must be increasing fractions in (0, 1)"),
        ("lr", "override 'lr' must look like key=value"),
    ],
)
def test_bad_overrides_give_one_clear_line(override, message):
    with pytest.raises(ConfigError) as err:
        cfg(override)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_unknown_preset_lists_choices():
    with pytest.raises(
        ConfigError, match="unknown preset 'fmnist-plian' \\(did you mean 'fmnist-plain'\\?\\); valid choices:"
    ):
        load_config("fmnist-plian")


def test_yaml_file_with_preset_and_nested_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("preset: fmnist-plain\noptim:\n  lr: 0.02\ntrain:\n  epochs: 1\neval:\n  detectors: []\n")
    c = load_config(path=p, overrides=["train.epochs=3"])
    assert c.optim.lr == 0.02 and c.train.epochs == 3 and c.preset == "fmnist-plain"


@pytest.mark.parametrize(
    "text, message",
    [
        ("optim: [1, 2\n", "is not valid YAML at line"),
        ("- a\n- b\n", "must hold a mapping"),
        ("optim:\n  lrr: 1\n", "unknown config key 'optim.lrr'"),
        ("!!python/object/apply:os.system ['echo hacked']\n", "is not valid YAML"),
    ],
)
def test_bad_yaml_files(tmp_path, text, message):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path=p)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(path=tmp_path / "nope.yaml")


def test_roundtrip_and_hash():
    c = cfg("optim.lr=0.05")
    again = from_dict(RunCfg, yaml.safe_load(dump_yaml(c)))
    assert again == c
    assert config_hash(c) == config_hash(apply_overrides(c, ["name=other", "out_dir=/tmp"]))
    assert config_hash(c) != config_hash(apply_overrides(c, ["optim.lr=0.06"]))
    assert to_dict(c)["optim"]["lr"] == 0.05


def test_keys_added_after_0_1_keep_old_hashes():
    """A key marked ``hash_omit_default`` does not enter the hash at its default: run ids of existing runs stay."""
    c = cfg()
    # the hash of fmnist-plain as rulab 0.1 computed it (sha256 of the JSON of every key but name/out_dir/device)
    import hashlib
    import json

    d = to_dict(c)
    for k in ("name", "out_dir", "device"):
        d.pop(k)
    for section, keys in {
        "train": ("accum_steps", "drop_last", "head_init", "keep_best"),
        "data": ("kwargs",),
        "model": ("stats",),
        "eval": ("adv_step_size", "adv_restarts", "farconf_tests", "adv_noise_steps", "bootstrap", "mc_dropout"),
    }.items():
        for k in keys:
            d[section].pop(k)
    d["data"]["augment"].pop("rotate_interp")
    assert config_hash(c) == hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
    for key in (
        "train.drop_last=false",
        "train.keep_best=val_acc",
        "eval.adv_restarts=2",
        "data.augment.rotate_interp=nearest",
    ):
        assert config_hash(apply_overrides(c, [key])) != config_hash(c), key
    assert config_hash(apply_overrides(c, ["train.accum_steps=1"])) == config_hash(c)
    assert config_hash(apply_overrides(c, ["train.accum_steps=2"])) != config_hash(c)
    assert config_hash(apply_overrides(c, ["eval.bootstrap=1000"])) == config_hash(c)
    assert config_hash(apply_overrides(c, ["eval.bootstrap=0"])) != config_hash(c)


@pytest.mark.parametrize("value", ["0", "3", "-1"])
def test_accum_steps_must_divide_the_batch(value):
    with pytest.raises(ConfigError, match="train.accum_steps"):
        cfg("train.batch_size=64", f"train.accum_steps={value}")
