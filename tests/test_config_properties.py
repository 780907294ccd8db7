"""Property-based tests of configs, overrides and run names (hypothesis).

* Any override text, and any value under any known key, ends in a valid config or a :class:`ConfigError` (a
  ``RulabError`` with one line): never another exception, never a config that fails later.
* A valid config survives its own round trip (dict, YAML) unchanged, with the same hash; two configs have the same
  hash exactly when :func:`rulab.config.config_diff` finds no differing key (what ``--resume`` relies on).
* A name :func:`rulab.checks.check_name` accepts is one path component inside the output directory; everything else
  is refused with one line.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rulab.checks import MAX_NAME_LENGTH, check_name, parse_seeds, run_path
from rulab.config import (
    RunCfg,
    apply_overrides,
    config_diff,
    config_hash,
    dump_yaml,
    fields_of,
    from_dict,
    to_dict,
    validate_values,
)
from rulab.errors import ConfigError, RulabError
from rulab.presets import load_config

PROPS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = fields_of(RunCfg)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.lists(st.integers(-3, 3), max_size=3),
    st.sampled_from(["[1, 2", "{a: 1}", ".inf", "-.nan", "1e400", "~", "'x'", "\x00", "\u2028"]),
)


def _one_line(err: BaseException) -> None:
    assert "\n" not in str(err) and str(err).strip(), repr(str(err))


@PROPS
@given(st.text(max_size=60))
def test_any_override_text_is_a_config_or_one_config_error(text):
    try:
        cfg = apply_overrides(RunCfg(), [text])
    except ConfigError as err:
        _one_line(err)
    else:
        assert isinstance(cfg, RunCfg)


@PROPS
@given(st.sampled_from(KEYS), scalars)
def test_any_value_under_any_key_validates_or_is_refused_in_one_line(key, value):
    """Through the full path (preset, overrides, registry checks): a valid config or one RulabError line."""
    text = (
        value
        if isinstance(value, str)
        else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    )
    assume(
        not key.startswith(("train.init_from", "data.root", "out_dir"))
    )  # paths: checked against the disk, covered elsewhere
    try:
        cfg = load_config("fmnist-plain", overrides=[f"{key}={text}"])
    except RulabError as err:
        _one_line(err)
    else:
        validate_values(cfg)  # what loaded is valid, and stays so


names = st.text(alphabet=st.characters(codec="utf-8"), max_size=MAX_NAME_LENGTH + 5)


@PROPS
@given(names)
def test_a_run_name_is_one_component_inside_out_or_refused(name):
    out = Path("runs") / "sub"
    try:
        check_name(name)
    except ConfigError as err:
        _one_line(err)
        return
    path = run_path(out, name)
    assert (
        path.parent == out
        and path.name == name
        and name not in (".", "..")
        and os.sep not in name
        and "\x00" not in name
    )
    assert name.isprintable() and 0 < len(name) <= MAX_NAME_LENGTH


valid = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**63 - 1),
        "name": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}", fullmatch=True),
        "optim": st.fixed_dictionaries(
            {"lr": st.floats(1e-3, 10.0), "momentum": st.floats(0.01, 1.0), "weight_decay": st.floats(0.0, 1e-2)}
        ),
        "train": st.fixed_dictionaries(
            {
                "epochs": st.integers(1, 10**6),
                "batch_size": st.sampled_from([1, 2, 32, 256]),
                "max_steps": st.integers(0, 10**9),
            }
        ),
        "data": st.fixed_dictionaries(
            {
                "augment": st.fixed_dictionaries({"hflip": st.floats(0.0, 1.0), "rotate_deg": st.floats(0.0, 180.0)}),
                "val_size": st.integers(0, 10**5),
            }
        ),
    }
)


@PROPS
@given(valid)
def test_a_valid_config_round_trips_through_dict_and_yaml(data):
    cfg = validate_values(from_dict(RunCfg, data))
    assert from_dict(RunCfg, to_dict(cfg)) == cfg
    again = from_dict(RunCfg, yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg and config_hash(again) == config_hash(cfg) and config_diff(cfg, again) == {}


@PROPS
@given(valid, valid)
def test_the_hash_differs_exactly_when_a_key_differs(a, b):
    ca, cb = from_dict(RunCfg, a), from_dict(RunCfg, b)
    diff = config_diff(ca, cb)
    assert (config_hash(ca) == config_hash(cb)) == (diff == {})
    assert "name" not in diff and ("seed" in diff) == (ca.seed != cb.seed)
    for key, (old, new) in diff.items():
        assert old != new, key


@PROPS
@given(st.text(max_size=40))
def test_seeds_text_is_a_list_of_seeds_or_one_error(text):
    try:
        seeds = parse_seeds(text)
    except ConfigError as err:
        _one_line(err)
    else:
        assert seeds and all(0 <= s < 2**63 for s in seeds) and len(set(seeds)) == len(seeds)
