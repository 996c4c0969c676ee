"""argparse with an environment variable per flag: one line per usage error, naming the flag and the variable.

A flag and its environment variable go through the same converter, so both are validated alike: argparse
alone checks neither ``choices`` nor ``type`` for a default that is not a string, which is how an
environment variable used to slip past it.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from census_exporter.converters import boolean

EXIT_USAGE = 2

#: Where the keys of the workspaces file are documented (--help lists flags only).
WORKSPACES_FILE_DOC = "docs/configuration.md, section Several workspaces"

Converter = Callable[[str], Any]


def _text(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Setting:
    """One flag with its environment variable: how to convert it, its default, and what it means."""

    flag: str
    dest: str
    env: str
    convert: Converter
    default: Any
    #: The default as --help and the docs show it ("" for none).
    shown_default: str
    meaning: str
    metavar: str | None
    #: The accepted range of a numeric flag, for --help and the docs ("" for none).
    range_text: str = ""
    #: The variable's name before the CENSUS_EXPORTER_ prefix ("" for none): ignored, but named in a warning.
    legacy_env: str = ""


class Parser(argparse.ArgumentParser):
    """Usage errors as one line (naming the flag), not the whole usage block; flags with env variables."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings: list[Setting] = []
        #: The flags given on the command line or through their environment variable (by dest).
        self.given: set[str] = set()
        #: Warnings found while resolving (an old variable name that is set), to log once logging is set up.
        self.warnings: list[str] = []

    def error(self, message: str, see: str = "--help") -> NoReturn:
        """Exit 2 with one line, ending with where to read more (after any warning found so far)."""
        # Logging is not set up yet; an ignored old variable may be why the configuration is incomplete.
        for warning in self.warnings:
            sys.stderr.write(f"{self.prog}: warning: {warning}\n")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {see})\n")

    def add_argument(
        self,
        *names: str,
        env: str | None = None,
        convert: Converter = _text,
        shown_default: str | None = None,
        legacy_env: str = "",
        **kwargs: Any,
    ) -> argparse.Action:
        """``add_argument``, plus ``env``: the environment variable, converted by ``convert`` like the flag.

        ``legacy_env`` is the variable's former name: never read, only named in a warning when it is set and
        ``env`` is not. Without ``env`` this is plain argparse.
        """
        if env is None:
            return super().add_argument(*names, **kwargs)
        default = kwargs.pop("default", None)
        meaning = kwargs.pop("help")
        if kwargs.get("action") == "store_true":
            convert = boolean
        range_text = getattr(convert, "range_text", "")
        if shown_default is None:
            shown_default = "" if default is None else str(default)
        suffix = [f"env {env}"]
        if shown_default:
            suffix.append(f"default {shown_default}")
        if range_text:
            suffix.append(f"range {range_text}")
        # argparse %-formats help texts.
        kwargs["help"] = f"{meaning} ({'; '.join(suffix)})".replace("%", "%%")
        action = super().add_argument(*names, default=None, **kwargs)
        self.settings.append(
            Setting(
                flag=names[0],
                dest=action.dest,
                env=env,
                convert=convert,
                default=default,
                shown_default=shown_default,
                meaning=meaning,
                metavar=action.metavar if isinstance(action.metavar, str) else None,
                range_text=range_text,
                legacy_env=legacy_env,
            )
        )
        return action

    def resolve(self, argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
        """Parse ``argv``, then give every flag not on the command line its environment value or default.

        An empty environment variable counts as unset, as in the Prometheus exporters' flag library.
        """
        self.warnings = [
            f"environment variable {setting.legacy_env} is ignored: "
            f"set {setting.env} ({setting.flag}) instead"
            for setting in self.settings
            if setting.legacy_env
            and environ.get(setting.legacy_env, "").strip()
            and not environ.get(setting.env, "").strip()
        ]
        args, unknown = self.parse_known_args(argv)
        if unknown:
            # Only the names: a value that was meant as a token must not be echoed.
            names = sorted({arg.partition("=")[0] for arg in unknown if arg.startswith("-")})
            self.error(self._unrecognized(names))
        for setting in self.settings:
            given = getattr(args, setting.dest)
            if given is True:  # a store_true flag on the command line
                self.given.add(setting.dest)
                continue
            if isinstance(given, list):  # a repeatable flag: each occurrence converted, then joined
                self.given.add(setting.dest)
                origin = f"argument {setting.flag} (env {setting.env})"
                try:
                    setattr(args, setting.dest, _joined(setting, given))
                except ValueError as error:
                    self.error(f"{origin}: {error}")
                continue
            if given is not None:
                text, origin = given, f"argument {setting.flag} (env {setting.env})"
            elif environ.get(setting.env, "").strip():
                text = environ[setting.env]
                origin = f"environment variable {setting.env} ({setting.flag})"
            else:
                setattr(args, setting.dest, setting.default)
                continue
            self.given.add(setting.dest)
            try:
                setattr(args, setting.dest, setting.convert(text))
            except ValueError as error:
                self.error(
                    f"{origin}: {error}", WORKSPACES_FILE_DOC if setting.dest == "config_file" else "--help"
                )
        return args

    def _unrecognized(self, names: Sequence[str]) -> str:
        """``unrecognized argument --x: did you mean --y?`` (the guess for the first unknown flag close to a
        known one, if any; with several unknown flags, it names the one it is for)."""
        if not names:
            return "unrecognized arguments: (values without a flag)"
        known = [option for action in self._actions for option in action.option_strings]
        guess = next(
            (
                (name, close[0])
                for name in names
                if (close := difflib.get_close_matches(name, known, n=1, cutoff=0.75))
            ),
            None,
        )
        if len(names) == 1:
            message = f"unrecognized argument {names[0]}"
            return message if guess is None else f"{message}: did you mean {guess[1]}?"
        message = f"unrecognized arguments: {' '.join(names)}"
        return message if guess is None else f"{message}; did you mean {guess[1]} for {guess[0]}?"


def _joined(setting: Setting, texts: Sequence[str]) -> tuple[Any, ...]:
    """The values of a repeated flag, each converted (to a tuple), in the order given."""
    return tuple(value for text in texts for value in setting.convert(text))
