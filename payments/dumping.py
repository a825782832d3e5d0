"""Response schemas whose `dump` of a model object runs one plain loop over the fields' own
converters, without marshmallow's per-field look-up machinery: the same dict, for a fraction
of the cost (every payment answer and every payment event dumps one)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, missing

# (output key, attribute to read or None for a field that reads none, the field, its name)
Step = tuple[str, str | None, fields.Field[Any], str]


def _plain(field: fields.Field[Any]) -> bool:
    """Whether marshmallow would fetch this field's value with a plain attribute look-up and
    hand it to the field's `_serialize` (nothing in between overridden)."""
    kind = type(field)
    return kind.serialize is fields.Field.serialize and kind.get_value is fields.Field.get_value


def _steps(schema: Schema) -> tuple[Step, ...] | None:
    """The schema's fields as steps, or None when marshmallow's own dump must run: hooks,
    a custom attribute getter, or a field that is not plain."""
    hooks: dict[str, Any] = schema._hooks
    if any(hooks.get(tag) for tag in ("pre_dump", "post_dump")):
        return None
    if type(schema).get_attribute is not Schema.get_attribute:
        return None
    steps: list[Step] = []
    for name, field in schema.dump_fields.items():
        attribute = field.attribute or name
        if not _plain(field) or "." in attribute:
            return None
        key = field.data_key if field.data_key is not None else name
        steps.append((key, attribute if field._CHECK_ATTRIBUTE else None, field, name))
    return tuple(steps)


class FastDump(Schema):
    """A schema whose `dump` of an object that is not a mapping (a model row) reads each
    attribute with `getattr` and calls the field's converter, as marshmallow's `Field.serialize`
    does after its look-up; anything else (a mapping, a list, a schema with hooks) goes to
    marshmallow's own dump. tests/unit/test_dumping.py holds the two equal."""

    _dump_steps: tuple[Step, ...] | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dump_steps = _steps(self)

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        many = self.many if many is None else bool(many)
        steps = self._dump_steps
        if steps is None or obj is None:
            return super().dump(obj, many=many)
        if many:
            return [self._dump_one(steps, item) for item in obj]
        return self._dump_one(steps, obj)

    def _dump_one(self, steps: tuple[Step, ...], obj: Any) -> dict[str, Any]:
        if hasattr(obj, "__getitem__"):  # marshmallow tries obj[key] first
            dumped: dict[str, Any] = super().dump(obj, many=False)
            return dumped
        out: dict[str, Any] = {}
        for key, attribute, field, name in steps:
            if attribute is None:
                out[key] = field._serialize(None, name, obj)
                continue
            value = getattr(obj, attribute, missing)
            if value is missing:
                value = field.serialize(name, obj, accessor=self.get_attribute)
                if value is not missing:
                    out[key] = value
                continue
            out[key] = field._serialize(value, name, obj)
        return out
