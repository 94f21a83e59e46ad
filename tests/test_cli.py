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


# --- --version, python -m lamina, errors in one line --------------------------------------------------------

import csv  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import lamina  # noqa: E402

from . import tiny_apps  # noqa: E402


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_version_and_python_dash_m(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"lamina {lamina.__version__}"
    run = subprocess.run([sys.executable, "-m", "lamina", "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == f"lamina {lamina.__version__}"


def test_untar_offline_is_one_line_and_exit_1(monkeypatch, capsys):
    with socket.socket() as sock:  # a port nothing listens on: the connection is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("LAMINA_DATA_URL", f"http://127.0.0.1:{port}/")
    assert main(["untar", "PETS"]) == 1
    assert one_line_error(capsys.readouterr().err).startswith("lamina untar: could not connect to download")


def test_usage_errors_exit_2_in_one_line(capsys):
    for argv in (["predict"], ["predict", "m.pkl", "x.jpg", "--bs", "0"], ["serve", "m.pkl", "--port", "x"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert "(see 'lamina" in one_line_error(capsys.readouterr().err)


def test_predict_a_missing_model_is_one_line_and_exit_1(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.pkl"), "x.jpg"]) == 1
    assert one_line_error(capsys.readouterr().err) == f"lamina predict: No exported learner at {tmp_path / 'nope.pkl'}"
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07not a lamina export")
    assert main(["predict", str(tmp_path / "model.onnx"), "x.jpg"]) == 1
    assert "is not a lamina export" in one_line_error(capsys.readouterr().err)


# --- lamina predict ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    clf, files = tiny_apps.image_classifier(folder)
    seg, seg_files = tiny_apps.segmenter(folder)
    tab, df = tiny_apps.tabular()
    col, ratings = tiny_apps.collab()
    return {name: (learn, learn.export(folder / f"{name}.pkl"), data) for name, learn, data in
            (("clf", clf, files), ("seg", seg, seg_files), ("tab", tab, df), ("col", col, ratings))}


def lines(out):
    return [line.split("\t") for line in out.strip().splitlines()]


def test_predict_images_and_a_folder_one_line_each(exported, capsys):
    learn, model, files = exported["clf"]
    folder = files[0].parent
    assert main(["predict", str(model), str(files[0]), str(folder), "--bs", "4"]) == 0
    got = lines(capsys.readouterr().out)
    assert [row[0] for row in got] == [str(files[0])] + [str(f) for f in sorted(files)]
    for name, label, prob in got:
        want_label, _, probs = learn.predict(name)
        assert label == want_label and float(prob) == pytest.approx(float(probs.max()), abs=1e-4)


def test_predict_reports_a_bad_image_and_goes_on(exported, tmp_path, capsys):
    _, model, files = exported["clf"]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    inputs = [str(files[0]), str(tmp_path / "broken.jpg"), str(files[1]), str(tmp_path / "missing.png")]
    assert main(["predict", str(model), *inputs]) == 1
    out, err = capsys.readouterr()
    assert [row[0] for row in lines(out)] == [str(files[0]), str(files[1])]
    errors = err.strip().splitlines()
    assert len(errors) == 2 and errors[0].startswith(f"lamina predict: {tmp_path / 'broken.jpg'}: ")
    assert errors[1] == f"lamina predict: {tmp_path / 'missing.png'}: no such file or folder"


def test_predict_to_csv_with_class_probabilities(exported, tmp_path, capsys):
    learn, model, files = exported["clf"]
    assert main(["predict", str(model), *map(str, files[:3]), "--out", str(tmp_path / "preds.csv")]) == 0
    assert capsys.readouterr().out == ""
    rows = list(csv.DictReader(open(tmp_path / "preds.csv")))
    assert list(rows[0]) == ["input", "prediction", "probability", "prob_False", "prob_True"]
    _, _, probs = learn.predict(files[2])
    assert float(rows[2]["prob_True"]) == pytest.approx(float(probs[1]), abs=1e-5)


def test_predict_segmentation_writes_masks_next_to_out(exported, tmp_path, capsys):
    learn, model, files = exported["seg"]
    assert main(["predict", str(model), *map(str, files[:2]), "--out", str(tmp_path / "seg.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "seg.csv")))
    mask_file = tmp_path / "seg_masks" / f"{files[1].stem}_mask.png"
    assert rows[1]["prediction"] == str(mask_file)
    assert np.array_equal(np.asarray(Image.open(mask_file)), learn.predict(files[1])[1].numpy())


def test_predict_tabular_and_collab_csv_rows(exported, tmp_path, capsys):
    learn, model, df = exported["tab"]
    df.drop(columns="salary").iloc[:5].to_csv(tmp_path / "rows.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every category read back from the CSV is one the model knows
        assert main(["predict", str(model), str(tmp_path / "rows.csv")]) == 0
    got, want = lines(capsys.readouterr().out), learn.predict_df(df.iloc[:5])
    assert [row[0] for row in got] == [f"{tmp_path / 'rows.csv'}:{i}" for i in range(1, 6)]
    assert [row[1] for row in got] == list(want["salary_pred"])
    learn, model, ratings = exported["col"]
    pairs = ratings[["userId", "movieId"]].iloc[:3].copy()
    pairs.loc[len(pairs)] = [999, 101]  # a user never seen in training
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    assert main(["predict", str(model), str(tmp_path / "pairs.csv")]) == 1
    out, err = capsys.readouterr()
    assert [float(row[1]) for row in lines(out)] == pytest.approx(
        list(learn.predict_df(pairs.iloc[:3])["rating_pred"]), abs=1e-4)
    assert one_line_error(err).startswith(f"lamina predict: {tmp_path / 'pairs.csv'}:4: 1 value(s) of column 'userId'")
