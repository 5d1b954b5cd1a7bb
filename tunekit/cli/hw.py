"""``tunekit hw``: list, show and detect GPU hardware profiles (a thin layer over tunekit.hardware)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import click

from tunekit.cli import main
from tunekit.cli.errors import EXIT_FAILED, EXIT_USAGE, example, fail, output_file
from tunekit.files import write_atomic
from tunekit.hardware import GPUProfile, list_profiles, load_profile, profile_to_toml

# Exit codes (tunekit.cli.errors): 2 a usage error (an unknown GPU name, a bad --out); 1 the command
# was well formed but the machine cannot do it (no CUDA device for `detect`).
EXIT_UNAVAILABLE = EXIT_FAILED


def _profile_or_exit(name: str, as_json: bool = False) -> GPUProfile:
    try:
        return load_profile(name)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE, as_json=as_json)


def _kib(n: int) -> str:
    return f"{n / 1024:g} KB"


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MB"


def _plain(value: Any) -> Any:
    """JSON-ready copy: mappings become dicts, tuples lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def profile_dict(profile: GPUProfile) -> dict[str, Any]:
    """Every field of ``profile`` plus ``arch`` and ``sm``, as plain JSON types."""
    data = {f.name: _plain(getattr(profile, f.name)) for f in fields(GPUProfile)}
    data["arch"] = profile.arch
    data["sm"] = profile.sm
    return data


def _show_value(field: str, value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {', '.join(v) if isinstance(v, tuple) else v}" for k, v in value.items())
    if isinstance(value, tuple):
        return ".".join(map(str, value)) if field == "compute_capability" else ", ".join(value)
    if field in ("l2_bytes",):
        return f"{value} ({_mib(value)})"
    if field.startswith("shared_memory_per") and field != "shared_memory_per_block_default":
        return f"{value} ({_kib(value)})"
    return str(value)


@main.group("hw", epilog=example("tunekit hw list", "tunekit hw show a100 --json"))
def hw() -> None:
    """GPU hardware profiles: list the known GPUs, show one with its sources, detect this machine's."""


@hw.command("list", epilog=example("tunekit hw list"))
def list_command() -> None:
    """Table of every known GPU profile."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tunekit hardware profiles")
    for column in ("name", "aliases", "CC", "SMs", "smem/SM", "opt-in smem", "L2", "GB/s", "bf16 TFLOP/s"):
        table.add_column(column, justify="left" if column in ("name", "aliases") else "right")
    for p in list_profiles():
        table.add_row(
            p.name,
            ", ".join(p.aliases),
            ".".join(map(str, p.compute_capability)),
            str(p.sm_count),
            _kib(p.shared_memory_per_sm),
            _kib(p.shared_memory_per_block_optin),
            _mib(p.l2_bytes),
            f"{p.memory_bandwidth_gbs:g}",
            f"{p.tensor_tflops.get('bfloat16', 0.0):g}",
        )
    Console(width=max(140, Console().width)).print(table)


@hw.command("show", epilog=example("tunekit hw show a100", "tunekit hw show l4 --json"))
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def show_command(name: str, as_json: bool) -> None:
    """Every field of GPU NAME (a profile name or alias) with its source."""
    profile = _profile_or_exit(name, as_json)
    if as_json:
        click.echo(json.dumps(profile_dict(profile), indent=2))
        return
    _print_profile(profile)


def _print_profile(profile: GPUProfile) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{profile.display_name} ({profile.name}, {profile.sm})", show_lines=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", max_width=44, overflow="fold")
    table.add_column("source", ratio=1, overflow="fold")
    for f in fields(GPUProfile):
        if f.name == "sources":
            continue
        value = getattr(profile, f.name)
        table.add_row(f.name, _show_value(f.name, value), profile.sources.get(f.name, ""))
    Console(width=max(160, Console().width)).print(table)


@hw.command("detect", epilog=example("tunekit hw detect", "tunekit hw detect --device 1 --out my-gpu.toml"))
@click.option("--device", default=0, show_default=True, type=click.IntRange(min=0), help="CUDA device index.")
@click.option(
    "--out",
    type=click.Path(),  # a str: Path('') would read as the current folder
    help="Write the profile as TOML to this file, in an existing folder (readable by "
    "tunekit.hardware.load_profile_file).",
)
def detect_command(device: int, out: str | None) -> None:
    """Profile of this machine's CUDA device: a known profile when it matches, else one built from it."""
    output_file(out)  # a bad --out is reported before the device is touched
    from tunekit.hardware import detect_profile  # imports torch; only this command needs it

    try:
        profile = detect_profile(device)
    except ImportError as exc:
        fail(f"cannot detect a GPU: torch is not importable ({exc})", EXIT_UNAVAILABLE)
    except RuntimeError as exc:
        fail(f"cannot detect a GPU: {exc}", EXIT_UNAVAILABLE)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    origin = (
        "a known profile" if profile.name in {p.name for p in list_profiles()} else "built from the device"
    )
    click.echo(f"Detected {profile.display_name}: {profile.name} ({origin}).")
    if out is not None:
        try:
            write_atomic(out, profile_to_toml(profile))
        except (ValueError, OSError) as exc:
            fail(f"--out: {exc}", EXIT_USAGE)
        click.echo(f"Wrote {out}")
    else:
        _print_profile(profile)
