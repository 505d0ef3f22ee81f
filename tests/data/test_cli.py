"""`riskgate validate | features | generate`, driven in-process through serving.cli.main."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from data.load import load
from features.registry import available, feature_names
from serving.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
PUBLIC_CSV = FIXTURES / "public_layout.csv"
PUBLIC_TOML = FIXTURES / "public_layout.toml"

GOOD_CSV = """\
transaction_id,timestamp,card_id,customer_id,merchant_id,amount,currency,is_fraud,label_time
t1,2024-01-01T00:00:00Z,c1,u1,m1,10.50,EUR,0,
t2,2024-01-01T06:00:00Z,c2,u2,m2,20.00,EUR,1,2024-01-05T06:00:00Z
t3,2024-01-02T12:30:00Z,c1,u1,m2,0.99,EUR,0,
t4,2024-01-03T00:00:00Z,c3,u3,m1,1250.00,EUR,0,
"""
# Row 2 has a negative amount, row 4 an unknown currency.
BAD_CSV = GOOD_CSV.replace("20.00,EUR", "-20.00,EUR").replace("1250.00,EUR", "1250.00,XYZ")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def good_csv(tmp_path) -> Path:
    path = tmp_path / "good.csv"
    path.write_text(GOOD_CSV)
    return path


@pytest.fixture
def bad_csv(tmp_path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    return path


# --- the console entry point ---------------------------------------------------------------------


def test_console_entry_prints_help_and_lists_the_data_commands():
    script = ROOT / ".venv" / "bin" / "riskgate"
    # Not pip-installed yet: the module entry runs the same main().
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "serving.cli"]
    done = subprocess.run(
        [*cmd, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage: riskgate" in done.stdout
    for command in ("generate", "validate", "features"):
        assert command in done.stdout


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-command"),
        pytest.param(["validate"], id="validate-without-data"),
        pytest.param(["features", "--data", "x.csv"], id="features-without-out"),
        pytest.param(["frobnicate"], id="unknown-command"),
    ],
)
def test_usage_errors_exit_with_status_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: riskgate" in capsys.readouterr().err


# --- validate ------------------------------------------------------------------------------------


def test_validate_good_file_prints_a_summary_and_returns_0(capsys, good_csv):
    code, out, err = run(capsys, "validate", "--data", good_csv)
    assert code == 0, err
    assert f"{good_csv}: valid" in out
    assert "rows           4" in out
    assert "period         2024-01-01 00:00 .. 2024-01-03 00:00 UTC" in out
    assert "fraud rate 25.000%" in out
    assert "features will run" in out
    for group in ("amount", "time", "location", "identity", "velocity", "labels"):
        assert f"  {group}" in out


def test_validate_public_layout_with_its_mapping_names_the_skipped_groups(capsys):
    code, out, err = run(capsys, "validate", "--data", PUBLIC_CSV, "--mapping", PUBLIC_TOML)
    assert code == 0, err
    assert "rows           40" in out
    assert "period         2018-04-01 00:00 .." in out
    assert "fraud rate" in out
    assert "label delay    fraud: median 7.0 d" in out
    assert "location  none" in out
    assert "identity  none" in out
    assert "skipped in location: missing billing_country" in out
    assert "skipped in identity: missing account_created_at" in out


def test_validate_bad_csv_returns_2_and_names_file_row_and_column(capsys, bad_csv):
    code, out, err = run(capsys, "validate", "--data", bad_csv)
    assert code == 2
    assert out == ""
    assert err.startswith("error: invalid input\n")
    assert f"{bad_csv}, row 2, column 'amount': negative amount" in err
    assert f"{bad_csv}, row 4, column 'currency': unknown currency 'XYZ'" in err


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("absent.csv", "file not found"), ("payments.json", "unknown format")],
)
def test_validate_unreadable_file_returns_2_and_names_the_file(capsys, tmp_path, name, fragment):
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text("[]")
    code, _, err = run(capsys, "validate", "--data", path)
    assert code == 2
    assert f"{path}: {fragment}" in err


def test_validate_with_a_bad_mapping_returns_2_and_names_the_mapping_file(capsys, tmp_path):
    mapping = tmp_path / "layout.toml"
    mapping.write_text('[columns]\ncolour = "COLOUR"\n')
    code, _, err = run(capsys, "validate", "--data", PUBLIC_CSV, "--mapping", mapping)
    assert code == 2
    assert f"{mapping}: [columns] colour: not a contract column" in err


def test_validate_with_label_delay_but_no_timestamp_mapping_returns_2(capsys, tmp_path):
    # The mapping forgets the time column: a contract problem (exit 2), not a KeyError traceback.
    text = PUBLIC_TOML.read_text().replace('timestamp = "TX_DATETIME"\n', "")
    mapping = tmp_path / "layout.toml"
    mapping.write_text(text)
    code, _, err = run(capsys, "validate", "--data", PUBLIC_CSV, "--mapping", mapping)
    assert code == 2
    assert "column 'timestamp': required column is missing" in err


# --- features ------------------------------------------------------------------------------------


def test_features_on_a_bad_file_returns_2_and_writes_nothing(capsys, tmp_path, bad_csv):
    out_path = tmp_path / "out" / "features.parquet"
    code, _, err = run(capsys, "features", "--data", bad_csv, "--out", out_path)
    assert code == 2
    assert f"{bad_csv}, row 2, column 'amount'" in err
    assert not out_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_features_on_a_good_file_writes_transaction_id_and_feature_columns(capsys, tmp_path):
    out_path = tmp_path / "features.parquet"
    code, out, err = run(
        capsys, "features", "--data", PUBLIC_CSV, "--mapping", PUBLIC_TOML, "--out", out_path
    )
    assert code == 0, err
    assert f"to {out_path}" in out
    table = pd.read_parquet(out_path)
    payments = load(PUBLIC_CSV, PUBLIC_TOML)
    expected = feature_names(available(payments.columns).features)
    assert table.columns.tolist() == ["transaction_id", *expected]
    assert table["transaction_id"].tolist() == payments["transaction_id"].tolist()
    assert all(table[name].dtype == "float64" for name in expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.parquet"]


# --- generate ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, int]:
    pytest.importorskip("data.simulator")
    out_path = tmp_path_factory.mktemp("generate") / "sim.parquet"
    code = main(
        ["generate", "--rows", "2000", "--days", "14", "--seed", "3", "--out", str(out_path)]
    )
    return out_path, code


def test_generate_writes_a_parquet_that_validate_accepts(capsys, generated):
    out_path, code = generated
    assert code == 0
    assert out_path.exists()
    assert len(pd.read_parquet(out_path)) == 2000
    capsys.readouterr()
    code, out, err = run(capsys, "validate", "--data", out_path)
    assert code == 0, err
    assert "rows           2,000" in out
    assert "fraud rate" in out


@pytest.mark.parametrize("rate", ["-0.1", "0", "0.5", "1.5", "nan"])
def test_generate_with_a_bad_fraud_rate_fails_and_writes_nothing(capsys, tmp_path, rate):
    pytest.importorskip("data.simulator")
    out_path = tmp_path / "sim.parquet"
    code, _, err = run(
        capsys, "generate", "--rows", "2000", "--fraud-rate", rate, "--out", out_path
    )
    assert code != 0
    assert "fraud_rate" in err
    assert not out_path.exists()
    assert list(tmp_path.iterdir()) == []
