import importlib
import sys

import pytest

from rulab.registry import Registry, UnknownNameError


def make():
    reg = Registry("widget")

    @reg.register("alpha")
    def alpha(size: int = 1, colour: str = "red"):
        return ("alpha", size, colour)

    @reg.register()
    class Beta:
        def __init__(self, k: int = 2):
            self.k = k

    return reg


def test_register_create_list():
    reg = make()
    assert reg.list() == ["Beta", "alpha"]
    assert reg.create("alpha", size=3) == ("alpha", 3, "red")
    assert reg.create("Beta", k=5).k == 5
    assert "alpha" in reg and "gamma" not in reg
    assert reg.list("alp") == ["alpha"]
    assert reg.get("alpha").registry_name == "alpha"


def test_unknown_name_lists_choices_and_suggests():
    reg = make()
    with pytest.raises(UnknownNameError) as err:
        reg.create("alpah")
    msg = str(err.value)
    assert "unknown widget 'alpah'" in msg and "did you mean 'alpha'" in msg and "Beta, alpha" in msg


def test_unknown_kwarg_names_valid_parameters():
    reg = make()
    with pytest.raises(TypeError, match="no parameter 'sise'; valid parameters: size, colour"):
        reg.create("alpha", sise=3)


def test_duplicate_registration_is_an_error_unless_overwrite():
    reg = make()
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha")(lambda: None)
    reg.register("alpha", overwrite=True)(lambda: "new")
    assert reg.create("alpha") == "new"


def test_builtin_registries_load_lazily():
    from rulab.registry import AUGMENTATIONS

    assert {"none", "cifar", "w2_basic"} <= set(AUGMENTATIONS.list())


def test_packages_are_discovered_module_by_module(tmp_path, monkeypatch):
    """A registry with ``packages`` imports every public module of the package on the first lookup: a new entry is a
    new module, named nowhere else. A module that reads the registry while the others are being imported sees them."""
    pkg = tmp_path / "widgets_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    reg_mod = tmp_path / "widgets_registry.py"
    reg_mod.write_text("from rulab.registry import Registry\nWIDGETS = Registry('widget', packages=('widgets_pkg',))\n")
    for name in ("alpha", "beta"):
        code = f"from widgets_registry import WIDGETS\n\n@WIDGETS.register('{name}')\ndef f():\n    return '{name}'\n"
        (pkg / f"{name}.py").write_text(code)
    # read at import time, before the modules after it in alphabetical order were imported
    (pkg / "aaa_index.py").write_text("from widgets_registry import WIDGETS\n\nSEEN = WIDGETS.list()\n")
    (pkg / "_private.py").write_text("raise RuntimeError('modules starting with _ are not imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        widgets = importlib.import_module("widgets_registry").WIDGETS
        assert widgets.list() == ["alpha", "beta"] and widgets.create("beta") == "beta"
        assert importlib.import_module("widgets_pkg.aaa_index").SEEN == ["alpha", "beta"]
        expected = ["widgets_pkg", "widgets_pkg.aaa_index", "widgets_pkg.alpha", "widgets_pkg.beta"]
        assert widgets.builtin_modules() == expected
        assert list(widgets.entries()) == ["alpha", "beta"]  # registration order
    finally:
        for mod in [m for m in sys.modules if m == "widgets_registry" or m.split(".")[0] == "widgets_pkg"]:
            del sys.modules[mod]
