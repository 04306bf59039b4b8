"""TcpSegment, TcpOptions and RateSample write their ``__init__`` out
(``@dataclass(init=False)``: compiled by mypyc, the generated one runs
interpreted, ~5x slower per object).  Each must equal the dataclass's own:
a reference dataclass built from the class's fields (same defaults and
factories) takes the same positional and keyword arguments and ends with
the same field values; factories give a new object each time (None for a factory field, which
its type does not allow, means the default)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ustack.tcp.congestion.base import CaState, RateSample
from ustack.wire.tcp import TcpOptions, TcpSegment

CLASSES = (TcpSegment, TcpOptions, RateSample)


def _reference(cls: type) -> Any:
    """The same fields as a plain (generated-__init__) dataclass."""
    spec: list[Any] = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            spec.append((f.name, Any, dataclasses.field(default=f.default)))
        elif f.default_factory is not dataclasses.MISSING:
            spec.append((f.name, Any, dataclasses.field(default_factory=f.default_factory)))
        else:
            spec.append((f.name, Any))
    return dataclasses.make_dataclass("Ref" + cls.__name__, spec)


def _values(obj: Any, cls: type) -> list[Any]:
    return [getattr(obj, f.name) for f in dataclasses.fields(cls)]


values = st.one_of(st.integers(-5, 70000), st.floats(allow_nan=False), st.booleans(),
                   st.none(), st.binary(max_size=8), st.sampled_from(list(CaState)),
                   st.just(TcpOptions(timestamp=(1, 2))), st.lists(st.tuples(
                       st.integers(0, 9), st.integers(0, 9)), max_size=2))


@pytest.mark.pure_python("passes values of any type: compiled classes check the declared "
                         "types at the call, the generated dataclass __init__ does not")
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_the_written_out_init_is_the_generated_one(cls: type, data: st.DataObject) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    n_pos = data.draw(st.integers(len(required), len(names)))
    # (a field with a factory takes None as "the default": an argument its
    # type does not allow, so never drawn here for those)
    factory = {f.name for f in dataclasses.fields(cls)
               if f.default_factory is not dataclasses.MISSING}

    def draw(name: str) -> Any:
        return data.draw(values.filter(lambda v: v is not None) if name in factory else values)

    args = [draw(names[i]) for i in range(n_pos)]
    kw_names = data.draw(st.lists(st.sampled_from(names[n_pos:]), unique=True)) \
        if n_pos < len(names) else []
    kwargs = {name: draw(name) for name in kw_names}
    ref = _reference(cls)
    assert _values(cls(*args, **kwargs), cls) == _values(ref(*args, **kwargs), ref)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_defaults_and_fresh_factories(cls: type) -> None:
    required = [0 for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    ref = _reference(cls)
    a, b = cls(*required), cls(*required)
    assert _values(a, cls) == _values(ref(*required), ref)
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(a, f.name) is not getattr(b, f.name), f.name
    assert a == b and repr(a) == repr(b)
    with pytest.raises(TypeError):
        cls(*required, **{"no_such_field": 1})
