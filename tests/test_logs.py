import json
import logging

from discoveryd.logs import JsonFormatter, RedactingFilter, redact


def _format(msg, *args, **extra):
    record = logging.LogRecord("discoveryd.test", logging.WARNING, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(record, k, v)
    RedactingFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_json_line_has_stable_event_and_extras():
    doc = _format("leader_changed from=%s to=%s", "a:5050", "b:5050", source="zk", n=3)
    assert doc["event"] == "leader_changed" and doc["level"] == "warning"
    assert doc["msg"] == "leader_changed from=a:5050 to=b:5050"
    assert doc["source"] == "zk" and doc["n"] == 3 and doc["logger"] == "discoveryd.test"


def test_free_text_gets_generic_event():
    assert _format("Something Happened")["event"] == "message"


def test_secrets_redacted_in_message_and_extras():
    doc = _format("marathon_fetch_failed url=%s", "http://bob:s3cret@m:8080/v2/apps",
                  url="zk://u:pw@h:2181/mesos")
    assert "s3cret" not in json.dumps(doc) and "pw@" not in json.dumps(doc)
    assert redact("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic REDACTED"
