"""Lint, format and type checks run with the tests, so `pytest` alone is the whole gate."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def check(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"


def test_ruff_lint() -> None:
    check("ruff", "check", ".")


def test_ruff_format() -> None:
    check("ruff", "format", "--check", ".")


def test_mypy() -> None:
    check("mypy")


def test_import_contracts() -> None:
    """The layers declared in pyproject.toml ([tool.importlinter]) hold: review/ and experiments/ never import
    fars, stages never import the CLI or commands, and each layer imports only the layers below it."""
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"lint-imports failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"


def test_no_import_cycles() -> None:
    """No module of fars, review or experiments imports itself through others, lazily or not."""
    import grimp

    graph = grimp.build_graph("fars", "review", "experiments", exclude_type_checking_imports=False)
    cycles = sorted(
        f"{module} -> {imported} -> ... -> {module}"
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if imported != module and graph.chain_exists(importer=imported, imported=module)
    )
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def suppressions(root: Path) -> list[str]:
    """Each formatter or type-checker suppression in the packages that is not justified where it stands."""
    import io
    import tokenize

    found = []
    for package in ("fars", "review", "experiments"):
        for path in sorted((root / package).rglob("*.py")):
            tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
            for token in tokens:
                if token.type != tokenize.COMMENT:
                    continue
                where = f"{path.relative_to(root)}:{token.start[0]}"
                if "fmt: skip" in token.string or "fmt: off" in token.string:
                    found.append(f"{where}: {token.string} (let ruff format lay it out)")
                elif "type: ignore" in token.string and not re.search(
                    r"type: ignore\[[\w-]+(, [\w-]+)*\]  # \S", token.string
                ):
                    found.append(f"{where}: {token.string} (name the error code and say why after it)")
    return found


def test_every_suppression_is_justified_or_gone(tmp_path: Path) -> None:
    """The packages hold no `# fmt: skip`, and every `# type: ignore[code]` says why after it; planted ones are found."""
    assert suppressions(REPO) == []
    (tmp_path / "fars").mkdir()
    (tmp_path / "fars" / "bad.py").write_text(
        "x = [1,  2]  # fmt: skip\ny: int = 'a'  # type: ignore\nz: int = 'b'  # type: ignore[assignment]  # a test\n"
    )
    assert [line.split(": ")[0] for line in suppressions(tmp_path)] == ["fars/bad.py:1", "fars/bad.py:2"]
