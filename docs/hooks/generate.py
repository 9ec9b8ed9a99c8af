"""MkDocs hook: reference pages generated at build time from the code and the configs.

A page that holds a marker line ``<!-- generated: NAME -->`` gets the generated Markdown in
its place, so nothing generated is ever committed:

- ``cli``: every ``vae-anomaly`` subcommand, from ``pipeline.cli.build_parser()``;
- ``parameters``: every field of ``pipeline.config.schema.Params`` with its type, the rule
  of its ``Annotated`` metadata, and its value in ``configs/params.yaml`` or in each preset;
- ``config-files``: ``configs/params.yaml`` and the presets as they are, comments included.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;", "*": "&#42;",
            "_": "&#95;", "`": "&#96;", "[": "&#91;", "]": "&#93;", "\\": "&#92;"}


def text(value: Any) -> str:
    """Plain text safe in a Markdown table cell (no markup, no column break)."""
    return "".join(_SPECIAL.get(c, c) for c in " ".join(str(value).split()))


def code(value: Any) -> str:
    """Inline code safe in a table cell (``|`` would end the cell, so such code is text)."""
    shown = str(value)
    return f"`{shown}`" if "|" not in shown and "`" not in shown else text(shown)


# ---------------------------------------------------------------------------------- CLI


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, Any]]:
    out = []
    for action in parser._actions:  # argparse keeps its actions there; no public walk
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def _default(action: argparse.Action) -> str:
    if action.required or action.default in (None, argparse.SUPPRESS):
        return "required" if action.required else ""
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return ""
    return code(action.default)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | values | default | what it does |", "| --- | --- | --- | --- |"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = ", ".join(action.option_strings) or action.dest
        if action.nargs not in (None, 0) and not action.option_strings:
            name += f" ({action.nargs})" if isinstance(action.nargs, int) else \
                {"+": " (one or more)", "*": " (any number)", "?": " (optional)"}.get(
                    str(action.nargs), "")
        if isinstance(action, argparse._AppendAction):
            name += " (repeatable)"
        values = " \\| ".join(code(c) for c in action.choices) if action.choices else (
            code(action.metavar if isinstance(action.metavar, str) else
                 getattr(action.type, "__name__", "")) if action.nargs != 0 else "flag")
        rows.append(f"| {code(name)} | {values} | {_default(action)} | {text(action.help or '')} |")
    return rows


def cli_reference() -> str:
    from pipeline.cli import build_parser

    parser = build_parser()
    out = [text(parser.description or ""), "", "```text", parser.format_usage().strip(), "```",
           "", "Options before the subcommand:", "", *_options(parser), ""]
    for name, about, sub in _subcommands(parser):
        out += [f"## `vae-anomaly {name}`", "", text(about) + ".", "", "```text",
                sub.format_usage().strip(), "```", "", *_options(sub), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- parameters


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Annotated:
        return _type_name(typing.get_args(hint)[0])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in args)
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _rule(hint: Any) -> str:
    for meta in getattr(hint, "__metadata__", ()):
        if hasattr(meta, "item"):  # a rule for each entry of a list
            extra = [f"{meta.length} entries"] if getattr(meta, "length", 0) else []
            extra += ["not empty"] if getattr(meta, "nonempty", False) else []
            return ", ".join([f"each {meta.item.describe()}", *extra])
        if hasattr(meta, "describe"):
            return str(meta.describe())
    return ""


def _item_class(hint: Any) -> Any:
    """The dataclass a field holds (directly or as the entries of a list), else None."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if dataclasses.is_dataclass(hint):
        return hint
    args = typing.get_args(hint)
    return args[0] if typing.get_origin(hint) is list and args and \
        dataclasses.is_dataclass(args[0]) else None


def _is_list(hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return typing.get_origin(hint) is list


def _lookup(tree: Any, dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False, None
        tree = tree[part]
    return True, tree


def _shown(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return f"{len(value)} {'entry' if len(value) == 1 else 'entries'} (in the file)"
    if isinstance(value, (list, dict)) and not value:
        return code("[]" if isinstance(value, list) else "{}")
    if isinstance(value, (list, dict)):
        return code(yaml.safe_dump(value, default_flow_style=True, width=10_000).strip())
    return code(yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("..."
                                                                                    ).strip())


def _rows(cls: Any, prefix: str, configs: dict[str, Any], presets: list[str]) -> list[str]:
    rows, nested = [], []
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if not f.init or f.name == "root":
            continue
        key, hint = f"{prefix}{f.name}", hints[f.name]
        item = _item_class(hint)
        if item is not None and not _is_list(hint):  # a sub-section: its own rows below
            nested.append((item, f"{key}."))
            continue
        values = []
        for name in ["params", *presets]:
            found, value = _lookup(configs[name], key)
            values.append(_shown(value) if found else "")
        rows.append(f"| {code(key)} | {code(_type_name(hint))} | {text(_rule(hint))} | "
                    + " | ".join(values) + " |")
        if item is not None:  # a list of records: their fields below
            nested.append((item, f"{key}[]."))
    return rows + [r for c, p in nested for r in _rows(c, p, configs, presets)]


def parameters_reference() -> str:
    from pipeline.config.schema import Params

    presets = sorted(p.stem for p in (ROOT / "configs" / "presets").glob("*.yaml"))
    configs = {"params": yaml.safe_load((ROOT / "configs" / "params.yaml").read_text())}
    configs |= {p: yaml.safe_load((ROOT / "configs" / "presets" / f"{p}.yaml").read_text())
                for p in presets}
    head = ["key", "type", "allowed", "`configs/params.yaml`", *(f"preset `{p}`" for p in presets)]
    out = []
    hints = typing.get_type_hints(Params, include_extras=True)
    scalars = [f for f in dataclasses.fields(Params) if f.init and f.name != "root"
               and _item_class(hints[f.name]) is None]
    sections = [f for f in dataclasses.fields(Params) if _item_class(hints[f.name]) is not None]
    table = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    out += ["## Top level", "", *table]
    for f in scalars:
        found, value = _lookup(configs["params"], f.name)
        out.append(f"| {code(f.name)} | {code(_type_name(hints[f.name]))} | "
                   f"{text(_rule(hints[f.name]))} | {_shown(value) if found else ''} |"
                   + " |" * len(presets))
    for f in sections:
        cls = _item_class(hints[f.name])
        out += ["", f"## `{f.name}`", "", f"Schema: `{cls.__module__}.{cls.__qualname__}`.", "",
                *table, *_rows(cls, f"{f.name}.", configs, presets)]
    return "\n".join(out)


def config_files() -> str:
    out = []
    for path in [ROOT / "configs" / "params.yaml",
                 *sorted((ROOT / "configs" / "presets").glob("*.yaml"))]:
        rel = path.relative_to(ROOT).as_posix()
        out += [f"### `{rel}`", "", '```yaml title="' + rel + '"', path.read_text().rstrip(),
                "```", ""]
    return "\n".join(out)


GENERATORS = {"cli": cli_reference, "parameters": parameters_reference,
              "config-files": config_files}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace every marker line with what its generator writes."""
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)
