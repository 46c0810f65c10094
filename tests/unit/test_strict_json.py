"""Strict JSON typing is explicit: the project's serializers use the fields of
`mission_control.strict_json`, its model serializers derive from its `ModelSerializer`,
and DRF's own classes are left as they are."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest
from django.http import QueryDict
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from mission_control import strict_json

ROOT = Path(__file__).resolve().parents[2]
APPS = ("mission_control", "audit", "registry", "orchestrator", "dashboard", "localnode")
HOME = ROOT / "mission_control" / "strict_json.py"
# DRF's classes that coerce another JSON type (and its fields built on them), and the
# model serializer that maps model fields to them.
COERCING = {
    "BooleanField",
    "CharField",
    "ChoiceField",
    "IntegerField",
    "FloatField",
    "EmailField",
    "RegexField",
    "SlugField",
    "URLField",
    "IPAddressField",
    "BigIntegerField",
    "FilePathField",
    "MultipleChoiceField",
    "HStoreField",
    "ModelSerializer",
    "HyperlinkedModelSerializer",
}
DRF_MODULES = {"rest_framework.serializers", "rest_framework.fields"}


def _drf_uses(path: Path) -> list[str]:
    """`module.Name` and `from ... import Name` of a COERCING name of DRF in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "rest_framework":
            aliases |= {
                a.asname or a.name for a in node.names if a.name in {"serializers", "fields"}
            }
        elif isinstance(node, ast.ImportFrom) and node.module in DRF_MODULES:
            found += [f"{node.lineno}: {a.name}" for a in node.names if a.name in COERCING]
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name in DRF_MODULES and a.asname}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in COERCING
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_project_declares_no_coercing_drf_field() -> None:
    uses = {
        str(path.relative_to(ROOT)): found
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if path != HOME and "migrations" not in path.parts
        if (found := _drf_uses(path))
    }
    assert uses == {}


def test_the_walker_sees_both_spellings(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text(
        "from rest_framework import serializers as s\n"
        "from rest_framework.fields import CharField\n"
        "class A(s.ModelSerializer):\n    n = s.IntegerField()\n    d = s.DateTimeField()\n"
    )
    assert sorted(_drf_uses(source)) == [
        "2: CharField",
        "3: s.ModelSerializer",
        "4: s.IntegerField",
    ]


def test_every_model_field_maps_to_a_strict_field_where_drf_would_coerce() -> None:
    bases = tuple(strict_json.STRICT_FIELDS)[:5]
    drf = serializers.ModelSerializer.serializer_field_mapping
    ours = strict_json.ModelSerializer.serializer_field_mapping
    assert set(ours) == set(drf)
    for model_field, field in drf.items():
        strict = ours[model_field]
        assert issubclass(strict, field)
        assert issubclass(strict, strict_json.StrictJSON) == issubclass(field, bases), model_field
    assert issubclass(strict_json.ModelSerializer.serializer_choice_field, strict_json.StrictJSON)


class Body(serializers.Serializer):
    flag = strict_json.BooleanField(required=False)
    name = strict_json.CharField(required=False)
    count = strict_json.IntegerField(required=False)
    ratio = strict_json.FloatField(required=False)
    kind = strict_json.ChoiceField(choices=["a", "b"], required=False)
    level = strict_json.ChoiceField(choices=[1, 2], required=False)
    site = strict_json.URLField(required=False)
    ids = serializers.ListField(child=strict_json.IntegerField(), required=False)


def _errors(data: Any) -> dict[str, Any]:
    body = Body(data=data)
    body.is_valid()
    return {k: [str(e) for e in v] for k, v in body.errors.items()}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("flag", 0, "boolean"),
        ("flag", "true", "boolean"),
        ("name", 0, "string"),
        ("count", "3", "integer"),
        ("count", True, "integer"),
        ("ratio", False, "number"),
        ("ratio", "0.5", "number"),
        ("kind", 1, "string"),
        ("level", "1", "integer"),
        ("site", 5, "string"),
    ],
)
def test_a_json_body_is_taken_at_its_json_types(field: str, value: Any, expected: str) -> None:
    assert _errors({field: value}) == {field: [f"Must be a JSON {expected}."]}


def test_list_items_too_and_right_types_pass() -> None:
    body = Body(data={"ids": [1, "2"]})
    assert not body.is_valid()
    assert body.errors == {"ids": {1: ["Must be a JSON integer."]}}
    good = {"flag": True, "name": "x", "count": 3, "ratio": 1, "kind": "a", "level": 2, "ids": [1]}
    assert _errors(good) == {}


def test_form_data_keeps_drf_coercion() -> None:
    form = QueryDict("flag=true&count=3&ratio=0.5&level=1")
    body = Body(data=form)
    assert body.is_valid(), body.errors
    assert body.validated_data == {"flag": True, "count": 3, "ratio": 0.5, "level": 1}


def test_drf_own_fields_are_left_as_they_are() -> None:
    class Plain(serializers.Serializer):
        count = serializers.IntegerField()
        name = serializers.CharField()

    plain = Plain(data={"count": "3", "name": 5})
    assert plain.is_valid(), plain.errors
    assert plain.validated_data == {"count": 3, "name": "5"}


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def test_project_serializers_take_json_at_its_types() -> None:
    """Every scalar field a project serializer builds (declared or from its model) is
    strict, and every model serializer derives from the strict base."""
    modules = ("orchestrator.serializers", "registry.serializers")
    for module in modules:
        importlib.import_module(module)

    def ours(cls: type) -> bool:
        return cls.__module__.split(".")[0] in APPS

    direct = [c for c in serializers.ModelSerializer.__subclasses__() if ours(c)]
    assert direct == [strict_json.ModelSerializer]
    coercing = tuple(strict_json.STRICT_FIELDS)[:5]
    built = [
        cls()
        for cls in _subclasses(serializers.Serializer)
        if cls.__module__ in modules
        and (_model(cls) or not issubclass(cls, serializers.ModelSerializer))
        and not issubclass(cls, PolymorphicProxySerializer)  # a schema-only wrapper
    ]
    loose = [
        f"{type(serializer).__name__}.{name}"
        for serializer in built
        for name, field in _scalar_fields(serializer)
        if isinstance(field, coercing) and not isinstance(field, strict_json.StrictJSON)
    ]
    assert len(built) > 40
    assert loose == []


def _model(cls: type) -> Any:
    """A model serializer's model (None for the abstract bases)."""
    return getattr(getattr(cls, "Meta", None), "model", None)


def _scalar_fields(serializer: Any) -> list[tuple[str, Any]]:
    """The fields of a serializer, list and dict children included, by path."""
    found = []
    for name, field in serializer.fields.items():
        found.append((name, field))
        if child := getattr(field, "child", None):
            found.append((f"{name}[]", child))
    return found
