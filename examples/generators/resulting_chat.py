#!/usr/bin/env python3
"""A rule-based "resulting chat" builder: an example idx generator (docs/DERIVE.md).

idx sends the rows a `generate` recipe selects on stdin, one JSON object per line:
    {"input": "<content hash>", "messages": [{"role": ..., "content": ...}, ...],
     "rejected": [...]?, "label": true|false?, "attributes": {...}}
and reads generated rows on stdout, one JSON object per line, in any shape idx reads, each
with "input" naming the row it was made from. Anything on stderr is kept if the command fails.

This one turns an edge-case scenario (the first user message of a row) into a short supportive
conversation: the scenario, an opening answer chosen by what the scenario is about, the person's
reply, and a next step. Deterministic: the same input always gives the same chat. It needs
nothing but Python's standard library.
"""

import json
import sys

# (words that mark the scenario, opening answer, next step), first match wins.
RULES = [
    (("suicide", "kill myself", "end my life", "ending it", "don't see the point", "no point"),
     "Thank you for telling me. I want to make sure you're safe: are you having thoughts of ending "
     "your life right now?",
     "If you might act on these thoughts, please call your local emergency number or a crisis line "
     "now; I can stay with you while you do. What would help you feel a little safer tonight?"),
    (("panic", "can't breathe", "heart racing", "anxiety attack"),
     "That sounds really frightening. Let's slow down together: breathe in for four counts, hold "
     "for four, and out for six.",
     "Panic peaks and then passes, even when it doesn't feel like it. Can you name five things "
     "you can see around you right now?"),
    (("too much", "overwhelmed", "can't cope", "exhausted"),
     "It sounds like you're carrying a lot at once. You don't have to sort all of it right now.",
     "Let's pick just one small thing that would make the next hour easier. What comes to mind?"),
]
DEFAULT = (
    "I'm glad you reached out. Can you tell me a bit more about what's been happening?",
    "That makes sense given everything you've described. What would feel most helpful to talk "
    "through first?",
)


def respond(scenario):
    lowered = scenario.lower()
    for words, opening, step in RULES:
        if any(w in lowered for w in words):
            return opening, step
    return DEFAULT


def main():
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            print(f"input line {n}: {e}", file=sys.stderr)
            return 2
        scenario = next((m["content"] for m in row.get("messages", []) if m.get("role") == "user"), None)
        if not scenario:
            continue  # no scenario in this row: nothing to build
        opening, step = respond(scenario)
        chat = {
            "input": row["input"],
            "messages": [
                {"role": "user", "content": scenario},
                {"role": "assistant", "content": opening},
                {"role": "user", "content": "I don't really know what to do."},
                {"role": "assistant", "content": step},
            ],
        }
        print(json.dumps(chat, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
