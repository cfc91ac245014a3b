"""Streamed lines, the compact summary and the markdown report of commands and jobs, and
``poll_job`` (the asyncio wait) against the exec fixtures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import requests_mock

from cocalc_tasks import CocalcClient, CocalcTimeoutError, CocalcUnknownJobError, CommandResult
from cocalc_tasks.client.job_polling import poll_job
from cocalc_tasks.model.command_results import JobStatus, new_output
from cocalc_tasks.reporting.commands import (
    MAX_LINE,
    OutputLines,
    command_dict,
    command_log_records,
    command_markdown,
    stats_summary,
)
from tests.conftest import SECRET_KEY
from tests.unit.test_exec_client import EXEC, HOST, PID, body

JOB = "b1f0c6de-2f7e-4a57-9a43-0f3c2d1e8a77"


def status(stdout: str, stderr: str = "", state: str = "running") -> JobStatus:
    return JobStatus.from_response(
        {"stdout": stdout, "stderr": stderr, "status": state, "exit_code": 0}, job_id=JOB
    )


def test_lines_wait_for_their_end_and_come_out_clean() -> None:
    seen: list[tuple[str, str]] = []
    lines = OutputLines(lambda stream, line: seen.append((stream, line)))
    lines.feed("stdout", "par")
    assert seen == []
    lines.feed("stdout", "t one\n\x1b[31mred\x1b[0m\nnext")
    lines.feed("stderr", "10%\r50%\r100%\n")
    lines.feed("stdout", "x" * (MAX_LINE + 5) + "\n")
    lines.flush()
    assert seen[:3] == [("stdout", "part one"), ("stdout", "red"), ("stderr", "100%")]
    long_line = seen[3][1]
    assert long_line.startswith("next" + "x" * 10) and long_line.endswith("9 more characters cut]")
    assert lines.lines == {"stdout": 3, "stderr": 1}


def test_records_give_only_what_is_new() -> None:
    seen: list[str] = []
    lines = OutputLines(lambda stream, line: seen.append(f"{stream}:{line}"))
    lines.update(status("a\n"))
    lines.update(status("a\nb\n", "e\n"))
    lines.update(status("a\nb\n", "e\n"))
    assert seen == ["stdout:a", "stdout:b", "stderr:e"]
    offsets: dict[str, int] = {}
    assert new_output(status("abc"), offsets) == [("stdout", "abc")]
    assert new_output(status(""), offsets) == []  # master empties a failed job's stdout
    assert new_output(status("z"), offsets) == [("stdout", "z")]


def test_a_restarted_reader_goes_on_where_the_last_one_stopped() -> None:
    """What a trigger keeps (``logged``) and a rebuilt one starts from (``skip``): whole lines
    only, so a line cut by the restart is logged once, whole, by the second reader."""
    first: list[str] = []
    lines = OutputLines(lambda stream, line: first.append(line))
    lines.update(status("one\ntwo\nthr", "warn\n"))
    offsets = lines.logged()
    assert first == ["one", "two", "warn"] and offsets == {"stdout": 8, "stderr": 5}
    second: list[str] = []
    again = OutputLines(lambda stream, line: second.append(line))
    again.skip(offsets)
    again.update(status("one\ntwo\nthree\nfour\n", "warn\n"))
    assert second == ["three", "four"]


def test_hidden_lines_are_not_passed_on() -> None:
    seen: list[str] = []
    lines = OutputLines(lambda stream, line: seen.append(line), hide=lambda line: line[0] == "#")
    lines.feed("stdout", "#protocol\nshown\n")
    assert seen == ["shown"]


def finished() -> CommandResult:
    return JobStatus.from_response(body("exec_async_completed.json"), job_id=JOB).result("loop")


def test_summary_keeps_the_end_of_each_stream_and_the_samples() -> None:
    result = finished()
    summary = command_dict(result, max_chars=4)
    assert summary["stdout"] == "[8 earlier characters cut] ...\ni=3\n"
    assert (summary["exit_code"], summary["job_id"], summary["command"]) == (0, JOB, "loop")
    assert summary["stats"] == stats_summary(result.stats)
    assert summary["stats"]["samples"] == len(result.stats) > 0
    assert summary["stats"]["mem_rss_max_mib"] == round(max(s.mem_rss for s in result.stats), 2)
    json.dumps(summary)
    assert stats_summary(()) == {"samples": 0}


def test_log_records_and_markdown() -> None:
    result = finished()
    records = list(command_log_records(result))
    assert records[0] == ("info", f"job {JOB} completed: loop exited with code 0 in 3.0 s")
    assert records[1][1].startswith(f"{len(result.stats)} samples: CPU")
    report = command_markdown(result, title="nightly")
    assert report.startswith("# nightly\n") and "| exit code | 0 |" in report
    assert "| time (s) | CPU % | CPU s | memory (MiB) |" in report
    assert "\ni=3\n```" in report
    failed = CommandResult(stdout="", stderr="boom\n", exit_code=2, command="a|b`c")
    assert ("error", "[stderr] boom") in list(command_log_records(failed))
    assert "`a\\|b'c`" in command_markdown(failed)


def replies(*bodies: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"json": b} for b in bodies]


def test_poll_job_streams_until_done() -> None:
    running = {**body("exec_async_completed.json"), "status": "running", "stdout": "i=1\n"}
    seen: list[str] = []
    with requests_mock.Mocker() as m, CocalcClient(SECRET_KEY, HOST, project_id=PID) as c:
        m.post(EXEC, replies(running, body("exec_async_completed.json")))
        final = asyncio.run(
            poll_job(c, JOB, PID, poll_interval=0, on_status=lambda s: seen.append(s.stdout))
        )
    assert final.done and final.stdout == "i=1\ni=2\ni=3\n" and seen == ["i=1\n", final.stdout]
    assert m.call_count == 2


def test_poll_job_survives_transient_errors_and_stops_on_others() -> None:
    with requests_mock.Mocker() as m, CocalcClient(SECRET_KEY, HOST, retries=0) as c:
        m.post(
            EXEC,
            [{"status_code": 503, "text": "busy"}, {"json": body("exec_async_completed.json")}],
        )
        assert asyncio.run(poll_job(c, JOB, PID, poll_interval=0)).status == "completed"
        m.post(EXEC, json=body("exec_async_unknown_job.json"))
        with pytest.raises(CocalcUnknownJobError):
            asyncio.run(poll_job(c, JOB, PID, poll_interval=0))
        running = {**body("exec_async_completed.json"), "status": "running"}
        m.post(EXEC, json=running)
        with pytest.raises(CocalcTimeoutError, match="keeps running"):
            asyncio.run(poll_job(c, JOB, PID, poll_interval=0.01, deadline=0))


def test_wait_on_status_polls_and_can_stop_the_wait() -> None:
    running = {**body("exec_async_completed.json"), "status": "running"}

    class Stop(Exception):
        pass

    def stop(record: JobStatus) -> None:
        raise Stop(record.status)

    with requests_mock.Mocker() as m, CocalcClient(SECRET_KEY, HOST, project_id=PID) as c:
        m.post(EXEC, json=running)
        with pytest.raises(Stop, match="running"):
            c.wait(JOB, on_status=stop)
        assert "async_await" not in m.last_request.json()  # polled, not long-polled
