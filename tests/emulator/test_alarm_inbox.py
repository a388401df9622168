"""The demo alarm webhook: what Apprise's json:// target sends arrives and is listed at /alarms."""

from __future__ import annotations

import pytest
import requests

from core.alarms.delivery import send_alarm, webhook_target
from core.alarms.messages import Alarm

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


def test_an_alarm_sent_through_apprise_is_listed(base) -> None:
    alarm = Alarm("test:1", "Test-Alarm von Token Desk", "Wenn Sie diese Nachricht erhalten, kommen Alarme an.",
                  "info")
    (result,) = send_alarm(alarm, [webhook_target(base + "/_demo/alarms")], timeout=5)
    assert result.ok, result.error
    listed = requests.get(base + "/alarms", timeout=5)
    assert listed.status_code == 200
    assert "Test-Alarm von Token Desk" in listed.text and "kommen Alarme an" in listed.text


def test_anything_but_a_json_object_is_refused_and_only_the_last_200_are_kept(base) -> None:
    assert requests.post(base + "/_demo/alarms", data="kein JSON", timeout=5).status_code == 400
    for n in range(205):
        assert requests.post(base + "/_demo/alarms", json={"title": f"Alarm {n}", "type": "info"},
                             timeout=5).status_code == 204
    page = requests.get(base + "/alarms", timeout=5).text
    assert "Alarm 204" in page and "Alarm 5<" in page and "Alarm 4<" not in page
