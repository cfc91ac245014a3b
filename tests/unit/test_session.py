"""KernelSession replays the inputs that succeeded, and only those."""

from __future__ import annotations

import requests_mock

from cocalc_tasks import CocalcClient, KernelSession

HOST = "http://cocalc.test"
EXECUTE = HOST + "/api/v2/jupyter/execute"
OK = {"output": [], "created": "2025-01-01T00:00:00Z"}
ERR = {"output": [{"ename": "NameError", "evalue": "x", "traceback": []}]}


def test_history_grows_with_successes_only() -> None:
    with requests_mock.Mocker() as m, CocalcClient(host=HOST) as client:
        session = KernelSession("python3", client=client)
        m.post(EXECUTE, json=OK)
        session.run("a = 2")
        m.post(EXECUTE, json=ERR)
        assert not session.run("boom()").ok
        m.post(EXECUTE, json=OK)
        session.run("b = 3")
        sent = [r.json() for r in m.request_history]
    assert [s.get("history", []) for s in sent] == [[], ["a = 2"], ["a = 2"]]
    assert session.history == ["a = 2", "b = 3"]
    session.squash("a, b = 2, 3")
    assert session.history == ["a, b = 2, 3"] and session.history_chars == len("a, b = 2, 3")
