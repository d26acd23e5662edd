"""A strict reader of the OpenMetrics text the monitor writes (the test has no Prometheus
client): every line a ``# TYPE``/``# HELP`` of a declared family or a sample of one, ``# EOF``
last; the samples come back as ``(name, labels, value)``."""

from __future__ import annotations

import re

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({_NAME})\{{((?:{_LABEL})(?:,{_LABEL})*)?\}} (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of ``text``; AssertionError on any line out of the format."""
    lines = text.split("\n")
    assert lines[-1] == "", "the text ends with a newline"
    assert lines[-2] == "# EOF", "the last line is # EOF"
    families: set[str] = set()
    samples = []
    for line in lines[:-2]:
        if line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind == "gauge"
            families.add(name)
            continue
        if line.startswith("# HELP "):
            assert line[7:].split(" ")[0] in families
            continue
        match = SAMPLE.match(line)
        assert match, line
        name, labels, value = match.groups()
        assert name in families, name
        parsed = {
            k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in LABEL.findall(labels or "")
        }
        samples.append((name, parsed, float(value)))
    return samples
