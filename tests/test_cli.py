"""The lamina command."""

import pytest

from lamina.cli import main


def test_untar_bundled_sample(capsys):
    assert main(["untar", "PETS_SAMPLE"]) == 0
    assert capsys.readouterr().out.strip().endswith("pets_sample")


def test_untar_unknown_name(capsys):
    assert main(["untar", "NOT_A_DATASET"]) == 2
    assert "neither a URL nor a name" in capsys.readouterr().err


def test_verify_images(tmp_path, capsys):
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert main(["verify-images", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip().endswith("bad.jpg")


def test_needs_a_command():
    with pytest.raises(SystemExit):
        main([])
