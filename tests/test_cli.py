"""The command line: readable one-line errors, non-zero exits; data rows reported with file:line."""

import pytest

from zoo.cli import main


def test_estimators_lists_every_name(capsys):
    import zoo

    assert main(["estimators"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for name in zoo.available():  # each with its forwards per step, extra state and paper
        spec = zoo.estimators.spec(name)
        assert f"forwards/step: {spec.cost};" in lines[name] and spec.extra_state in lines[name]
        assert spec.paper in lines[name]


def test_unknown_estimator_is_one_line_and_exit_2(capsys):
    assert main(["demo", "--estimator", "mezo-sdg", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mezo-sgd" in err


def test_zo_options_on_a_first_order_run_are_one_line(tmp_path, capsys):
    assert main(["finetune", "--estimator", "adam", "--backend", "torch", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "backend" in err and "first-order 'adam'" in err


def test_missing_data_is_one_line(tmp_path, capsys):
    assert main(["demo", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train_full.tsv" in err


@pytest.mark.parametrize("text,line", [
    ("sentence\tlabel\ngood\t1\nbad\n", 3),
    ("sentence\tlabel\ngood\t1\nbad\t7\n", 3),
    ("text\tlabel\ngood\t1\n", 2),
])
def test_bad_sst2_rows_name_file_and_line(tmp_path, capsys, text, line):
    (tmp_path / "glue-sst2").mkdir()
    f = tmp_path / "glue-sst2" / "train_full.tsv"
    f.write_text(text)
    assert main(["demo", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{f}:{line}:" in err
