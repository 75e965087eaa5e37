"""The command line as users type it: match, init, replay, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import alertd, environment
from tests.storage import add_feed, record_poll, register

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "alertd.toml"

WATCHLIST = """
[[topic]]
id = "chinese-ecommerce"
name = "E-commerce chinois"
any = ["Alibaba", "Temu", "Shein"]

[[topic]]
id = "french-exports"
name = "Exportations françaises"
any = ["exportations", "cognac"]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    path = tmp_path / "alertd.toml"
    path.write_text("", encoding="utf-8")
    return path


def test_match_writes_one_json_line_per_input_line_in_order(config: Path) -> None:
    lines = [
        {
            "id": "a",
            "title": "Alibaba ouvre un bureau en France",
            "summary": "<p>Pour aider les <b>exportations</b>.</p>",
        },
        {"id": "b", "title": "Le prix de l'essence baisse", "summary": None, "link": None, "feed": None},
        {"id": 3, "title": "Temu"},
        {"id": "d"},
    ]
    result = alertd("match", "-c", str(config), stdin="\n".join(json.dumps(line) for line in lines) + "\n")
    assert 0 == result.returncode, result.stderr
    output = [json.loads(line) for line in result.stdout.splitlines()]
    assert ["a", "b", 3, "d"] == [record["id"] for record in output]
    assert ["chinese-ecommerce", "french-exports"] == [t["id"] for t in output[0]["topics"]]
    assert ["Alibaba"] == output[0]["topics"][0]["terms"]
    span = output[0]["topics"][0]["spans"][0]
    assert {"field": "title", "start": 0, "end": 7} == {k: span[k] for k in ("field", "start", "end")}
    assert [] == output[1]["topics"]
    assert ["chinese-ecommerce"] == [t["id"] for t in output[2]["topics"]]
    assert [] == output[3]["topics"]


def test_match_reads_a_file_too(config: Path, tmp_path: Path) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text(
        json.dumps({"id": "x", "title": "Les exportations de cognac reculent"}) + "\n", encoding="utf-8"
    )
    result = alertd("match", "-c", str(config), "--input", str(source))
    assert 0 == result.returncode
    assert ["french-exports"] == [t["id"] for t in json.loads(result.stdout)["topics"]]


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("read_lines", [0, 1], ids=["reader-gone-at-once", "reader-takes-one-line"])
def test_a_reader_that_goes_away_ends_the_command_quietly_with_141(
    config: Path, tmp_path: Path, buffered: bool, read_lines: int
) -> None:
    """`alertd match ... | head`: no traceback, no "Exception ignored", the status of a tool killed by SIGPIPE."""
    source = tmp_path / "items.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": n, "title": f"Alibaba et Temu, épisode {n}"}) + "\n" for n in range(20_000)
        ),
        encoding="utf-8",
    )
    env = environment({"PYTHONUNBUFFERED": "" if buffered else "1"})
    with subprocess.Popen(
        [sys.executable, "-m", "alertd", "match", "-c", str(config), "--input", str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        lines = [process.stdout.readline() for _ in range(read_lines)]
        process.stdout.close()
        stderr = process.stderr.read()
        assert 141 == process.wait(timeout=60)
    assert b"" == stderr
    assert all(line.startswith(b'{"id": 0') for line in lines)


def test_match_refuses_a_line_without_an_id(config: Path) -> None:
    result = alertd("match", "-c", str(config), stdin='{"title": "Alibaba"}\n')
    assert 2 == result.returncode
    assert "line 1" in result.stderr


def test_match_text_explains_a_headline(config: Path) -> None:
    result = alertd("match", "-c", str(config), "--text", "Shein et Temu visés par Bruxelles")
    assert 0 == result.returncode
    assert "chinese-ecommerce" in result.stdout
    assert "Shein" in result.stdout and "Temu" in result.stdout


def test_init_writes_a_config_that_checks_out(tmp_path: Path) -> None:
    target = tmp_path / "etc"
    result = alertd("init", str(target))
    assert 0 == result.returncode, result.stderr
    assert (target / "alertd.toml").read_text() == CONFIG.read_text()
    check = alertd("check-config", "-c", str(target / "alertd.toml"))
    assert 0 == check.returncode, check.stderr
    again = alertd("init", str(target))
    assert 1 == again.returncode
    assert "exists" in again.stderr


def test_config_is_found_in_the_current_directory(config: Path) -> None:
    result = alertd("check-config", cwd=config.parent)
    assert 0 == result.returncode, result.stderr
    assert f"config:      {Path('alertd.toml')}" in result.stdout


def test_usage_errors_exit_2() -> None:
    assert 2 == alertd("run", "--bogus").returncode
    assert 2 == alertd().returncode


def test_replay_and_replay_deliver(tmp_path: Path, config: Path) -> None:
    from datetime import UTC, datetime

    from alertd.models import Item
    from alertd.store import Store

    now = datetime.now(UTC)
    with Store.open(tmp_path / "var" / "alertd.sqlite3") as store:
        register(store, "reader@example.org", now)
        add_feed(store, "https://feeds.test/a.xml", "BFM")
        item = Item(
            key="k1",
            feed_url="https://feeds.test/a.xml",
            feed_name="BFM",
            title="Le cognac à l'export",
            summary_text="Les exportations de cognac reculent",
            summary_html="",
            link="https://news.test/1",
            story_key="news.test/1",
        )
        record_poll(store, "https://feeds.test/a.xml", None, None, "h", [item], [], [], None, now)
    result = alertd("replay", "-c", str(config), "--since", "1d")
    assert 0 == result.returncode, result.stderr
    assert "[french-exports]  Le cognac à l'export  (BFM)" in result.stdout
    assert "french-exports: 1" in result.stdout
    assert 2 == alertd("replay", "-c", str(config), "--topic", "nope").returncode

    config.write_text(
        '[[subscriber]]\nemail = "reader@example.org"\nschedule = "immediate"\n', encoding="utf-8"
    )
    delivered = alertd("replay", "-c", str(config), "--since", "1d", "--deliver")
    assert "1 new matches queued" in delivered.stdout
    flushed = alertd("flush", "-c", str(config))
    assert "reader@example.org: sent" in flushed.stdout
    mail = list((tmp_path / "var" / "mail" / "new").iterdir())
    assert 1 == len(mail)
    assert "Le cognac" in mail[0].read_text()


def test_without_a_config_anywhere_the_error_names_every_place_searched(tmp_path: Path) -> None:
    if Path("/etc/alertd/alertd.toml").exists():
        pytest.skip("this machine has a system-wide config, which alertd would find")
    home = tmp_path / "home"
    home.mkdir()

    result = alertd("status", cwd=tmp_path, env={"HOME": str(home), "ALERTD_CONFIG": ""})

    assert result.returncode == 78
    assert "no config file found" in result.stderr
    for place in ("alertd.toml", f"{home}/.config/alertd/alertd.toml", "/etc/alertd/alertd.toml"):
        assert place in result.stderr
    assert "alertd init" in result.stderr and "Traceback" not in result.stderr


def test_misspelt_watchlist_keys_sets_and_topics_get_a_did_you_mean(tmp_path: Path, config: Path) -> None:
    (tmp_path / "watchlist.toml").write_text(
        '[sets]\nsingles_day = ["double 11"]\n\n[[topic]]\nid = "ecom"\nname = "E-commerce"\n'
        'prority = "immediate"\nany = ["@singles_dya"]\nquery = "(alibaba OR temu"\n',
        encoding="utf-8",
    )

    checked = alertd("check-config", "-c", str(config))

    assert checked.returncode == 78
    assert "unknown topic key 'prority' (did you mean 'priority'?)" in checked.stderr
    assert "unknown set @singles_dya (did you mean @singles_day?)" in checked.stderr
    assert "watchlist.toml:9:10: topic[0].query: invalid query: unclosed parenthesis" in checked.stderr

    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    replayed = alertd("replay", "-c", str(config), "--topic", "chinese-ecomerce")
    assert replayed.returncode == 2
    assert "(did you mean 'chinese-ecommerce'?)" in replayed.stderr


COMMANDS = [
    ["run"], ["flush"], ["check-config"], ["match"], ["replay"], ["status"], ["preview"], ["test-email"],
    ["outbox"], ["feeds"], ["feeds", "import"], ["feeds", "export"], ["feeds", "add"], ["feeds", "remove"],
    ["feeds", "pause"], ["feeds", "resume"], ["feeds", "poll"], ["init"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_a_description_and_examples_in_its_help(command: list[str]) -> None:
    result = alertd(*command, "--help")

    assert result.returncode == 0, result.stderr
    usage, description, *_ = result.stdout.split("\n\n")
    assert usage.startswith(f"usage: alertd {' '.join(command)}")
    assert description[:1].isupper() and description.rstrip().endswith(".")
    examples = result.stdout.split("examples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  alertd {command[0]}") for line in examples if line.strip())
