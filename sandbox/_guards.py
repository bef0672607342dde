"""Runtime guards: the functions RestrictedPython's rewritten code calls at every access.

RestrictedPython (RP) rewrites plugin source so that ``a.b`` becomes ``_getattr_(a, "b")``,
``a[b]`` becomes ``_getitem_(a, b)``, ``a.b = c`` becomes ``_write_(a).b = c``, ``for`` loops
call ``_getiter_``, ``x += y`` calls ``_inplacevar_``, ``class`` statements pass
``metaclass=__metaclass__``, and so on. RP supplies only thin or permissive defaults; these
are our own implementations. The rules they enforce, and the escape each one closes
(numbers refer to docs/escape-corpus.md):

* Names are checked with ``type(name) is str``, never by calling methods on them: a ``str``
  subclass with a lying ``startswith`` defeated RP's own guard before 7.2 (019).
* ``_``-names, frame/code/generator internals (CVE-2023-37271, 023-028) and ``format``/
  ``format_map`` (CVE-2023-41039, 030-033) are refused for every object, whatever its type:
  a ``str`` instance, ``str`` itself, a subclass, an unbound method - it does not matter.
* Some *public* attributes unwrap hidden objects: ``partial.func``, ``property.fget``,
  ``AttributeError.obj`` (CVE-2024-47532), ``type.mro()``, ``string.Formatter.get_field``
  (CVE-2026-76825). They are refused by the type of the object that carries them.
* Unbound methods of host classes are refused by the value read (``Counter.update``,
  ``ChainMap.clear``, ``dict.update`` through ``typing.Dict``...): applied to an object of
  the plugin's choosing they write past ``_write_`` or skip a subclass's own methods.
* Missing attributes raise a *fresh* ``AttributeError``: the original may carry ``.obj``.
* Writes are allowed only to the items of plain containers and the attributes of instances
  of classes the plugin defined, so shared module state cannot be poisoned (070), host
  objects cannot be rewired (080) and no container's method can be replaced by plugin code.
* CPython memory bugs that plain syntax reaches (see ``_interpreters.py``): plugin classes
  define no special methods but ``__init__``/``__contains__`` (``PLUGIN_DUNDERS``), slice
  assignments consume their value before the list sees it (``_SliceWriter``), and text made
  from objects carries no heap addresses (``scrub_addresses``).

None of this is the security boundary on its own: the process layer (seccomp, rlimits, an
empty worker) assumes the interpreter may be compromised anyway. The guards make the
language layer *deterministic*: every refused action raises ``SandboxViolation`` with a
message that says what was refused.
"""

from __future__ import annotations

import abc
import collections
import functools
import operator
import re
import string
import types
import unicodedata
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, NoReturn, cast

from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from stdlib_shims import Facade, facade_name

from . import _print
from ._errors import SandboxViolation

# --------------------------------------------------------------------------------------
# Plugin-defined classes and modules
# --------------------------------------------------------------------------------------


class PluginClass(type):
    """Metaclass of every class created by sandboxed code (via ``plugin_metaclass``).

    It adds no behaviour. It is a *mark*: ``type(type(obj)) is PluginClass`` tells the
    guards that ``obj`` is an instance of a class the plugin wrote itself, which may be
    modified (``self.x = 1``) and may have methods called ``format`` or ``mro``.
    """


class PluginModule(types.ModuleType):
    """A module of the plugin bundle, as seen by other plugin modules and by the host.

    Its ``__dict__`` is the module's globals. Its ``__name__`` is ``"<plugin>.<name>"``:
    never the name of a real package, because ``from m import x`` falls back to
    ``sys.modules[m.__name__ + ".x"]`` when ``x`` is missing (007) and because pickle and
    other host code resolve classes by ``__module__``.
    """

    def __setattr__(self, name: str, value: object) -> NoReturn:
        # Plugin code cannot reach this (``_write_`` refuses modules first); host code that
        # wants to change a plugin module must mean it and write to __dict__.
        raise SandboxViolation(f"Modifying {_describe(self)} is not allowed")

    def __delattr__(self, name: str) -> NoReturn:
        raise SandboxViolation(f"Modifying {_describe(self)} is not allowed")

    def __repr__(self) -> str:
        return f"<plugin module {plugin_module_name(self)!r}>"


PLUGIN_NAME_PREFIX = "<plugin>."


def plugin_module_name(module: PluginModule) -> str:
    """The bundle-relative name of a plugin module (``"lib.util"``)."""
    name = module.__dict__.get("__name__", "")
    return name[len(PLUGIN_NAME_PREFIX) :] if isinstance(name, str) else ""


def is_plugin_instance(obj: object) -> bool:
    """True if ``obj`` is an instance of a class defined by sandboxed code."""
    return type(type(obj)) is PluginClass


# --------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------


def _quote(name: str) -> str:
    """Quote a (possibly hostile) name for an error message: short and on one line."""
    if name.isidentifier() and len(name) <= 80:
        return f'"{name}"'
    return repr(name[:80]) + ("..." if len(name) > 80 else "")


def _describe(obj: object) -> str:
    """Say what kind of object ``obj`` is, without calling any of its methods."""
    if isinstance(obj, Facade):
        return f'the sandboxed module "{facade_name(obj)}"'
    if type(obj) is PluginModule:
        return f'the plugin module "{plugin_module_name(obj)}"'
    if isinstance(obj, types.ModuleType):
        return "a module"
    if isinstance(obj, type):
        return f'the class "{obj.__name__}"'
    return f'a "{type(obj).__name__}" object'


def _is_private(name: str) -> bool:
    # The parser folds identifiers to NFKC ("＿＿class＿＿" is "__class__" in the AST), so
    # a name chosen at run time is judged by its folded form too.
    if name.isascii():
        return name.startswith("_")
    return name.startswith("_") or unicodedata.normalize("NFKC", name).startswith("_")


# --------------------------------------------------------------------------------------
# Heap addresses
# --------------------------------------------------------------------------------------

# CPython's default representations carry the object's address: "<function f at 0x7f..>",
# "<built-in method append of list object at 0x..>", "<map object at 0x..>". An address is
# the first step of every memory-corruption exploit (where to forge an object, what to
# overwrite), which is why id() and hash() are refused. Plugin classes get an address-free
# __repr__ (plugin_metaclass); the types of functions, generators and host objects cannot be
# changed, so every place where sandboxed code turns an object into text removes them:
# repr/ascii/str/format, f-strings, "%" formatting, print, and exception arguments.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_ADDRESS_BYTES = re.compile(rb" at 0x[0-9a-fA-F]+")
# Values whose text never holds an address: their text is returned untouched (a string
# that happens to contain " at 0x1f" stays as it is).
PRIMITIVE_TYPES = frozenset({str, int, float, bool, complex, bytes, type(None)})


def scrub_text(text: str) -> str:
    """``text`` without heap addresses."""
    return _ADDRESS.sub("", text) if "0x" in text else text


def scrub_addresses(text: Any) -> Any:
    """``text`` without heap addresses (``str`` or ``bytes``; anything else unchanged)."""
    kind = type(text)
    if kind is str:
        return _ADDRESS.sub("", text) if "0x" in text else text
    if kind is bytes:
        return _ADDRESS_BYTES.sub(b"", text) if b"0x" in text else text
    return text


def text_of(obj: object) -> str:
    """``str(obj)`` for sandboxed code: without heap addresses."""
    text = str(obj)
    return text if type(obj) in PRIMITIVE_TYPES else scrub_text(text)


def format_value(value: object, conversion: int, spec: str = "") -> str:
    """An f-string replacement field (``f"{value!r:>10}"``), without heap addresses.

    The compiler rewrites every ``{...}`` of an f-string to a call of this function;
    ``conversion`` is the AST's (-1 none, 115 ``!s``, 114 ``!r``, 97 ``!a``).
    """
    if conversion == -1 and type(value) in PRIMITIVE_TYPES:
        return format(value, spec)  # the common case: a number or string, nothing to remove
    if conversion == 115:
        value = str(value)
    elif conversion == 114:
        value = repr(value)
    elif conversion == 97:
        value = ascii(value)
    return scrub_text(format(value, spec))


def guarded_mod(left: Any, right: Any) -> Any:
    """``left % right``: "%" formatting of str and bytes without heap addresses."""
    result = left % right
    kind = type(result)
    if (kind is str or kind is bytes) and type(right) not in PRIMITIVE_TYPES:
        # Only text built from non-primitive values can hold addresses; "%d" % 5 and
        # int % int are left alone.
        return scrub_addresses(result)
    return result


# --------------------------------------------------------------------------------------
# _getattr_ and friends
# --------------------------------------------------------------------------------------

# Types whose every attribute is off limits: they are internals (frames, code, cells) or
# wrappers whose public attributes hand back what they wrap.
_OPAQUE_TYPES: tuple[tuple[type, str], ...] = (
    (types.FrameType, "frame"),
    (types.CodeType, "code"),
    (types.TracebackType, "traceback"),
    (types.CellType, "cell"),
    (types.ModuleType, "module"),  # PluginModule is an own namespace, never judged here
    (functools.partial, "functools.partial"),  # .func/.args/.keywords (022)
    (functools.partialmethod, "functools.partialmethod"),
    (property, "property"),  # .fget/.fset/.fdel
    (classmethod, "classmethod"),
    (staticmethod, "staticmethod"),
    (string.Formatter, "string.Formatter"),  # get_field walks attributes in Python
    (string.Template, "string.Template"),
    (operator.attrgetter, "operator.attrgetter"),  # resolve names outside every guard
    (operator.methodcaller, "operator.methodcaller"),
    (operator.itemgetter, "operator.itemgetter"),
    (weakref.ref, "weakref"),
    (types.GetSetDescriptorType, "descriptor"),
    (types.MemberDescriptorType, "descriptor"),
    (types.WrapperDescriptorType, "descriptor"),
    (types.MethodDescriptorType, "descriptor"),
    (types.ClassMethodDescriptorType, "descriptor"),
    (types.MethodWrapperType, "method-wrapper"),
)
_OPAQUE_BASES = tuple(base for base, _ in _OPAQUE_TYPES)

_ABC_REGISTER = abc.ABCMeta.register
_MethodType = types.MethodType

# Unbound methods of host classes (red-team finding 3). A Python function read from a host
# class takes *any* first argument: collections.Counter.update(x, data) does x[k] = v on
# whatever x is, past _write_; random.Random.setstate(x, state) sets x.gauss_next;
# typing.Generator.close(x) threw GeneratorExit into x, handing plugins that class. A C
# method descriptor checks the type of its first argument, so str.lower & co. are harmless
# (and `key=str.lower` is common), but on mutable containers it skips what a subclass
# overrides: dict.update(d, ...) writes into a read-only dict subclass all the same. Bound
# methods stay available: x.update(...) on an object the plugin can reach is that object's
# own behaviour.
_UNBOUND_KINDS = frozenset(
    {types.FunctionType, types.MethodDescriptorType, types.WrapperDescriptorType}
)
_MUTABLE_CONTAINERS = (dict, list, set, bytearray, collections.deque)

# Generators, coroutines and async generators: only the public protocol methods. Their other
# attributes (gi_frame, gi_code, gi_yieldfrom, cr_await...) lead to frames (CVE-2023-37271).
_GENERATOR_TYPES = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_GENERATOR_METHODS = frozenset({"send", "throw", "close"})

# Frame-bearing names from RP's INSPECT_ATTRIBUTES (refused on any object, as RP refuses them
# at compile time) and the prefixes of each family, refused on host objects in case a future
# CPython adds a member (these families have grown with almost every release).
_INTERNAL_NAMES = INSPECT_ATTRIBUTES | frozenset(
    {
        "f_lineno",
        "f_lasti",
        "tb_lasti",
        "tb_lineno",
        "gi_running",
        "gi_suspended",
        "cr_running",
        "ag_running",
    }
)
_INTERNAL_PREFIXES = ("f_", "co_", "gi_", "cr_", "ag_", "tb_")


def _deny_attribute(name: str, reason: str) -> NoReturn:
    raise SandboxViolation(f"Access to attribute {_quote(name)} is not allowed ({reason})")


def check_attribute_name(name: object) -> str:
    """Validate an attribute name chosen by sandboxed code; return it as a plain ``str``."""
    if type(name) is not str:
        # Exact type: a str subclass could lie about startswith/==/hash (019).
        raise SandboxViolation(f"Attribute names must be str, not {type(name).__name__!r}")
    if _is_private(name):
        _deny_attribute(name, 'names starting with "_" are private')
    return name


class _KindPolicy(NamedTuple):
    """What ``_getattr_`` needs to know about a type; computed once per type."""

    plugin_instance: bool  # an instance of a plugin-defined class
    own_namespace: (
        bool  # names chosen by the plugin (instances, modules) or curated by us (facades)
    )
    opaque: str | None  # label if every attribute is off limits
    generator: bool
    exception: bool
    formatter_class: bool  # instances are classes (may be string.Formatter subclasses)
    special: bool  # any of the type-specific rules may apply


# Both caches are bounded: names come from plugin code (getattr with run-time strings) and
# plugin classes are created at run time; neither may grow without limit or pin objects.
_CACHE_LIMIT = 4096
_KIND_POLICIES: dict[type, _KindPolicy] = {}
_NAME_FLAGS: dict[str, int] = {}

_PRIVATE, _INTERNAL, _INTERNAL_PREFIX, _FORMAT, _MRO, _EXCEPTION_LINK = 1, 2, 4, 8, 16, 32


def _kind_policy(kind: type) -> _KindPolicy:
    plugin_instance = type(kind) is PluginClass
    own_namespace = plugin_instance or kind is PluginModule or issubclass(kind, Facade)
    opaque = None
    if not own_namespace and issubclass(kind, _OPAQUE_BASES):
        opaque = next(label for base, label in _OPAQUE_TYPES if issubclass(kind, base))
    generator = not own_namespace and issubclass(kind, _GENERATOR_TYPES)
    exception = issubclass(kind, BaseException)
    formatter_class = not own_namespace and issubclass(kind, type)
    policy = _KindPolicy(
        plugin_instance=plugin_instance,
        own_namespace=own_namespace,
        opaque=opaque,
        generator=generator,
        exception=exception,
        formatter_class=formatter_class,
        special=opaque is not None or generator or exception or formatter_class,
    )
    if len(_KIND_POLICIES) >= _CACHE_LIMIT:
        _KIND_POLICIES.clear()
    _KIND_POLICIES[kind] = policy
    return policy


def _name_flags(name: str) -> int:
    flags = 0
    if _is_private(name):
        flags |= _PRIVATE
    if name in _INTERNAL_NAMES:
        flags |= _INTERNAL
    if name.startswith(_INTERNAL_PREFIXES):
        flags |= _INTERNAL_PREFIX
    if name in ("format", "format_map"):
        flags |= _FORMAT
    if name == "mro":
        flags |= _MRO
    if name in ("obj", "path"):
        flags |= _EXCEPTION_LINK
    if len(_NAME_FLAGS) >= _CACHE_LIMIT:
        _NAME_FLAGS.clear()
    _NAME_FLAGS[name] = flags
    return flags


def _check_special(obj: object, name: str, flags: int, policy: _KindPolicy) -> None:
    """The rules that depend on the name's flags or on the object's type (slow path)."""
    if flags & _INTERNAL or (flags & _INTERNAL_PREFIX and not policy.own_namespace):
        _deny_attribute(name, "frame, code and generator internals are off limits")
    if flags & _FORMAT and not policy.own_namespace:
        # str.format resolves "{0.__class__.__init__.__globals__}" in C, past every guard.
        # Refused on every object, not only str instances: the str class, unbound methods,
        # subclasses all lead to the same C code, and nothing else reachable needs it.
        _deny_attribute(name, "format strings can reach private attributes; use f-strings or %")
    if flags & _MRO and not policy.plugin_instance:
        # type.mro() lists every base up to object (018).
        _deny_attribute(name, "class internals are off limits")
    if policy.opaque is not None:
        _deny_attribute(name, f"attributes of {policy.opaque} objects are off limits")
    if policy.generator and name not in _GENERATOR_METHODS:
        _deny_attribute(name, "generator internals are off limits")
    if policy.formatter_class and issubclass(obj, string.Formatter):  # type: ignore[arg-type]
        _deny_attribute(name, "attributes of string.Formatter are off limits")
    if (
        policy.exception
        and flags & _EXCEPTION_LINK
        and (name == "obj" or not policy.plugin_instance)
    ):
        # AttributeError.obj is the object whose lookup failed: for a delegating proxy, the
        # hidden target (054). CPython sets it on plugin-defined AttributeError subclasses
        # too, so it is refused for every exception. ImportError.path is a host file path.
        _deny_attribute(name, "exceptions do not expose the objects they refer to")


def guarded_getattr(obj: object, name: object) -> Any:
    """``_getattr_``: every ``obj.name`` read in sandboxed code, and ``getattr()``."""
    if type(name) is not str:
        check_attribute_name(name)  # raises: a str subclass could lie to every check (019)
    attr = cast(str, name)
    flags = _NAME_FLAGS.get(attr)
    if flags is None:
        flags = _name_flags(attr)
    if flags & _PRIVATE:
        _deny_attribute(attr, 'names starting with "_" are private')
    kind = type(obj)
    policy = _KIND_POLICIES.get(kind) or _kind_policy(kind)
    # Fast path: an ordinary name on an ordinary object needs no further rule.
    if flags or policy.special:
        _check_special(obj, attr, flags, policy)

    try:
        value = getattr(obj, attr)
    except AttributeError:
        pass
    else:
        # Checked on the *result* because typing aliases forward unknown attributes to their
        # origin class: typing.Mapping.register is collections.abc.Mapping.register.
        value_kind = type(value)
        if value_kind is _MethodType:
            if value.__func__ is _ABC_REGISTER:
                # Registering a virtual subclass changes isinstance(x, Mapping) & co. for
                # every caller in the process, including host code that validates plugin
                # values.
                _deny_attribute(
                    attr, "registering virtual subclasses changes isinstance() process-wide"
                )
        elif value_kind in _UNBOUND_KINDS and not policy.own_namespace:
            _check_unbound(obj, attr, value)
        elif value_kind is tuple and policy.exception and attr == "args":
            # C code puts reprs into messages: [].index(f) raises ValueError("<function f
            # at 0x..> is not in list"). str(e) is covered by the str builtin; e.args too.
            return tuple(scrub_addresses(item) for item in value)
        return value
    # Raised after the except block, so the new error has no __context__ either: the
    # original AttributeError carries .obj, the very object being looked into.
    raise AttributeError(f"{_describe(obj)} has no attribute {_quote(attr)}")


_MISSING = object()


def _check_unbound(obj: object, name: str, value: Any) -> None:
    """Refuse an unbound method of a host class (see ``_UNBOUND_KINDS``)."""
    kind = type(value)
    if kind is types.MethodDescriptorType:
        if not issubclass(value.__objclass__, _MUTABLE_CONTAINERS):
            return  # typed self, immutable or plain state: str.lower, date.isoformat...
    elif kind is types.FunctionType:
        # Where does the name live? A plugin class's own function is the plugin's code
        # (Base.method(self, ...) is how plugins call a base class); a staticmethod takes
        # no self. An inherited host function, a function forwarded by __getattr__ (typing
        # aliases) or stored on a host object is refused.
        holder = obj if isinstance(obj, type) else type(obj)
        for klass in holder.__mro__:
            raw = vars(klass).get(name, _MISSING)
            if raw is not _MISSING:
                if type(klass) is PluginClass or type(raw) is staticmethod:
                    return
                break
    _deny_attribute(
        name,
        "unbound methods of host classes are not available; call the method on an instance instead",
    )


def safe_getattr(obj: object, name: object, default: object = _MISSING, /) -> Any:
    """The ``getattr`` builtin: ``_getattr_`` plus an optional default for *missing* names.

    A refused name raises ``SandboxViolation`` even when a default is given; returning the
    default would turn probing into a silent oracle (and is how RP's ``safer_getattr``
    masked errors with ``None``).
    """
    try:
        return guarded_getattr(obj, name)
    except AttributeError:
        if default is _MISSING:
            raise
        return default


def safe_hasattr(obj: object, name: object, /) -> bool:
    """The ``hasattr`` builtin. Refused names raise ``SandboxViolation``, not ``False``."""
    try:
        guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


def safe_setattr(obj: object, name: object, value: object, /) -> None:
    """The ``setattr`` builtin: name rules of ``_getattr_``, target rules of ``_write_``."""
    name = check_attribute_name(name)
    setattr(_attribute_target(obj), name, value)


def safe_delattr(obj: object, name: object, /) -> None:
    """The ``delattr`` builtin."""
    name = check_attribute_name(name)
    delattr(_attribute_target(obj), name)


# --------------------------------------------------------------------------------------
# _write_
# --------------------------------------------------------------------------------------

# Containers a plugin may change the *items* of. Exact types only: a subclass could be a host
# type with custom __setitem__ semantics. None of them is handed out shared by a shim (the
# reachability tests check), so every instance a plugin can write to is one it made.
#
# Their *attributes* are another matter. Counter, OrderedDict and ChainMap instances have a
# __dict__, defaultdict has a writable default_factory: an attribute write plants plugin code
# where host code expects the container's own method - c.items = spin on a Counter that is
# then passed to json (the worker encoded error frames after its CPU timer was disarmed, so
# spin ran unbounded). Hence item writes only, through _ItemWriter.
_ITEM_WRITABLE_TYPES = frozenset(
    {
        collections.OrderedDict,
        collections.defaultdict,
        collections.Counter,
        collections.deque,
        collections.ChainMap,
    }
)
# Exact dicts and lists are handed back as they are: item writes on them are the hot path
# (a wrapper makes `d[k] = v` several times slower), and the interpreter itself refuses every
# attribute write on them (no __dict__, read-only methods) - the tests pin that down.
_PLAIN_WRITABLE_TYPES = frozenset({dict, list})


class _ItemWriter:
    """What ``_write_`` returns for a container: item writes pass, attribute writes raise.

    Never reachable from plugin code: RestrictedPython uses ``_write_(x)`` only as the
    target of an assignment or ``del``, and ``_target`` is a private name anyway.
    """

    __slots__ = ("_target",)
    _target: Any

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._target[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._target[key]

    def __setattr__(self, name: str, value: object) -> NoReturn:
        _refuse_container_attributes(self._target)

    def __delattr__(self, name: str) -> NoReturn:
        _refuse_container_attributes(self._target)


def _refuse_container_attributes(obj: object) -> NoReturn:
    raise SandboxViolation(
        f"Modifying attributes of {_describe(obj)} is not allowed in sandboxed plugins "
        "(only its items can be changed)"
    )


def _refuse_write(obj: object) -> NoReturn:
    raise SandboxViolation(
        f"Modifying {_describe(obj)} is not allowed in sandboxed plugins "
        "(only dicts, lists and instances of the plugin's own classes can be changed)"
    )


def _attribute_target(obj: object) -> object:
    """``setattr``/``delattr``: only instances of plugin-defined classes have writable attributes."""
    kind = type(obj)
    if type(kind) is PluginClass:
        return obj
    if kind in _PLAIN_WRITABLE_TYPES or kind in _ITEM_WRITABLE_TYPES:
        _refuse_container_attributes(obj)
    _refuse_write(obj)


def guarded_write(obj: object) -> Any:
    """``_write_``: the target of every ``a.b = c``, ``a[b] = c``, ``del a.b``, ``del a[b]``.

    Allowed: items of plain containers (the plugin creates them; no shim hands out a shared
    one, which the reachability tests check) and attributes of instances of plugin-defined
    classes. Everything else - attributes of containers, modules, shims, functions, host
    classes and their instances (exceptions included), plugin *classes* - is refused, so
    nothing shared between invocations or with the host can be rewired, and no host method
    can be replaced by plugin code.
    """
    kind = type(obj)
    if kind in _PLAIN_WRITABLE_TYPES or type(kind) is PluginClass:
        return obj
    if kind in _ITEM_WRITABLE_TYPES:
        return _ItemWriter(obj)
    _refuse_write(obj)


class _SliceWriter(_ItemWriter):
    """What ``_slice_write_`` returns for a list: ``x[a:b:c] = v`` with ``v`` consumed first.

    CPython gh-120384 (fixed in 3.12.5 and 3.13.0, never in 3.11): assigning to an extended
    slice computes the slice's length, *then* consumes the right-hand side; a generator that
    shrinks the list meanwhile makes the C code write past the end of the list's memory.
    Here the right-hand side is a tuple by the time the list sees it, so no plugin code runs
    inside the assignment. The compiler sends every subscript assignment whose index is
    written as a slice (``x[a:b]``, ``x[::2]``) through here; a slice *object* as the index
    goes through ``checked_store_key`` instead.
    """

    __slots__ = ()  # the one slot, _target, is _ItemWriter's; attribute writes refused there

    def __setitem__(self, key: Any, value: Any) -> None:
        if type(value) is not list and type(value) is not tuple:
            value = tuple(guarded_iter(value))
        self._target[key] = value


def guarded_slice_write(obj: object) -> Any:
    """``_slice_write_``: ``_write_`` for the target of ``x[a:b:c] = v`` (see ``_SliceWriter``)."""
    target = guarded_write(obj)
    return _SliceWriter(target) if type(target) is list else target


def checked_store_key(key: Any) -> Any:
    """``_store_key_``: the index of ``x[key] = v`` when it is not written as a literal or slice.

    Ordinary keys pass unchanged. A slice object with a step would reach CPython's
    extended-slice assignment with a right-hand side that has not been consumed yet
    (gh-120384, see ``_SliceWriter``), and this function cannot see the value; such an
    assignment is rare enough to refuse, with the spelling that works.
    """
    if type(key) is slice and key.step is not None:
        raise SandboxViolation(
            "Assigning to an extended slice through a slice object is not allowed in sandboxed "
            "plugins; write the slice in the brackets instead (items[a:b:c] = values)"
        )
    return key


# --------------------------------------------------------------------------------------
# _getitem_, _getiter_, unpacking
# --------------------------------------------------------------------------------------


_PLAIN_CONTAINERS = frozenset({dict, list, tuple, str, set, frozenset, range, bytes})


def _refuse_namespace(obj: object, action: str) -> None:
    # Modules and facades are namespaces, not containers; refusing them here gives a clear
    # message instead of a TypeError and keeps working should one ever become iterable.
    kind = type(obj)
    if kind in _PLAIN_CONTAINERS:
        return  # the common case, decided without walking the MRO
    if isinstance(obj, (types.ModuleType, Facade)):
        raise SandboxViolation(f"{action} {_describe(obj)} is not allowed in sandboxed plugins")


def guarded_getitem(obj: Any, key: Any) -> Any:
    """``_getitem_``: every ``obj[key]`` read.

    Deliberately thin: subscripting is only as dangerous as what is reachable, and no shim
    exposes a host container (see the reachability tests).
    """
    _refuse_namespace(obj, "Subscripting")
    return obj[key]


def check_iterable(obj: object) -> None:
    """The policy of ``_getiter_``, for wrappers of builtins that iterate in C."""
    _refuse_namespace(obj, "Iterating over")


def guarded_iter(obj: Any) -> Iterator[Any]:
    """``_getiter_``: ``for`` loops, comprehensions and the wrapped builtins.

    Not a confidentiality boundary: ``[*x]``, ``str.join``, ``f(*x)`` and friends iterate
    in C without calling it (075-078). What plugins cannot reach, they cannot iterate.
    """
    check_iterable(obj)
    return iter(obj)


def guarded_unpack_sequence(
    it: Any, spec: Mapping[str, Any], _getiter_: object = None
) -> list[Any]:
    """``_unpack_sequence_``: ``a, (b, c) = x``; ``spec`` comes from the compiler."""
    # The compiler passes its own _getiter_ name; we use ours regardless.
    items = list(guarded_iter(it))
    if len(items) < spec["min_len"]:
        return items  # the interpreter raises the usual "not enough values" error
    for index, child_spec in spec["childs"]:
        items[index] = guarded_unpack_sequence(items[index], child_spec)
    return items


def guarded_iter_unpack_sequence(
    it: Any, spec: Mapping[str, Any], _getiter_: object = None
) -> Iterator[list[Any]]:
    """``_iter_unpack_sequence_``: ``for a, b in x``."""
    for item in guarded_iter(it):
        yield guarded_unpack_sequence(item, spec)


# --------------------------------------------------------------------------------------
# Arithmetic and calls
# --------------------------------------------------------------------------------------

#: Largest result ``pow()`` computes for int operands (4 Mbit = 512 KiB of digits).
MAX_POW_BITS = 1 << 22


def bounded_pow(base: Any, exp: Any, mod: Any = None, /) -> Any:
    """The ``pow`` builtin (and ``**=``), refusing int results beyond ``MAX_POW_BITS``.

    ``pow(10, 10**10)`` is one C call that would run for hours; the CPU limit would kill
    it, but a clear refusal up front is kinder. (The ``**`` operator is not rewritten by the
    compiler; the worker's CPU limit covers it.)
    """
    if mod is None and type(base) in (int, bool) and type(exp) in (int, bool) and exp > 0:
        bits = abs(base).bit_length()
        if bits > 1 and (bits - 1) * exp > MAX_POW_BITS:
            raise SandboxViolation(
                f"pow() result would be too large (more than {MAX_POW_BITS} bits); "
                "sandboxed plugins cannot compute numbers this big"
            )
    return pow(base, exp) if mod is None else pow(base, exp, mod)


_INPLACE_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": guarded_mod,
    "**=": bounded_pow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


def guarded_inplacevar(op: str, x: Any, y: Any) -> Any:
    """``_inplacevar_``: ``x += y`` on names, via ``operator`` (never ``eval``)."""
    function = _INPLACE_OPERATORS.get(op) if type(op) is str else None
    if function is None:
        raise SandboxViolation(f"Unsupported in-place operator {op!r}")
    return function(x, y)


def guarded_apply(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``_apply_``: calls written with ``*args`` or ``**kwargs``.

    Keyword *names* from a ``**mapping`` are chosen at run time; ``"_"``-names would reach
    private parameters of host functions (044), so they are refused like literal ones are
    at compile time.
    """
    for key in kwargs:
        if _is_private(key):
            raise SandboxViolation(
                f'Keyword argument {_quote(key)} is not allowed (names starting with "_" are private)'
            )
    return func(*args, **kwargs)


# --------------------------------------------------------------------------------------
# print
# --------------------------------------------------------------------------------------

#: Characters one print collector keeps; the rest is dropped (116: print flood).
MAX_PRINT_CHARS = 64 * 1024
_TRUNCATED = "\n[print output truncated]\n"


class PrintCollector:
    """What ``print`` writes to and ``printed`` reads (RP creates one per function)."""

    __slots__ = ("_parts", "_size", "_truncated")

    def __init__(self, _getattr_: object = None) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._truncated = False

    def _call_print(
        self,
        *objects: object,
        sep: object = None,
        end: object = None,
        file: object = None,
        flush: object = False,
    ) -> None:
        # RP rewrites print(...) to _print._call_print(...). file= is refused: it would
        # write to any object with a write() method, such as a leaked host stream (072).
        if file is not None:
            raise SandboxViolation("print(file=...) is not allowed in sandboxed plugins")
        if sep is not None and type(sep) is not str:
            raise TypeError("sep must be None or a string")
        if end is not None and type(end) is not str:
            raise TypeError("end must be None or a string")
        text = (" " if sep is None else sep).join(text_of(item) for item in objects)
        self._write(text + ("\n" if end is None else end))

    def _write(self, text: str) -> None:
        if self._truncated:
            return
        room = MAX_PRINT_CHARS - self._size
        if len(text) > room:
            text = text[:room]
            self._truncated = True
        self._parts.append(text)
        self._size += len(text)
        # The embedder's sink (emdash: the plugin's log) sees what was kept, never more.
        _print.emit(text)

    def __call__(self) -> str:
        return "".join(self._parts) + (_TRUNCATED if self._truncated else "")


# --------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------

# What the interpreter itself puts into a class namespace. 3.13 added __firstlineno__ and
# __static_attributes__ (the names assigned through self.); plugin code cannot name any of
# them, since every "_"-name is a compile error.
_INTERPRETER_CLASS_KEYS = frozenset(
    {
        "__module__",
        "__qualname__",
        "__doc__",
        "__annotations__",
        "__firstlineno__",
        "__static_attributes__",
    }
)

#: The special methods a plugin class may define. Only these two: both run only when plugin
#: code itself asks for them, with operands it holds (``A(...)``, ``x in a``). Every other
#: special method is a callback that C code makes from the middle of its own work, and that
#: is where CPython's use-after-free bugs live: a comparison method that empties the list
#: holding its operand while ``list < list`` still uses a borrowed pointer to it (gh-120298,
#: unfixed in 3.11 and 3.12 < 3.12.5) gave a full break-out. RestrictedPython also allows the
#: rich comparisons (``__eq__``, ``__lt__``...); we do not: list, tuple, deque, dict, heapq,
#: bisect and sort all call them with the container in an intermediate state, and ``__eq__``
#: alone reaches the same code (tuples inside lists are compared through it). Plugins sort
#: with ``key=`` and compare with explicit methods; ``functools.cmp_to_key`` objects compare
#: through plugin functions too, but never return NotImplemented, so no reflected call
#: follows with a stale pointer.
PLUGIN_DUNDERS = frozenset({"__init__", "__contains__"})

_CLASS_DUNDERS = _INTERPRETER_CLASS_KEYS | PLUGIN_DUNDERS


def _plugin_instance_repr(self: object) -> str:
    # object.__repr__ would show the address (see scrub_addresses).
    return f"<{type(self).__name__} object>"


class ForbiddenBuiltin:
    """Stands in for a builtin that sandboxed code may not use (``eval``, ``type``...).

    Calling it, using it in ``isinstance`` or as a base class raises ``SandboxViolation``
    with a hint, instead of a bare ``NameError``. Plugins can still use the name for their
    own variables (``type = event["type"]``): locals and globals shadow builtins.
    """

    __slots__ = ("_name", "_hint")

    def __init__(self, name: str, hint: str) -> None:
        self._name = name
        self._hint = hint

    def _refuse(self) -> NoReturn:
        raise SandboxViolation(
            f'"{self._name}" is not available in sandboxed plugins; {self._hint}'
        )

    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        self._refuse()

    def __instancecheck__(self, instance: object) -> NoReturn:
        self._refuse()

    def __subclasscheck__(self, subclass: object) -> NoReturn:
        self._refuse()

    def __mro_entries__(self, bases: tuple[object, ...]) -> NoReturn:
        # ``class A(object):`` ends here, before the class body runs.
        self._refuse()

    def __repr__(self) -> str:
        return f"<unavailable builtin {self._name}>"


def _allowed_base(base: object) -> bool:
    if type(base) is PluginClass:
        return True  # its own host bases were checked when it was created
    if not isinstance(base, type) or not issubclass(base, Exception):
        return False
    if issubclass(base, UnicodeError):
        return False  # see _refused_base_reason: gh-123378
    # ExceptionGroup: except* type confusion (CVE-2025-22153).
    if issubclass(base, BaseExceptionGroup):
        return False
    # A host class's __init_subclass__ would run host code on the plugin's class (and could,
    # say, register it in a host table by name); no builtin exception defines one.
    return not any(
        "__init_subclass__" in vars(klass) for klass in base.__mro__ if klass is not object
    )


def _refused_base_reason(base: object) -> str:
    if isinstance(base, type) and issubclass(base, UnicodeError):
        # Instances of a plugin class are writable, so a subclass of UnicodeDecodeError &
        # co. could set .start/.end out of range, and str() of it reads the heap (CPython
        # gh-123378, fixed in 3.12.6/3.11.10; see _builtins._UNICODE_ERRORS). UnicodeError
        # itself is refused too: its subclasses are the ones with the bug, and nothing a
        # plugin needs comes from subclassing it.
        return "Unicode error classes cannot be subclassed in sandboxed plugins"
    return (
        "sandboxed classes may only inherit from Exception classes and other classes of the plugin"
    )


def plugin_metaclass(
    name: str, bases: tuple[object, ...], namespace: dict[str, Any], /, **kwargs: object
) -> type:
    """``__metaclass__``: builds every class defined by sandboxed code.

    Bases are limited to other plugin classes and ``Exception`` classes: no ``str``/``dict``/
    ``int`` subclasses that lie to host validators (050-052), no ``type`` subclasses, no
    host classes with hooks. The namespace may hold only public names and a handful of
    dunders; the compiler already refuses others, this is the second lock (015: a namespace
    built by other means must not define ``__getattr__``, ``__del__``, ``__reduce__``...).
    """
    if type(name) is not str:
        raise SandboxViolation("Class names must be str")
    if kwargs:
        raise SandboxViolation(
            f'Class "{name}": keyword arguments in a class statement are not supported in sandboxed plugins'
        )
    for base in bases:
        if not _allowed_base(base):
            raise SandboxViolation(
                f'Class "{name}" cannot inherit from {_describe(base)}: {_refused_base_reason(base)}'
            )
    for key in namespace:
        if type(key) is not str:
            raise SandboxViolation(f'Class "{name}" has a non-str attribute name')
        if key == "__classcell__":
            raise SandboxViolation(
                f'Class "{name}" uses super() or __class__, which sandboxed plugins cannot use; call Base.method(self, ...) instead'
            )
        if key.startswith("_") and key not in _CLASS_DUNDERS:
            raise SandboxViolation(
                f'Class "{name}" may not define {_quote(key)}{_dunder_hint(key)}'
            )
    namespace = dict(namespace)
    if not bases:
        # Exceptions have an address-free repr already; subclasses inherit this one.
        namespace["__repr__"] = _plugin_instance_repr
    return PluginClass(name, tuple(bases), namespace)  # type: ignore[arg-type]


_COMPARISONS = frozenset({"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"})


def _dunder_hint(key: str) -> str:
    if key in _COMPARISONS:
        return (
            ": sandboxed classes cannot define comparison methods (CPython calls them from the "
            "middle of list and dict operations); sort with key= and compare with an explicit "
            "method instead"
        )
    return ""
