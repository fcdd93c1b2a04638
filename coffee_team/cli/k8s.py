"""``coffee-team gen-k8s``: the team as Kubernetes manifests (coffee_team/k8s renders them;
this reads the team file and the role files, and writes the result)."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import KubernetesError
from ..team import read_team_text
from .base import Context, UserError, main, pass_ctx


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("coffee-team")
    except PackageNotFoundError:
        return "latest"


def _read_files(ctx: Context, paths: list[str]) -> dict[str, str]:
    found = {}
    for path in paths:
        full = ctx.team.resolve(path)
        try:
            found[path] = full.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise UserError(f"{full}: cannot read a file the team reads ({why}); the ConfigMap "
                            f"carries it into the pods", exit_code=2) from None
    return found


def _write(out: Path, written: dict[str, str]) -> list[str]:
    """Write ``written`` into ``out``; remove what an earlier run wrote that is not in it."""
    from ..k8s.emit import is_generated
    out.mkdir(parents=True, exist_ok=True)
    removed = []
    for old in sorted(out.glob("*.yaml")):
        if old.name not in written and is_generated(old.read_text(encoding="utf-8",
                                                                  errors="replace")):
            old.unlink()
            removed.append(old.name)
    for name, text in written.items():
        (out / name).write_text(text, encoding="utf-8")
    return removed


@main.command("gen-k8s")
@click.option("--image", default=None, metavar="IMAGE",
              help="The image the pods run (default: coffee-team:VERSION).")
@click.option("--namespace", default=None, metavar="NS",
              help="Namespace of every manifest (default: none, kubectl's current one).")
@click.option("--secret", default="coffee-team", show_default=True, metavar="NAME",
              help="The Secret holding COFFEE_DATABASE_URL, password_env values and the "
                   "agents' secrets.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Write one file per manifest and the Containerfile to DIR "
                                  "(default: every manifest to stdout).")
@pass_ctx
def gen_k8s(ctx: Context, image: str | None, namespace: str | None, secret: str,
            out: Path | None) -> None:
    """Render the team into Kubernetes manifests (docs/kubernetes.md)."""
    from .. import k8s
    team = ctx.team
    text = read_team_text(ctx.team_path)
    options = k8s.Options(image=image or f"coffee-team:{_version()}", namespace=namespace,
                          secret=secret)
    try:
        docs = k8s.render(team, text, options, _read_files(ctx, k8s.read_paths(team)))
    except KubernetesError as exc:
        raise UserError(str(exc), exit_code=2) from None
    keys = ", ".join(k8s.secret_keys(team))
    if out is None:
        click.echo(k8s.stream(docs), nl=False)
        click.echo(f"the Secret {secret} needs the keys: {keys}", err=True)
        return
    written = k8s.files(docs)
    removed = _write(out, written)
    (out / k8s.emit.CONTAINERFILE).write_text(k8s.containerfile(team), encoding="utf-8")
    for name in removed:
        click.echo(f"removed {out / name}")
    click.echo(f"wrote {len(written)} manifests and {k8s.emit.CONTAINERFILE} to {out}; "
               f"the Secret {secret} needs the keys: {keys}")
