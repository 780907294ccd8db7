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
