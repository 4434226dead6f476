"""numpydoc validation of every public docstring (the doctests run via --doctest-modules)."""

import inspect

import pytest

import autopoly
import autopoly.plotting

validate = pytest.importorskip("numpydoc.validate").validate

# Checks not enforced anywhere, and why.
IGNORED = {
    "ES01": "an extended summary is optional: many one-line summaries say all there is",
    "SA01": "See Also where there is something to see, not on every method",
    "RT02": "returned values are named (`self : TorchPolyRegressor`), sklearn's convention",
}
# Methods are shown in use by their class's Examples section, as in scikit-learn.
IGNORED_FOR_METHODS = {"EX01": "the class's Examples section covers its methods"}

# Failures found here in files owned elsewhere, with the fix asked for. Strict: once fixed, the
# entry must go.
PENDING = {}


def _own_functions(cls):
    """Public methods defined by autopoly on ``cls`` or its autopoly mixins (not sklearn's)."""
    seen = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("autopoly"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            function = (
                member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
            )
            if inspect.isfunction(function) and function.__module__.startswith("autopoly"):
                seen.add(name)
                yield name


def public_names():
    """``{qualified name: is a method}`` for every public class, function and method."""
    names = {}
    for module in (autopoly, autopoly.plotting):
        for name in module.__all__:
            obj = getattr(module, name)
            if not callable(obj):
                continue
            qualified = f"{module.__name__}.{name}"
            names[qualified] = False
            if inspect.isclass(obj):
                names.update({f"{qualified}.{method}": True for method in _own_functions(obj)})
    # The console entry point (`autopoly = "autopoly.__main__:main"`).
    names["autopoly.__main__.main"] = False
    return names


def _params():
    params = []
    for name, is_method in public_names().items():
        marks = [pytest.mark.xfail(reason=PENDING[name], strict=True)] if name in PENDING else []
        params.append(pytest.param(name, is_method, marks=marks, id=name))
    return params


def test_public_api_is_all_checked():
    names = public_names()
    assert names["autopoly.TorchPolyRegressor.fit"] is True
    assert names["autopoly.TorchPolyRegressor.covariance_matrix"] is True  # from the mixin
    assert names["autopoly.plotting.LossCurveDisplay.from_estimator"] is True
    assert names["autopoly.plotting.LossCurveDisplay"] is False
    assert not any(name.endswith("_request") for name in names)
    assert set(PENDING) <= set(names), "a PENDING entry names nothing public"


@pytest.mark.parametrize("name, is_method", _params())
def test_docstring_is_valid_numpydoc(name, is_method):
    ignored = IGNORED.keys() | (IGNORED_FOR_METHODS.keys() if is_method else set())
    errors = [
        f"{code}: {message}" for code, message in validate(name)["errors"] if code not in ignored
    ]
    assert not errors, f"{name}:\n" + "\n".join(errors)
