"""The depotx command: a round trip on the embedded default and on config files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from depotx import ConfigurationError, LocalFileStorage, MemoryFileStorage
from depotx.cli import build_manager, load_settings, main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_put_get_ls_info_rm_roundtrip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "report.csv"
    source.write_bytes(b"a,b\n1,2\n")

    code, out, _ = _run(capsys, "put", str(source))
    assert code == 0
    path = out.strip()
    storage, file_id = path.split("/")
    assert storage == "default"
    assert (tmp_path / "depot-files" / file_id / "file").read_bytes() == b"a,b\n1,2\n"

    code, out, _ = _run(capsys, "ls")
    assert (code, out.split()) == (0, [path])

    code, out, _ = _run(capsys, "ls", "-l")
    assert "report.csv" in out
    assert "\t8\t" in out

    code, out, _ = _run(capsys, "info", path)
    info = json.loads(out)
    assert info["filename"] == "report.csv"
    assert info["content_type"].startswith("text/csv")
    assert info["url"] == f"/depot/{path}"

    target = tmp_path / "out"
    target.mkdir()
    code, _, _ = _run(capsys, "get", path, "-o", str(target))
    assert code == 0
    assert (target / "report.csv").read_bytes() == b"a,b\n1,2\n"

    code, _, _ = _run(capsys, "rm", path)
    assert code == 0
    code, out, _ = _run(capsys, "ls")
    assert out == ""


def test_get_to_stdout(tmp_path: Path) -> None:
    """Through a real subprocess, so the bytes on stdout are checked exactly."""
    store = tmp_path / "files"
    data = bytes(range(256)) * 10
    put = subprocess.run(
        [sys.executable, "-m", "depotx.cli", "--storage-path", str(store), "put", "-"],
        input=data,
        capture_output=True,
        check=True,
    )
    path = put.stdout.decode().strip()
    got = subprocess.run(
        [sys.executable, "-m", "depotx.cli", "--storage-path", str(store), "get", path],
        capture_output=True,
        check=True,
    )
    assert got.stdout == data


def test_errors_are_reported_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "get", "default/no-such-file")
    assert code == 1
    assert "does not exist" in err
    assert "Traceback" not in err
    code, _, err = _run(capsys, "get", "default/../etc")
    assert code == 1
    assert "error" in err


def test_cp_between_storages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "depot.ini"
    config.write_text(
        "[app:main]\n"
        f"depot.one.storage_path = {tmp_path / 'one'}\n"
        f"depot.two.storage_path = {tmp_path / 'two'}\n"
    )
    source = tmp_path / "x.txt"
    source.write_text("copy me")
    _, out, _ = _run(capsys, "--config", str(config), "put", str(source))
    code, out, _ = _run(capsys, "--config", str(config), "cp", out.strip(), "two")
    assert code == 0
    assert out.startswith("two/")
    file_id = out.strip().split("/")[1]
    assert (tmp_path / "two" / file_id / "file").read_text() == "copy me"


def test_filedepot_ini_is_one_default_storage(tmp_path: Path) -> None:
    config = tmp_path / "production.ini"
    config.write_text(
        "[app:main]\n"
        "use = egg:myapp\n"
        "depot.backend = depot.io.local.LocalFileStorage\n"
        f"depot.storage_path = {tmp_path / 'files'}\n"
    )
    manager = build_manager(str(config))
    assert manager.names == ["default"]
    assert isinstance(manager.get(), LocalFileStorage)


def test_toml_config_with_several_storages(tmp_path: Path) -> None:
    config = tmp_path / "depot.toml"
    config.write_text(
        "[depot]\n"
        'default = "docs"\n'
        "[depot.scratch]\n"
        'backend = "memory"\n'
        "[depot.docs]\n"
        f'storage_path = "{tmp_path / "docs"}"\n'
    )
    if sys.version_info < (3, 11):
        with pytest.raises(ConfigurationError, match=r"3\.11"):
            load_settings(config)
        return
    manager = build_manager(str(config))
    assert manager.get_default() == "docs"
    assert isinstance(manager.get("scratch"), MemoryFileStorage)


def test_environment_configuration(tmp_path: Path) -> None:
    manager = build_manager(environ={"DEPOTX_TMP__BACKEND": "memory"})
    assert manager.names == ["tmp"]


def test_embedded_default(tmp_path: Path) -> None:
    manager = build_manager(storage_path=str(tmp_path / "x"), environ={})
    storage = manager.get()
    assert isinstance(storage, LocalFileStorage)
    assert storage.storage_path == str(tmp_path / "x")


@pytest.mark.parametrize(
    ("content", "message"),
    [("[a]\nother = 1\n", "no depot"), ("not an ini", "cannot parse")],
)
def test_bad_config_files(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.ini"
    config.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        build_manager(str(config))
    with pytest.raises(ConfigurationError, match="does not exist"):
        build_manager(str(tmp_path / "missing.ini"))


def test_cleanup_removes_stale_leftovers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import time

    monkeypatch.chdir(tmp_path)
    stale = tmp_path / "depot-files" / "\\depotx-staging" / "killed-upload"
    stale.mkdir(parents=True)
    (stale / "file").write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    code, out, _ = _run(capsys, "cleanup")
    assert (code, out) == (0, "default: removed 0 stale leftovers\n")
    assert stale.exists(), "younger than a day: may be an upload still running"
    code, out, _ = _run(capsys, "cleanup", "default", "--older-than", "3600")
    assert (code, out) == (0, "default: removed 1 stale leftover\n")
    assert not stale.exists()


@pytest.mark.parametrize(
    ("uploaded_as", "written_as"),
    [
        (".bashrc", "bashrc"),
        ("../../evil.sh", "evil.sh"),
        ("..", "download"),
        ("a\x00b\nc.txt", "a_b_c.txt"),
        ("C:\\Windows\\x.dll", "x.dll"),
    ],
)
def test_get_into_a_folder_writes_a_safe_name_and_never_overwrites(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    uploaded_as: str,
    written_as: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "payload"
    source.write_bytes(b"payload")
    code, out, _ = _run(capsys, "put", str(source), "--filename", uploaded_as)
    assert code == 0
    path = out.strip()
    target = tmp_path / "downloads"
    target.mkdir()
    code, _, _ = _run(capsys, "get", path, "-o", str(target))
    assert code == 0
    assert [p.name for p in target.iterdir()] == [written_as]
    assert (target / written_as).read_bytes() == b"payload"
    (target / written_as).write_bytes(b"mine")
    code, _, err = _run(capsys, "get", path, "-o", str(target))
    assert code == 1
    assert "--force" in err
    assert (target / written_as).read_bytes() == b"mine"
    code, _, _ = _run(capsys, "get", path, "-o", str(target), "--force")
    assert (code, (target / written_as).read_bytes()) == (0, b"payload")


def test_only_setting_shaped_variables_are_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONGODB_TEST_URI", "mongodb://127.0.0.1:1/x")
    monkeypatch.setenv("DEPOTX_SOMETHING_URI", "anything")  # not a setting: left alone
    code, out, err = _run(capsys, "ls")
    assert (code, out, err) == (0, "", "")
    monkeypatch.setenv("DEPOTX_AVATARS_BACKEND", "memory")  # one underscore short
    code, _, err = _run(capsys, "ls")
    assert code == 1
    assert "DEPOTX_AVATARS_BACKEND" in err
    assert "DEPOTX_AVATARS__BACKEND" in err
    assert "Traceback" not in err
    monkeypatch.delenv("DEPOTX_AVATARS_BACKEND")
    monkeypatch.setenv("DEPOTX_AVATARS__BACKEND", "memory")
    code, _, err = _run(capsys, "--storage-path", "elsewhere", "ls")
    assert code == 1
    assert "--storage-path" in err


def test_cli_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[depot\nbackend = 'memory'\n")
    if sys.version_info >= (3, 11):
        code, _, err = _run(capsys, "--config", str(bad), "ls")
        assert code == 1
        assert err.startswith("depotx: error: cannot parse")
        assert len(err.strip().splitlines()) == 1
    for argv in (
        ["serve", "--log-level", "loud"],
        ["serve", "--port", "80000"],
        ["serve", "--port", "http"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert "error:" in err


def test_help_is_plain_text_and_serve_shows_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    serve_help = capsys.readouterr().out
    assert "(default: 127.0.0.1)" in serve_help
    assert "(default: 8000)" in serve_help
    assert "no authentication" in serve_help


def test_keys_from_the_shell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "r.txt"
    source.write_bytes(b"report")
    for key in ("uploads/2026/a.txt", "uploads/2026/b.txt", "uploads/2025/c.txt", "top.txt"):
        code, out, _ = _run(capsys, "put", str(source), "--id", key)
        assert (code, out) == (0, f"default/{key}\n")
    code, _, err = _run(capsys, "put", str(source), "--id", "top.txt")
    assert code == 1
    assert "already exists" in err
    source.write_bytes(b"replaced")
    assert _run(capsys, "put", str(source), "--id", "top.txt", "--force")[0] == 0
    code, out, _ = _run(capsys, "ls")
    assert out.splitlines() == ["default/top.txt", "default/uploads/"]
    code, out, _ = _run(capsys, "ls", "default/uploads/")
    assert out.splitlines() == ["default/uploads/2025/", "default/uploads/2026/"]
    code, out, _ = _run(capsys, "ls", "-r", "default/uploads/2026/")
    assert out.splitlines() == ["default/uploads/2026/a.txt", "default/uploads/2026/b.txt"]
    code, out, _ = _run(capsys, "get", "default/top.txt")
    assert out == "replaced"
    assert _run(capsys, "rm", "default/uploads/2026/a.txt")[0] == 0
    code, out, _ = _run(capsys, "ls", "-r", "default/uploads/")
    assert out.splitlines() == ["default/uploads/2025/c.txt", "default/uploads/2026/b.txt"]


def test_manager_settings_from_the_environment_apply_to_every_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEPOTX_SECRET_KEY", "an-environment-secret-0123")
    # the embedded default storage, with the secret from the environment
    code, out, _ = _run(capsys, "url", "default/abc", "--expires", "60")
    assert code == 0
    assert "&sig=" in out
    # a filedepot-style config file, with a mountpoint of its own
    config = tmp_path / "app.ini"
    config.write_text("[app:main]\ndepot.storage_path = files\ndepot.mountpoint = /media\n")
    code, out, _ = _run(capsys, "--config", str(config), "url", "default/abc", "--expires", "60")
    assert code == 0
    assert out.startswith("/media/default/abc?")
