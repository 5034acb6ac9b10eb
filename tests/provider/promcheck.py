#!/usr/bin/env python3
"""Strict check of a Prometheus text exposition (format 0.0.4) read from stdin or a file.

Every line is a # HELP, a # TYPE or a sample; each family has exactly one HELP and one TYPE,
given before its samples, and its samples are contiguous; names match [a-zA-Z_:][a-zA-Z0-9_:]*
and start with llmcap_; counters end in _total; label values are correctly escaped; no series
appears twice; values are floats. It is then parsed again with python3-prometheus-client
(Debian) when that is installed, and the two must agree.
Prints the samples as JSON {"name{k=v,...}": value} (labels sorted) on success; exits 1 with
the offending line otherwise.
"""
import json
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def die(n, line, why):
    print(f"line {n}: {why}: {line!r}", file=sys.stderr)
    sys.exit(1)


def unescape(v):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def parse(text):
    helps, types, done, samples = {}, {}, set(), {}
    current = None
    if text and not text.endswith("\n"):
        die(0, text[-40:], "the exposition must end with a newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            if len(parts) < 4:
                die(n, line, "HELP/TYPE needs a name and text")
            kind, name, rest = parts[1], parts[2], parts[3]
            if not NAME.match(name) or not name.startswith("llmcap_"):
                die(n, line, "metric name must match the Prometheus grammar and start with llmcap_")
            if name in done:
                die(n, line, "family declared again after its samples")
            table = helps if kind == "HELP" else types
            if name in table:
                die(n, line, f"second # {kind}")
            if kind == "TYPE":
                if rest not in TYPES:
                    die(n, line, "unknown type")
                if rest == "counter" and not name.endswith("_total"):
                    die(n, line, "a counter's name must end in _total")
                if rest != "counter" and name.endswith("_total"):
                    die(n, line, "only counters end in _total")
            table[name] = rest
            if current and current != name:
                done.add(current)
            current = name
            continue
        if line.startswith("#") or not line.strip():
            die(n, line, "unexpected comment or blank line")
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$", line)
        if not m:
            die(n, line, "not a sample")
        name, lbl, val = m.groups()
        if name != current:
            die(n, line, "sample outside its family (or before its # HELP/# TYPE)")
        if name not in helps or name not in types:
            die(n, line, "sample without # HELP and # TYPE")
        labels = {}
        if lbl:
            body = lbl[1:-1]
            pos = 0
            while pos < len(body):
                lm = LABEL.match(body, pos)
                if not lm:
                    die(n, line, "bad label syntax or escaping")
                if lm.group(1) in labels:
                    die(n, line, "duplicate label")
                labels[lm.group(1)] = unescape(lm.group(2))
                pos = lm.end()
        try:
            v = float(val)
        except ValueError:
            die(n, line, "value is not a float")
        key = name + "{" + ",".join(f"{k}={labels[k]}" for k in sorted(labels)) + "}"
        if key in samples:
            die(n, line, "duplicate series")
        samples[key] = v
    for name in helps:
        if name not in types:
            die(0, name, "HELP without TYPE")
    return samples


def main():
    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
    samples = parse(text)
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        text_string_to_metric_families = None
    if text_string_to_metric_families:
        seen = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                key = s.name + "{" + ",".join(f"{k}={s.labels[k]}" for k in sorted(s.labels)) + "}"
                seen[key] = s.value
        if seen != samples:
            print("prometheus_client disagrees: " + repr(set(seen) ^ set(samples)), file=sys.stderr)
            sys.exit(1)
    json.dump(samples, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
