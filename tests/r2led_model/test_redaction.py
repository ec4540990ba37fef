"""Secrets in a config are shown as *** wherever the config is displayed (every command's printout, every
MLflow run's config.yaml artifact), while the job itself still gets the real values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from r2led_model.config import REDACTED, load_config, redacted
from tests.helpers import config_in

CONF = Path(__file__).resolve().parents[2] / "conf"
SECRET = "s3cr3t-Value-42"
EXTRA_CONF = ('spark.extra_conf={"spark.hadoop.fs.s3a.secret.key": "' + SECRET + '", '
              '"spark.hadoop.fs.s3a.access.key": "AKIA-' + SECRET + '", '
              '"fs.azure.account.key.myacct.dfs.core.windows.net": "' + SECRET + '", '
              '"spark.jars.repositories": "https://deploy:' + SECRET + '@repo.example.com/maven", '
              '"spark.sql.shuffle.partitions": "4", "spark.hadoop.fs.s3a.endpoint": "http://minio:9000"}')


pytestmark = pytest.mark.usefixtures("restore_logging")  # jobs reconfigure the root logger


@pytest.mark.parametrize("key", ["password", "db_passwd", "api_key", "accessKey", "apiKey", "auth_token", "token",
                                 "client_secret", "credentials", "gcp.credential.file", "fs.s3a.secret.key",
                                 "fs.azure.account.key.acct.dfs.core.windows.net", "KEY", "sas_token"])
def test_a_value_under_a_secret_looking_key_is_hidden(key):
    assert redacted({"options": {key: SECRET, "header": True}}) == {"options": {key: REDACTED, "header": True}}


@pytest.mark.parametrize("key", ["keyspace", "monkey", "partition_column", "seed_hash", "hash_bits", "path",
                                 "header", "k_per_route", "spark.sql.shuffle.partitions", "tracking_uri"])
def test_ordinary_keys_are_shown(key):
    assert redacted({key: "x"}) == {key: "x"}


@pytest.mark.parametrize("uri, shown", [
    ("https://user:pass@host.example.com/x", "https://***@host.example.com/x"),
    ("databricks://tok3n@workspace", "databricks://***@workspace"),
    ("postgresql://u:p@h:5432/db", "postgresql://***@h:5432/db"),
    ("postgresql://u:p@ss@h/db", "postgresql://***@h/db"),  # an unescaped @ in the password
    ("mysql+pymysql://app:pw@db/mlflow?charset=utf8", "mysql+pymysql://***@db/mlflow?charset=utf8"),
    ("jdbc:postgresql://h/db?user=app&password=pw&ssl=true", "jdbc:postgresql://h/db?user=app&password=***&ssl=true"),
    ("https://h/x?sig=abc&sv=2022", "https://h/x?sig=***&sv=2022"),
    ("abfss://container@account.dfs.core.windows.net/tables", "abfss://container@account.dfs.core.windows.net/tables"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ("databricks", "databricks"),
    ("mail me at a@b.c", "mail me at a@b.c"),
])
def test_credentials_inside_uris_are_hidden_wherever_the_uri_is(uri, shown):
    assert redacted({"mlflow": {"tracking_uri": uri}, "paths": [uri]}) == {"mlflow": {"tracking_uri": shown},
                                                                           "paths": [shown]}


def test_a_loaded_config_shows_no_secret_but_keeps_the_real_values(tmp_path):
    config = config_in(tmp_path, EXTRA_CONF, f"mlflow.tracking_uri=postgresql://mlflow:{SECRET}@db:5432/mlflow")
    text = config.to_redacted_yaml()
    assert SECRET not in text
    shown = yaml.safe_load(text)
    assert shown["spark"]["extra_conf"] == {
        "spark.hadoop.fs.s3a.secret.key": REDACTED, "spark.hadoop.fs.s3a.access.key": REDACTED,
        "fs.azure.account.key.myacct.dfs.core.windows.net": REDACTED,
        "spark.jars.repositories": "https://***@repo.example.com/maven",
        "spark.sql.shuffle.partitions": "4", "spark.hadoop.fs.s3a.endpoint": "http://minio:9000"}
    assert shown["mlflow"]["tracking_uri"] == "postgresql://***@db:5432/mlflow"
    assert shown["workspace"]["root"] == str(tmp_path)  # everything else as it is
    # Display only: the config itself keeps what Spark and MLflow need.
    assert config.spark.extra_conf["spark.hadoop.fs.s3a.secret.key"] == SECRET
    assert config.mlflow.tracking_uri == f"postgresql://mlflow:{SECRET}@db:5432/mlflow"


@pytest.mark.parametrize("env", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_no_key_of_the_schema_or_a_shipped_env_is_hidden(env):
    config = load_config(env)
    assert config.to_redacted_yaml() == config.to_yaml()


def test_a_commands_config_printout_hides_secrets_and_its_job_gets_them(capsys, tmp_path):
    from jobs.runtime.entrypoint import job_parser, run_job

    args = job_parser("r2led demo", "").parse_args(
        ["--env", "tiny", "--set", f"workspace.root={tmp_path}", "--set", EXTRA_CONF,
         "--set", f"mlflow.tracking_uri=databricks://{SECRET}@workspace"])
    seen = []
    assert run_job(args, "demo", lambda config, parsed: seen.append(config)) == 0
    out = capsys.readouterr().out
    assert out.startswith("# r2led demo: resolved config (env=tiny)")
    assert SECRET not in out
    assert "spark.hadoop.fs.s3a.secret.key: '***'" in out and "tracking_uri: databricks://***@workspace" in out
    (config,) = seen
    assert config.spark.extra_conf["spark.hadoop.fs.s3a.secret.key"] == SECRET
    assert config.mlflow.tracking_uri == f"databricks://{SECRET}@workspace"


def test_an_mlflow_runs_config_artifact_hides_secrets(tmp_path):
    import mlflow

    from r2led_model.tracking.runs import configure, tracked_run

    config = config_in(tmp_path, EXTRA_CONF, "source.kind=table", "source.table.format=csv",
                       f"source.table.path=https://reader:{SECRET}@files.example.com/logs",
                       'source.table.columns={"user": "u", "item": "i", "timestamp": "t"}',
                       'source.table.options={"header": true, "password": "' + SECRET + '"}')
    with tracked_run(config, run_name="secrets") as run:
        run_id = run.run_id
    configure(config.mlflow)
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
    assert SECRET not in text
    logged = yaml.safe_load(text)
    assert logged["spark"]["extra_conf"]["spark.hadoop.fs.s3a.secret.key"] == REDACTED
    assert logged["source"]["table"]["path"] == "https://***@files.example.com/logs"
    assert logged["source"]["table"]["options"] == {"header": True, "password": REDACTED}
    assert logged["mlflow"]["tracking_uri"] == config.mlflow.tracking_uri  # a local store: nothing to hide
