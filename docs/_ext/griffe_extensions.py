"""griffe extensions for the API reference: attrs signatures, reStructuredText markup.

griffe reads the sources without importing them, and attrs writes
``__init__`` at import time: without `AttrsInit`, an ``@attrs.define`` or
``@attrs.frozen`` class shows no signature in the API reference and its
``Args:`` section names parameters griffe cannot find. As griffe's own
dataclasses extension does for ``@dataclass``, it builds the signature from
the class's fields: annotated attributes (or ``attrs.field()`` ones), those of
attrs base classes first, ``init=False`` fields left out, ``kw_only`` (of the
class or the field) honoured, a leading underscore dropped (``_x`` is
``x=``) unless the field gives an ``alias``, ``factory=f`` and
``default=attrs.Factory(f)`` shown as ``f()``.

The docstrings keep the house style's reStructuredText pieces (``..
versionadded::``, ``:class:`X```, a paragraph ending in ``::`` before an
indented example); `RstMarkup` renders them as Markdown in the reference: a
sentence, a code span, a colon. The sources are not changed.

Loaded by mkdocs.yml (mkdocstrings' python handler, ``extensions``).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import (
    Attribute,
    Class,
    Decorator,
    Expr,
    ExprCall,
    ExprKeyword,
    Extension,
    Function,
    Module,
    Object,
    Parameter,
    ParameterKind,
    Parameters,
)

_DECORATORS = frozenset(
    {
        f"{module}.{name}"
        for module in ("attrs", "attr")
        for name in ("define", "frozen", "mutable", "s", "attrs", "dataclass")
    }
)
_FIELDS = frozenset({"attrs.field", "attr.field", "attr.ib", "attr.attrib"})
_FACTORIES = frozenset({"attrs.Factory", "attr.Factory"})
# A field whose default comes from a ``@field.default`` method.
_COMPUTED = "..."


def _attrs_decorator(decorators: list[Decorator]) -> Expr | str | None:
    for decorator in decorators:
        value = decorator.value
        if isinstance(value, Expr) and value.canonical_path in _DECORATORS:
            return value
    return None


def _keywords(value: Expr | str | None) -> dict[str, Expr | str]:
    if not isinstance(value, ExprCall):
        return {}
    return {
        argument.name: argument.value
        for argument in value.arguments
        if isinstance(argument, ExprKeyword)
    }


def _field_call(attribute: Attribute) -> ExprCall | None:
    value = attribute.value
    if isinstance(value, ExprCall) and value.canonical_path in _FIELDS:
        return value
    return None


def _computed_defaults(class_: Class) -> set[str]:
    """Fields given a default by a method decorated ``@field.default``."""
    names = set()
    for member in class_.members.values():
        if member.is_alias or not member.is_function:
            continue
        for decorator in member.decorators:  # type: ignore[union-attr]
            path = str(decorator.value)
            field, _, hook = path.rpartition(".")
            if hook == "default" and field:
                names.add(field)
    return names


def _default(options: dict[str, Expr | str], attribute: Attribute, computed: bool) -> Any:
    if "factory" in options:
        return ExprCall(function=options["factory"], arguments=[])  # type: ignore[arg-type]
    default = options.get("default")
    if isinstance(default, ExprCall) and default.canonical_path in _FACTORIES:
        return ExprCall(function=default.arguments[0], arguments=[])  # type: ignore[arg-type]
    if default is not None:
        return default
    if computed:
        return _COMPUTED
    return None if _field_call(attribute) is not None else attribute.value


def _own_parameters(class_: Class) -> list[Parameter]:
    class_options = _keywords(_attrs_decorator(class_.decorators))
    if str(class_options.get("init", "True")) == "False":
        return []
    kw_only_class = str(class_options.get("kw_only", "False")) == "True"
    computed = _computed_defaults(class_)
    parameters = []
    for member in class_.members.values():
        if member.is_alias or not member.is_attribute:
            continue
        attribute: Attribute = member  # type: ignore[assignment]
        field = _field_call(attribute)
        if attribute.annotation is None and field is None:
            continue
        if "property" in attribute.labels or (
            "class-attribute" in attribute.labels and "instance-attribute" not in attribute.labels
        ):
            continue
        options = _keywords(field)
        if str(options.get("init", "True")) == "False":
            continue
        alias = options.get("alias")
        name = str(alias).strip("'\"") if alias is not None else attribute.name.lstrip("_")
        kw_only = kw_only_class or str(options.get("kw_only", "False")) == "True"
        parameters.append(
            Parameter(
                name,
                annotation=attribute.annotation,
                kind=ParameterKind.keyword_only if kw_only else ParameterKind.positional_or_keyword,
                default=_default(options, attribute, attribute.name in computed),
                docstring=attribute.docstring,
            )
        )
    return parameters


def _set_init(class_: Class) -> None:
    if _attrs_decorator(class_.decorators) is None or "__init__" in class_.members:
        return
    try:
        mro = class_.mro()
    except ValueError:
        mro = []
    inherited = [
        parameter
        for parent in reversed(mro)
        if _attrs_decorator(parent.decorators) is not None
        for parameter in _own_parameters(parent)
    ]
    by_name = {parameter.name: parameter for parameter in [*inherited, *_own_parameters(class_)]}
    ordered = sorted(by_name.values(), key=lambda p: p.kind is ParameterKind.keyword_only)
    class_.set_member(
        "__init__",
        Function(
            "__init__",
            lineno=class_.lineno,
            endlineno=class_.lineno,
            parent=class_,
            parameters=Parameters(
                Parameter("self", kind=ParameterKind.positional_or_keyword), *ordered
            ),
            returns="None",
        ),
    )


def _visit(owner: Module | Class, seen: set[str]) -> None:
    if owner.path in seen:
        return
    seen.add(owner.path)
    if isinstance(owner, Class):
        _set_init(owner)
    for member in owner.members.values():
        if not member.is_alias and (member.is_module or member.is_class):
            _visit(member, seen)  # type: ignore[arg-type]


class AttrsInit(Extension):
    """Adds the ``__init__`` that attrs generates to every attrs class of a package."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        """Visit every class of the loaded package."""
        _visit(pkg, set())


_VERSION_ADDED = re.compile(
    r"^(?P<indent>[ \t]*)\.\. versionadded:: *(?P<version>\S+)[ \t]*$", re.M
)
_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|exc|mod|data|obj|const):`~?(?P<name>[^`]+)`")
# "Example::" (then a blank line and an indented block): the colons of a literal block.
_LITERAL = re.compile(r"(?<=\S)::$", re.M)
_LITERAL_ALONE = re.compile(r"^[ \t]*::\n", re.M)


def markdown(docstring: str) -> str:
    """``docstring`` with its reStructuredText pieces written as Markdown."""
    text = _VERSION_ADDED.sub(r"\g<indent>*Added in version \g<version>.*", docstring)
    text = _ROLE.sub(lambda match: f"`{match['name']}`", text)
    text = _LITERAL_ALONE.sub("", text)
    return _LITERAL.sub(":", text)


def _rewrite(owner: Object, seen: set[str]) -> None:
    if owner.path in seen:
        return
    seen.add(owner.path)
    if owner.docstring is not None:
        owner.docstring.value = markdown(owner.docstring.value)
    for member in owner.members.values():
        if not member.is_alias:
            _rewrite(member, seen)  # type: ignore[arg-type]


class RstMarkup(Extension):
    """Renders the docstrings' reStructuredText pieces as Markdown (see `markdown`)."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        """Rewrite the docstring of every object of the loaded package."""
        _rewrite(pkg, set())
